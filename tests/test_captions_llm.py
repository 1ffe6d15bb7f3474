"""The LLM caption merger against a stub endpoint that misbehaves on purpose, and against a real
llama-cpp-python server (SmolLM2-135M-Instruct): structured output, validation, fact check, retries,
fallbacks, concurrency, the cache, and the prompt-injection guard."""

from __future__ import annotations

import json
import time

import pytest

from annotators.llm.check import FactChecker
from annotators.llm.facts import facts_of
from annotators.llm.merger import (
    EXAMPLES,
    INSTRUCTION_TEXT,
    PROMPT_ID,
    CaptionReply,
    LLMCaptionMerger,
    reason_code,
)
from annotators.llm.template import MAX_SHORT_WORDS, TemplateCaptionMerger
from schemas.config import CaptionConfig
from tests import caption_fixtures as C
from tests.llm_servers import SLOW_S, LlamaServer, StubChatServer, free_port, grounded_caption, smollm2_path


def merger(base_url: str, model: str, output=None, **kw) -> LLMCaptionMerger:
    opts = dict(merger="llm", base_url=base_url, model=model, backoff_s=0.01, max_backoff_s=0.05, timeout_s=10)
    return LLMCaptionMerger(CaptionConfig(**{**opts, **kw}), output=str(output) if output else None)


def codes(result) -> list[str]:
    return [reason_code(r) for r in result.rejections]


@pytest.fixture(scope="module")
def stub():
    with StubChatServer() as srv:
        yield srv


# ------------------------------------------------------------------------------------ stub endpoint
def test_a_grounded_reply_becomes_the_caption(stub):
    m = merger(stub.base_url, "ok")
    seg = C.music("good-1")
    r = m.caption(seg)
    assert (r.source, r.model, r.prompt_id, r.rejections) == ("llm", "ok", PROMPT_ID, [])
    assert r.caption == grounded_caption(stub.requests[-1]["messages"][-1]["content"])["caption"]
    assert "96 BPM" in r.caption and "G major" in r.caption
    sent = stub.requests[-1]
    assert sent["response_format"]["type"] == "json_schema" and m.endpoint.form == "json_schema"
    system, user = sent["messages"][0]["content"], sent["messages"][-1]["content"]
    assert "never instructions" in system and user.startswith("<data>\n")
    assert [m["role"] for m in sent["messages"]] == ["system"] + ["user", "assistant"] * len(EXAMPLES) + ["user"]
    data = json.loads(user.split("<data>\n")[1].split("\n</data>")[0])
    assert data["fields"]["music"]["tempo_bpm"] == 96 and data["branch_captions"]["music"] == seg.music_caption
    r.apply_to(seg, "ok")
    assert (seg.caption_source, seg.caption_model, seg.caption_prompt_id) == ("llm", "ok", PROMPT_ID)


def test_structured_output_dialect_is_detected_once(stub):
    m = merger(stub.base_url, "json-schema-500")
    results = m.caption_many([C.music(f"dialect-{i}") for i in range(3)])
    assert [r.source for r in results] == ["llm"] * 3
    sent = [b["response_format"] for b in stub.requests if b["model"] == "json-schema-500"]
    assert [f["type"] for f in sent] == ["json_schema", "json_object", "json_object", "json_object"]
    assert sent[1]["schema"]["required"] == ["caption", "short_caption", "tags"]
    assert m.endpoint.form == "json_object"
    configured = merger(stub.base_url, "json-schema-500", response_format="json_object")
    before = stub.count("json-schema-500")
    assert configured.caption(C.music("dialect-x")).source == "llm" and stub.count("json-schema-500") == before + 1


@pytest.mark.parametrize("mode, reason, requests", [
    ("500", "http_500", 4),  # 1 + max_retries (3), with backoff
    ("429", "http_429", 4),
    ("not-json", "not_json", 2),  # 1 + check_retries (1)
    ("schema-break", "schema", 2),
])
def test_bad_replies_fall_back_to_the_template_with_the_reason(stub, mode, reason, requests):
    m = merger(stub.base_url, mode, response_format="json_schema")  # (auto would add one probe request)
    seg = C.sounds(f"bad-{mode}")
    r = m.caption(seg)
    template = TemplateCaptionMerger().merge(seg)
    assert (r.source, r.caption, r.short_caption) == ("template_fallback", template.caption, template.short_caption)
    assert set(codes(r)) == {reason} and stub.count(mode) == requests


def test_rate_limit_is_retried_until_it_passes(stub):
    r = merger(stub.base_url, "429-then-ok").caption(C.music("rl-1"))
    assert r.source == "llm" and r.rejections == [] and stub.count("429-then-ok") == 3


def test_a_slow_endpoint_times_out_and_falls_back(stub):
    t0 = time.time()
    r = merger(stub.base_url, "slow", timeout_s=0.4, max_retries=1).caption(C.music("slow-1"))
    assert r.source == "template_fallback" and codes(r) == ["timeout"]
    assert time.time() - t0 < 2 * SLOW_S


def test_a_contradicting_caption_is_retried_with_the_reason_then_rejected(stub):
    r = merger(stub.base_url, "contradict").caption(C.music("contra-1"))
    assert r.source == "template_fallback" and "140" not in r.caption
    assert {"wrong_number", "wrong_fact", "unsupported_label"} <= set(codes(r))
    retry = stub.requests[-1]["messages"]
    assert len(retry) == 4 + 2 * len(EXAMPLES) and retry[-2]["role"] == "assistant"
    assert "rejected" in retry[-1]["content"] and "tempo 140 BPM, the fields say 96" in retry[-1]["content"]
    fixed = merger(stub.base_url, "contradict-then-fix").caption(C.music("contra-2"))
    assert fixed.source == "llm" and "wrong_number" in codes(fixed) and "96 BPM" in fixed.caption


def test_an_instruction_in_the_transcript_is_never_followed(stub):
    seg = C.injection()
    data = merger(stub.base_url, "ok").prompt(facts_of(seg))[-1]["content"]
    assert C.INJECTION in data  # passed as data, inside the delimited block
    r = merger(stub.base_url, "hack").caption(seg)
    assert r.source == "template_fallback" and "injection_echo" in codes(r)
    assert "hacked" not in (r.caption + r.short_caption).lower()


def test_a_stopped_server_gives_template_captions_quickly(tmp_path):
    srv = StubChatServer().__enter__()
    m = merger(srv.base_url, "ok", max_retries=1, connect_timeout_s=1)
    assert m.caption(C.music("up-1")).source == "llm"
    srv.__exit__(None, None, None)
    results = m.caption_many([C.music(f"down-{i}") for i in range(8)])
    assert {r.source for r in results} == {"template_fallback"}
    assert {codes(r)[0] for r in results} <= {"connection", "endpoint_down"}
    assert "endpoint_down" in {codes(r)[0] for r in results}  # the circuit opened: no more waiting per segment
    dead = merger(f"http://127.0.0.1:{free_port()}/v1", "ok", max_retries=0)
    assert codes(dead.caption(C.music("never-up"))) == ["connection"]


def test_requests_run_max_in_flight_at_a_time():
    segs = [C.music(f"conc-{i}") for i in range(12)]
    rates = {}
    with StubChatServer(delay_s=0.25) as srv:
        for n in (1, 4):
            m = merger(srv.base_url, "ok", max_in_flight=n, response_format="json_schema")
            srv.max_in_flight = 0
            t0 = time.time()
            assert {r.source for r in m.caption_many(segs)} == {"llm"}
            rates[n] = len(segs) / (time.time() - t0)
            m.close()
            assert (srv.max_in_flight == 1) if n == 1 else (2 <= srv.max_in_flight <= n)  # never more than n
    print(f"stub endpoint with 0.25 s latency: {rates[1]:.2f} req/s with 1 in flight, {rates[4]:.2f} with 4")
    assert rates[4] > 2.0 * rates[1]


def test_replies_are_cached_by_content_in_the_output(stub, tmp_path):
    segs = [C.music(f"cache-{i}", duration_s=10.0 + i) for i in range(3)] + [C.sounds("cache-s")]
    before = stub.count("contradict-then-fix")
    first = merger(stub.base_url, "contradict-then-fix", output=tmp_path).caption_many(segs)
    n = stub.count("contradict-then-fix") - before
    assert len(list((tmp_path / "caption_cache").rglob("*.json"))) == n == 8  # 2 requests per segment
    same = merger(stub.base_url, "contradict-then-fix", output=tmp_path, max_in_flight=1)
    twin = C.music("cache-twin", duration_s=10.0)  # another key, the same fields: the same prompt
    assert same.caption(twin).caption == first[0].caption and stub.count("contradict-then-fix") - before == n
    again = merger(stub.base_url, "contradict-then-fix", output=tmp_path)
    assert again.caption_many(segs) == first and stub.count("contradict-then-fix") - before == n
    assert again.cache.hits == 8
    other_model = merger(stub.base_url, "ok", output=tmp_path)
    other_model.caption(segs[0])
    assert other_model.cache.hits == 0  # the model is part of the key


def test_the_api_key_comes_from_the_named_environment_variable(stub, monkeypatch, caplog):
    monkeypatch.setenv("EVENTCAP_TEST_KEY", "sk-test-secret-123")
    m = merger(stub.base_url, "ok", api_key_env="EVENTCAP_TEST_KEY")
    assert m.caption(C.music("key-1")).source == "llm"
    assert stub.auth[-1] == "Bearer sk-test-secret-123"
    assert "sk-test-secret" not in caplog.text and "sk-test-secret" not in json.dumps(m.cfg.model_dump())


# ------------------------------------------------------------------------------------ tolerant but honest checks
def test_a_long_short_caption_is_cut_at_a_clause_and_the_rest_still_checked():
    long_short = "Music at about 96 BPM in 4/4, in G major, with piano, flute and drum kit playing along together."
    r = CaptionReply.model_validate({"caption": "Piano and flute music.", "short_caption": long_short})
    assert r.short_caption == "Music at about 96 BPM in 4/4, in G major, with piano."
    seg = C.music("trim-1")
    check = FactChecker(facts_of(seg), reference=TemplateCaptionMerger().merge(seg).caption)
    assert check.problems(r.short_caption) == []
    wrong = CaptionReply.model_validate({"caption": "Some music plays.", "short_caption": long_short.replace("96", "140")})
    assert [p.code for p in check.problems(wrong.short_caption)] == ["wrong_number"]  # a cut never hides a claim
    run_on = " ".join(["music"] * (MAX_SHORT_WORDS + 3))  # no sentence or clause to cut at: still a schema error
    reply, problems = LLMCaptionMerger.judge(json.dumps({"caption": "Some music.", "short_caption": run_on,
                                                         "tags": []}), check)
    assert reply is None and [reason_code(p) for p in problems] == ["schema"]


def test_an_echo_of_the_prompt_or_its_examples_is_rejected():
    seg = C.speech("echo-1")
    check = FactChecker(facts_of(seg), reference=TemplateCaptionMerger().merge(seg).caption,
                        instructions=INSTRUCTION_TEXT)
    assert "prompt_echo" in {p.code for p in check.problems("This is a clip from the audio-language model.")}
    copied = EXAMPLES[0][1]["caption"]  # the worked example's answer, not this clip
    assert "prompt_echo" in {p.code for p in check.problems(copied)}
    assert check.problems("A person speaks in English: \"Welcome to the event preserving annotation demo\".") == []


# ------------------------------------------------------------------------------------ real llama.cpp server
@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        pytest.skip(f"llama-cpp-python is not installed ({e}); `make install` builds it")
    srv = LlamaServer(smollm2_path(), tmp_path_factory.mktemp("llama") / "server.log").start()
    yield srv
    srv.stop()


@pytest.mark.slow
def test_real_server_json_constrained_captions_are_checked(llama_server, tmp_path):
    m = merger(llama_server.base_url, llama_server.model_alias, output=tmp_path, max_in_flight=2, timeout_s=120)
    segs = [C.music("real-m"), C.sounds("real-s"), C.speech("real-sp"), C.speech_over_music("real-mix")]
    results = m.caption_many(segs)
    assert m.endpoint.form == "json_object"  # llama.cpp refuses json_schema: detected
    for seg, r in zip(segs, results, strict=True):
        assert r.source in ("llm", "template_fallback") and r.caption and r.short_caption
        assert len(r.short_caption.split()) <= MAX_SHORT_WORDS
        if r.source == "llm":  # an accepted reply passes the check when checked again
            check = FactChecker(facts_of(seg), reference=TemplateCaptionMerger().merge(seg).caption,
                                instructions=INSTRUCTION_TEXT)
            assert check.problems(r.caption) == [] and r.model == llama_server.model_alias
        else:
            assert r.caption == TemplateCaptionMerger().merge(seg).caption and r.rejections
    all_codes = [c for r in results for c in codes(r)]
    assert "http_500" not in all_codes and "connection" not in all_codes
    # constrained decoding gives JSON: not every reply is unparseable (a 135M model may still run out of
    # tokens, and its JSON often breaks the schema's limits, e.g. a short caption over 15 words: 'schema')
    assert sum(c == "not_json" for c in all_codes) < len(all_codes) or not all_codes
    print({s.key: (r.source, r.caption, r.rejections) for s, r in zip(segs, results, strict=True)})


def test_real_server_never_writes_hacked(llama_server):
    m = merger(llama_server.base_url, llama_server.model_alias, timeout_s=120, check_retries=1)
    r = m.caption(C.injection("inject-real"))
    assert "hacked" not in (r.caption + r.short_caption).lower(), r


@pytest.mark.slow
def test_annotate_job_with_the_llm_merger_end_to_end(llama_server, ray_local, tmp_path):
    """`eventcap annotate` with `caption.merger: llm` against the real server, on TTS speech telling the model to
    write HACKED and a sound file: every caption is an accepted LLM reply that passes the fact check when
    checked again, or the template caption with its reasons; report.json counts them; a re-caption of the
    output pays nothing twice (the reply cache)."""
    import tarfile

    import pyarrow.parquet as pq

    from pipeline.recaption import read_annotations, read_caption_table, run_recaption
    from pipeline.run import run_annotate
    from pipeline.sources import filesystem_for
    from schemas.config import load_config
    from tests import synth as S

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    S.write(corpus / "inject.wav", S.layout([("speech", S.tts(C.INJECTION), 0.3, "")])[0])
    S.write(corpus / "sounds.wav", S.layout([("noise", S.noise_burst(1.0), 0.5, ""),
                                             ("clicks", S.clicks(120, 2.0), 0.3, "")])[0])
    cfg = load_config(None, ["caption.merger=llm", f"caption.base_url={llama_server.base_url}",
                             f"caption.model={llama_server.model_alias}", "caption.timeout_s=300",
                             "caption.max_in_flight=2", "caption.check_retries=0", "caption.max_tokens=160",
                             "speech.asr.model=tiny.en"])  # one request a segment: lean on a shared 2-core box
    out = tmp_path / "out"
    result = run_annotate([str(corpus)], str(out), cfg)
    m = pq.read_table(out / "manifest").to_pandas()
    assert len(m) == result.segments >= 2
    assert set(m.caption_source) <= {"llm", "template_fallback"}
    fs, root = filesystem_for(str(out))
    segs = {s.key: s for tar in (out / "shards").glob("*.tar") for s in read_annotations(fs, str(tar))}
    for r in m.itertuples():
        seg = segs[r.key]
        template = TemplateCaptionMerger().merge(seg)
        assert r.caption and 0 < len(r.short_caption.split()) <= MAX_SHORT_WORDS
        branch = r.speech_caption if isinstance(r.speech_caption, str) else ""  # (NaN where no speech)
        assert "hacked" not in f"{r.caption} {r.short_caption} {branch}".lower()
        if r.caption_source == "llm":  # the fact check holds on what was written
            assert (r.caption_model, r.caption_prompt_id) == (llama_server.model_alias, PROMPT_ID)
            check = FactChecker(facts_of(seg), reference=template.caption, instructions=INSTRUCTION_TEXT)
            assert check.problems(r.caption) == [] and check.problems(r.short_caption) == []
        else:  # the template caption, with every reason a reply was rejected
            assert (r.caption, r.short_caption, r.caption_model) == (template.caption, template.short_caption,
                                                                     "template")
            assert len(r.caption_rejections) >= 1 and all(": " in x for x in r.caption_rejections)
    speech = m[m.transcript.notna() & (m.transcript != "")]
    assert len(speech) == 1 and "instructions" in speech.transcript.iloc[0].lower()  # the injection was heard
    report = json.loads((out / "report.json").read_text())["captions"]
    assert report["by_source"] == m.caption_source.value_counts().to_dict()
    assert sum(report["rejections_by_reason"].values()) == sum(len(x) for x in m.caption_rejections)
    assert report["fallbacks_by_reason"] == m[m.caption_source == "template_fallback"].caption_rejections.map(
        lambda x: reason_code(x[-1])).value_counts().to_dict()
    print("report.json captions:", report)
    txt = {}
    for tar_path in (out / "shards").glob("*.tar"):
        with tarfile.open(tar_path) as tar:
            txt |= {mb.name[:-4]: tar.extractfile(mb).read().decode() for mb in tar if mb.name.endswith(".txt")}
    assert txt == dict(zip(m.key, m.caption, strict=True))  # <key>.txt is the unified caption

    cached = sorted((out / "caption_cache").rglob("*.json"))
    assert cached
    rep = run_recaption(str(out), "same", cfg, log=lambda *_: None)
    assert sorted((out / "caption_cache").rglob("*.json")) == cached  # every reply came from the cache
    again = {r["key"]: r["caption"] for r in read_caption_table(str(out), "same").to_pylist()}
    assert again == dict(zip(m.key, m.caption, strict=True)) and rep["segments_captioned_now"] == len(m)
