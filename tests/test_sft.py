"""`eventcap sft` on a small corpus annotated once by the real pipeline: contract, re-derivation of every answer
from its fields, weights, skips, determinism, resume, moss-jsonl, and the trainer on SFT shards."""

from __future__ import annotations

import io
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from jobs.sft.prompts import PROMPTS, n_variants
from jobs.sft.tasks import LANGUAGES, Segment
from schemas.annotation import (
    GeneralAudioAnnotation,
    SegmentAnnotation,
    SoundEvent,
    SpeakerTurn,
    SpeechAnnotation,
    Word,
)
from schemas.sft import INDEX_SCHEMA, RECORD_SCHEMA, render_assistant, source_fields_of, split_thinking
from schemas.sft_config import TASK_NAMES, SftConfig, load_sft_config
from schemas.timemarkers import (
    format_event_lines,
    format_spans,
    format_timestamped_words,
    group_phrases,
    parse_event_lines,
    parse_spans,
)
from tests import synth as S
from tests import synth_speech as SS

INDEX_COLUMNS = ["sample_id", "task", "key", "audio_ref", "prompt", "answer", "thinking", "prompt_id",
                 "source_fields", "seed"]


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def annotated(tmp_path_factory, ray_local) -> Path:
    """Speech, a two-voice dialog, speech over music, a click track and noise bursts: annotated once."""
    from pipeline.run import run_annotate
    from schemas.config import JobConfig

    d = tmp_path_factory.mktemp("sft_corpus")
    talk, _ = S.layout([("speech", S.tts(S.SENTENCES[0]), 0.4, ""), ("speech", S.tts(S.SENTENCES[2]), 0.3, "")])
    S.write(d / "talk.wav", talk)
    dialog = SS.flite_scene([("kal", "Good morning, how are you doing today?"),
                             ("slt", "I am fine, thank you very much for asking.")], [0.5, 0.5])
    S.write(d / "dialog.wav", dialog.audio)
    music = S.chords(S.C_MAJOR * 2, 0.5) + S.clicks(120, 4.0)[: int(4.0 * S.SR)]
    voice = S.tts(S.SENTENCES[4])
    mix = np.concatenate([music, music])[: max(len(voice) + S.SR, 2 * len(music))].copy()
    mix[S.SR // 2 : S.SR // 2 + len(voice)] += 0.8 * voice
    S.write(d / "talk_over_music.wav", 0.7 * mix / np.abs(mix).max())
    sounds, _ = S.layout([("noise", S.noise_burst(1.0), 0.8, ""), ("clicks", S.clicks(100, 3), 0.6, ""),
                          ("noise", S.noise_burst(0.6, seed=3), 0.3, "")])
    S.write(d / "sounds.flac", sounds)
    out = tmp_path_factory.mktemp("sft_annotated")
    run_annotate([str(d)], str(out), JobConfig())
    return out


def run_cli(*argv: str) -> int:
    from jobs.cli import main

    return main(["sft", *argv])


@pytest.fixture(scope="module")
def sft_out(annotated, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft") / "out"
    assert run_cli(str(annotated), "--output", str(out), "--seed", "7") == 0
    return out


def annotations(annotated: Path) -> dict[str, SegmentAnnotation]:
    import tarfile

    anns = {}
    for tar_path in sorted((annotated / "shards").glob("shard-*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar:
                if m.name.endswith(".json"):
                    a = SegmentAnnotation.model_validate_json(tar.extractfile(m).read())
                    anns[a.key] = a
    return anns


def index(out: Path) -> list[dict]:
    """The index rows in shard order (pyarrow, not pandas: a null `thinking` stays None)."""
    rows = []
    for part in sorted((out / "index").glob("*.parquet")):
        rows += pq.read_table(part).to_pylist()
    return rows


def shard_records(out: Path) -> list[dict]:
    import webdataset as wds

    recs = []
    for sample in wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")), shardshuffle=False):
        recs.append({"__key__": sample["__key__"], **json.loads(sample["json"])})
    return recs


# ------------------------------------------------------------------------------------------ text formats
def test_time_formats_round_trip():
    words = [{"word": "hello", "start_s": 0.52, "end_s": 0.9}, {"word": "world", "start_s": 1.0, "end_s": 1.4},
             {"word": "again", "start_s": 2.3, "end_s": 2.71}]
    assert format_timestamped_words(words) == "[0.52-0.9] hello [1-1.4] world [2.3-2.71] again"
    phrases = group_phrases(words, max_gap_s=0.3)
    assert phrases == [{"text": "hello world", "start_s": 0.52, "end_s": 1.4},
                       {"text": "again", "start_s": 2.3, "end_s": 2.71}]
    assert parse_spans(format_spans(phrases)) == phrases
    assert [(s["text"], s["start_s"], s["end_s"]) for s in parse_spans(format_timestamped_words(words))] == [
        (w["word"], w["start_s"], w["end_s"]) for w in words]
    events = [{"label": "Dog barking", "start_s": 3.2, "end_s": 5.0}, {"label": "Speech", "start_s": 0.0, "end_s": 57.0}]
    text = format_event_lines(events)
    assert text == "3.20 - 5.00: Dog barking\n0.00 - 57.00: Speech"  # MOSS-Audio's own line form
    assert parse_event_lines(text) == events
    assert split_thinking(render_assistant("42 BPM.", "1. a\n2. b")) == ("1. a\n2. b", "42 BPM.")


def test_prompt_banks_are_large_and_unique():
    assert len(PROMPTS["asr"]["plain"]) >= 200
    for task in TASK_NAMES:
        assert n_variants(task) >= 10, task
        for kind, bank in PROMPTS[task].items():
            assert len(set(bank)) == len(bank), (task, kind)


# ------------------------------------------------------------------------------------------ tasks on fields
def segment(**kw) -> Segment:
    base = dict(key="k" * 32, source_uri="file:///x.wav", source_sha256="0" * 64, sample_rate=16000, start_sample=0,
                end_sample=96000, start_s=0.0, end_s=6.0, duration_s=6.0, cut_reasons=["source_start", "source_end"],
                routes=["speech"], speech_share=0.9, music_share=0.0, general_share=0.1, config_hash="h")
    base.update(kw)
    return Segment(SegmentAnnotation(**base), "/annot", "shard-000000.tar", "A caption. With two sentences.")


def gen(seg: Segment, **weights):
    from jobs.sft.generate import SampleGenerator, Stats
    from jobs.sft.tasks import build_tasks

    cfg = SftConfig(tasks={t: {"weight": weights.get(t, 0.0)} for t in TASK_NAMES})
    stats = Stats()
    return SampleGenerator(cfg, build_tasks(cfg)).samples(seg, stats), stats


def test_low_confidence_and_missing_fields_are_skipped_with_reasons():
    words = [Word(word="hi", start_s=0.1, end_s=0.3, probability=0.9)]
    bad_asr = segment(speech=SpeechAnnotation(transcript="hi", words=words, no_speech_prob=0.9, language="en"))
    samples, stats = gen(bad_asr, asr=1, asr_ts=1)
    assert samples == [] and stats.skipped["asr"] == {"asr_no_speech_prob": 1}
    dropped = segment(speech=SpeechAnnotation(transcript="hi", words=words, hallucination_dropped=["thanks for watching"]))
    assert gen(dropped, asr_ts=1)[1].skipped["asr_ts"] == {"asr_hallucination_dropped": 1}
    from schemas.annotation import MusicAnnotation, Tag

    weak = segment(routes=["music"], music=MusicAnnotation(
        tempo_bpm=120.0, tempo_confidence=0.05, music_key="A minor", key_confidence=0.2, time_signature="4/4",
        instruments=["Flute"], tags=[Tag(label="Flute", score=0.02)]))
    samples, stats = gen(weak, music_qa=3)
    assert stats.skipped["music_qa"] == {"music_tempo_low_confidence": 1, "music_meter_low_confidence": 1,
                                         "music_key_low_confidence": 1, "music_tag_low_score": 1}
    assert {s.variant for s in samples} == {"vocals"}  # the one measured answer left
    quiet = segment(routes=["general"], general=GeneralAudioAnnotation(events=[SoundEvent(label="Dog", start_s=1, end_s=2, score=0.2)]))
    assert gen(quiet, event_localisation=1)[1].skipped["event_localisation"] == {"event_below_threshold": 1}


def test_speaker_turns_and_thinking_variant():
    turns = [SpeakerTurn(speaker="SPEAKER_07", start_s=0.5, end_s=2.25), SpeakerTurn(speaker="SPEAKER_02", start_s=2.6, end_s=4.0),
             SpeakerTurn(speaker="SPEAKER_07", start_s=4.3, end_s=5.5)]
    seg = segment(speech=SpeechAnnotation(speakers=turns, n_speakers=2))
    (s,), _ = gen(seg, speaker_ts=1)
    assert s.answer == "2 speakers.\n[0.5-2.25] Speaker 1\n[2.6-4] Speaker 2\n[4.3-5.5] Speaker 1"
    one = segment(speech=SpeechAnnotation(speakers=turns[:1], n_speakers=1))
    assert gen(one, speaker_ts=1)[0] == []  # one speaker: not applicable, not a skip
    events = [SoundEvent(label="Dog", start_s=1.0, end_s=1.5, score=0.9), SoundEvent(label="Door", start_s=3.0, end_s=5.5, score=0.8)]
    seg = segment(routes=["general"], general=GeneralAudioAnnotation(events=events))
    samples, stats = gen(seg, reasoning=16)
    thinking = [s for s in samples if s.thinking is not None]
    plain = [s for s in samples if s.thinking is None]
    assert thinking and plain and all(s.variant.endswith("+thinking") for s in thinking)
    longest = next(s for s in thinking if s.variant.startswith("longest_event"))
    assert longest.answer == "Door, for 2.5 s." and "2.50 s" in longest.thinking
    assert split_thinking(longest.messages()[1]["content"]) == (longest.thinking, longest.answer)
    order = next(s for s in plain if s.variant == "event_order")
    assert order.answer.endswith("Dog comes first; Door starts 2.0 s later.") and order.answer.startswith("1. ")


def test_task_mix_matches_weights(annotated):
    """Weight = samples per eligible segment: whole weights exactly, the fraction within 4 binomial sigmas
    over 200 copies (new keys) of every annotated segment."""
    from jobs.sft.generate import SampleGenerator, Stats
    from jobs.sft.tasks import build_tasks

    weights = {"caption": 1.0, "asr": 0.5, "asr_ts": 2.0, "audio_qa": 1.5, "event_localisation": 0.25,
               "music_qa": 1.0, "speech_caption": 0.0, "speaker_ts": 1.0, "reasoning": 0.75}
    cfg = SftConfig(tasks={t: {"weight": w} for t, w in weights.items()})
    generator, stats = SampleGenerator(cfg, build_tasks(cfg)), Stats()
    for a in annotations(annotated).values():
        for copy in range(200):
            ann = a.model_copy(update={"key": f"{a.key[:24]}{copy:08d}"})
            generator.samples(Segment(ann, "/a", "shard-000000.tar", ann.caption), stats)
    assert stats.samples["speech_caption"] == 0
    for task, w in weights.items():
        n, frac = stats.eligible[task], w - int(w)
        if w and n:
            assert abs(stats.samples[task] - w * n) <= 4 * math.sqrt(n * frac * (1 - frac)) + 1e-9, (task, n, stats.samples[task])
    assert stats.eligible["caption"] >= 5 * 200 and stats.eligible["asr_ts"] >= 2 * 200 and stats.eligible["audio_qa"]


# ------------------------------------------------------------------------------------------ the job
def test_outputs_contract_and_report(sft_out, annotated):
    df = index(sft_out)
    assert set(INDEX_COLUMNS) <= set(pq.read_schema(next((sft_out / "index").glob("*.parquet"))).names)
    recs = shard_records(sft_out)  # the shards open with webdataset
    assert [r["__key__"] for r in recs] == [r["sample_id"] for r in df] and len({r["sample_id"] for r in df}) == len(df)
    rep = json.loads((sft_out / "report.json").read_text())
    assert rep["samples"] == dict(Counter(r["task"] for r in df)) and rep["total_samples"] == len(df)
    assert {"caption", "asr", "asr_ts", "audio_qa", "event_localisation"} <= set(rep["samples"])
    assert all(r["seed"] == 7 and r["task"] in TASK_NAMES for r in df)
    anns = annotations(annotated)
    assert {r["key"] for r in df} <= set(anns) and rep["segments"]["used"] == len(anns)
    for r in recs:
        tar, _, key = r["audio_ref"].rpartition("#")
        assert Path(tar).exists() and key == r["key"] and Path(tar).name == r["audio_shard"]
        assert r["messages"][0] == {"role": "user", "content": r["prompt"]}
        assert r["messages"][1]["content"] == render_assistant(r["answer"], r["thinking"])
        task, kind, idx = r["prompt_id"].split(".")
        assert task == r["task"] and PROMPTS[task][kind][int(idx)].format(**_vars(r)) == r["prompt"]
    for task, pv in rep["prompt_variants"].items():
        assert sum(pv["counts"].values()) == rep["samples"][task] and pv["used"] <= pv["available"]
    assert all(isinstance(n, int) and n > 0 for reasons in rep["skipped"].values() for n in reasons.values())


def _vars(r: dict) -> dict:
    sf_ = source_fields_of(r["source_fields"])
    if r["task"] == "event_localisation" and "label" in sf_:
        return {"label": sf_["label"].lower()}
    if "window_s" in sf_:
        a, b = sf_["window_s"]
        return {"start": str(a), "end": str(b)}
    return {}


def rederive(r: dict, ann: SegmentAnnotation) -> None:
    """Recompute the answer of one sample from the annotation (not from the job's code paths)."""
    task, f, ans = r["task"], source_fields_of(r["source_fields"]), r["answer"]
    sp, mu, so = ann.speech, ann.music, ann.general
    if task == "caption":
        assert f["caption"] == ann.caption
        if ann.short_caption:  # the short variant is the merger's own short caption
            assert ans in (ann.caption, ann.short_caption.strip())
        else:  # without one, the caption's first sentence
            assert ans == ann.caption or (ann.caption.startswith(ans) and ans.endswith("."))
    elif task == "asr":
        assert ans == sp.transcript.strip() and sp.no_speech_prob <= 0.6 and not sp.hallucination_dropped
    elif task == "asr_ts":
        spans = parse_spans(ans)
        words = [w for w in sp.words if w.word.strip()]
        if r["variant"] == "words":  # times equal the manifest's word times (to the centisecond)
            assert [s["text"] for s in spans] == [w.word.strip() for w in words]
            assert [(s["start_s"], s["end_s"]) for s in spans] == [(round(w.start_s, 2), round(w.end_s, 2)) for w in words]
        else:
            assert " ".join(s["text"] for s in spans) == " ".join(w.word.strip() for w in words)
            starts = {round(w.start_s, 2) for w in words}
            ends = {round(w.end_s, 2) for w in words}
            assert all(s["start_s"] in starts and s["end_s"] in ends for s in spans)
        assert all(0 <= s["start_s"] <= s["end_s"] <= ann.duration_s + 0.01 for s in spans)
    elif task == "speaker_ts":
        spans = parse_spans(ans)
        assert ans.startswith(f"{sp.n_speakers} speakers.") and len(spans) == len(sp.speakers)
        assert sorted((s["start_s"], s["end_s"]) for s in spans) == sorted(
            (round(t.start_s, 2), round(t.end_s, 2)) for t in sp.speakers)
    elif task == "music_qa":
        kind = r["variant"]
        if kind == "tempo":
            assert ans == f"About {round(mu.tempo_bpm)} BPM." and mu.tempo_confidence >= 0.3
        elif kind == "key":
            assert ans == f"It is in {mu.music_key}." and mu.key_confidence >= 0.5
        elif kind == "meter":
            assert mu.time_signature in ans
        elif kind == "vocals":
            assert ans.startswith("Yes") == mu.vocals
        else:
            assert f[f"music.{'instruments' if kind == 'instruments' else 'genres'}"]
    elif task == "event_localisation":
        got = [{**e, "label": label} for e in parse_event_lines(ans) for label in e["label"].split("; ")]
        kept = [e for e in so.events if e.score >= 0.4]
        truth = {(e.label, round(e.start_s, 2), round(e.end_s, 2)) for e in kept}
        assert got and all((e["label"], e["start_s"], e["end_s"]) in truth for e in got)
        if r["variant"] == "dense":
            assert len(got) == len(kept)
        elif r["variant"] == "when":
            assert {e["label"] for e in got} == {f["label"]} and len(got) == sum(e.label == f["label"] for e in kept)
        else:
            a, b = f["window_s"]
            assert len(got) == sum(e.start_s < b and e.end_s > a for e in kept)
    elif task == "audio_qa":
        kind = r["variant"]
        expect = {"has_music": "Yes." if "music" in ann.routes else "No.",
                  "has_speech": "Yes." if "speech" in ann.routes else "No.",
                  "duration": f"About {ann.duration_s:.1f} seconds.",
                  "main_sound": f"{ann.top_classes[0].label}." if ann.top_classes else None,
                  "language": f"{LANGUAGES.get(sp.language, sp.language)}." if sp and sp.language else None,
                  "count_speakers": (("One person speaks." if sp.n_speakers == 1 else f"{sp.n_speakers} people speak.")
                                     if sp else None)}
        if kind in expect:
            assert ans == expect[kind]
    elif task == "speech_caption":
        if sp.f0_median_hz is not None and sp.voice_register:
            assert f"around {round(sp.f0_median_hz)} Hz" in ans
        if sp.loudness_lufs is not None:
            assert f"({round(sp.loudness_lufs)} LUFS)" in ans
        for attr in ("gender", "age", "emotion"):  # no classifier served: never invented
            if getattr(sp, attr).value is None:
                assert f"speech.{attr}" not in f
    elif task == "reasoning":
        kind = r["variant"].split("+")[0]
        if kind == "speech_rate":
            words = [w for w in sp.words if w.word.strip()]
            span = words[-1].end_s - words[0].start_s
            assert ans.endswith(f"{len(words)} words in {span:.1f} s: about {len(words) / span:.1f} words per second, "
                                + ("slowly." if len(words) / span < 2 else "at a moderate pace." if len(words) / span < 3 else "quickly."))
        elif kind == "beats":
            beats = sorted(mu.beats_s)
            gaps = sorted(b - a for a, b in zip(beats, beats[1:], strict=False))
            assert ans.endswith(f"{len(beats)} beats; their spacing implies about {60 / gaps[len(gaps) // 2]:.0f} BPM.")
        elif kind == "longest_event":
            kept = [e for e in so.events if e.score >= 0.4]
            assert math.isclose(max(e.end_s - e.start_s for e in kept), float(ans.rsplit("for ", 1)[1].rstrip(" s.")), abs_tol=0.051)


def test_every_answer_is_rederived_from_its_annotation(sft_out, annotated):
    anns = annotations(annotated)
    recs = shard_records(sft_out)
    seen = Counter()
    for r in recs:
        rederive(r, anns[r["key"]])
        seen[r["task"]] += 1
    assert seen["asr_ts"] and seen["event_localisation"] and seen["caption"]
    # asr_ts word times are the manifest's word times (to the centisecond), relative to the segment start
    manifest = {row["key"]: row for row in pq.read_table(annotated / "manifest").to_pylist()}
    for r in recs:
        if r["task"] == "asr_ts" and r["variant"] == "words":
            words = [w for w in manifest[r["key"]]["words"] if w["word"].strip()]
            spans = parse_spans(r["answer"])
            assert [(s["start_s"], s["end_s"]) for s in spans] == [(round(w["start_s"], 2), round(w["end_s"], 2)) for w in words]
            assert all(s["end_s"] <= manifest[r["key"]]["duration_s"] + 0.01 for s in spans)


def test_sft_output_opens_typed_in_datasets_webdataset_and_duckdb(sft_out, tmp_path):
    """The card (SFT_OUT/README.md) types every column; source_fields is the same JSON string in shards and index."""
    import datasets
    import duckdb

    from pipeline.dataset_card import schema_features
    from trainer.evaluate import read_sft_samples

    recs = {r.pop("__key__"): r for r in shard_records(sft_out)}  # webdataset
    assert all(set(r) == set(RECORD_SCHEMA.names) for r in recs.values())  # the record is what the card declares
    rows = index(sft_out)
    assert all(isinstance(r["source_fields"], str) and r["source_fields"] == recs[r["sample_id"]]["source_fields"]
               for r in rows)  # one name, one type
    cache = str(tmp_path / "hf")
    ds = datasets.load_dataset(str(sft_out), split="train", cache_dir=cache)  # the card's config: the shards
    j = ds.features["json"]
    assert j["source_fields"] == j["thinking"] == j["prompt"] == datasets.Value("string")
    assert j["messages"] == datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
    assert j["seed"] == datasets.Value("int64") and j["start_s"] == j["duration_s"] == datasets.Value("float64")
    got = {r["__key__"]: r["json"] for r in ds}
    assert got == recs  # every value, typed, equal to the record as written
    assert any(r["thinking"] is None for r in recs.values())
    assert {r["task"] for r in recs.values()} >= {"caption", "asr_ts", "event_localisation"}

    ix = datasets.load_dataset("parquet", data_files=str(sft_out / "index" / "*.parquet"), split="train",
                               cache_dir=cache)
    assert ix.features == datasets.Features._from_yaml_list(schema_features(INDEX_SCHEMA))
    assert ix.to_list() == rows

    con = duckdb.connect()
    q = f"""SELECT sample_id, seed, start_s, thinking, source_fields,
                   json_array_length(json_extract(source_fields, '$."speech.words"')) AS n_words
            FROM read_parquet('{sft_out}/index/*.parquet') ORDER BY sample_id"""
    for sid, seed, start, thinking, sf_, n_words in con.execute(q).fetchall():
        r = recs[sid]
        assert (seed, start, thinking, sf_) == (r["seed"], r["start_s"], r["thinking"], r["source_fields"])
        words = json.loads(sf_).get("speech.words")
        assert n_words == (len(words) if words is not None else None)
    # the evaluator reads the reference fields out of the JSON string ("speech.words" answers to "words")
    samples, skipped = read_sft_samples([str(sft_out / "shards")], ["asr_ts"], limit=2)
    assert samples and not skipped
    for s in samples:
        assert s.field("words") == json.loads(recs[s.key]["source_fields"])["speech.words"]


def test_same_inputs_give_identical_bytes_and_a_rerun_resumes(sft_out, annotated, tmp_path):
    other = tmp_path / "again"
    assert run_cli(str(annotated), "--output", str(other), "--seed", "7", "--set", "segments_per_shard=3") == 0
    small = sorted(p.name for p in (other / "shards").glob("*.tar"))
    assert len(small) >= 2
    b = tmp_path / "b"
    assert run_cli(str(annotated), "--output", str(b), "--seed", "7", "--set", "segments_per_shard=3") == 0

    def files(d: Path) -> dict[str, bytes]:
        return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and p.name != "timing.json"}

    assert files(other) == files(b)
    # kill-like state: the last shard's marker gone and its tar half-written; the rerun redoes only that shard
    before = files(b)
    (b / "progress" / small[-1].replace(".tar", ".json")).unlink()
    (b / "shards" / small[-1]).write_bytes(b"partial")
    (b / "shards" / ".tmp-dead-shard.tar").write_bytes(b"junk")
    assert run_cli(str(annotated), "--output", str(b), "--seed", "7", "--set", "segments_per_shard=3") == 0
    assert files(b) == before
    timing = json.loads((b / "timing.json").read_text())
    assert timing["shards_resumed"] == len(small) - 1 and timing["shards_written"] == 1
    # the same samples as one big shard, whatever the shard size
    assert sorted(r["sample_id"] for r in index(b)) == sorted(r["sample_id"] for r in index(sft_out))
    # another seed into the same output is refused, not mixed
    assert run_cli(str(annotated), "--output", str(b), "--seed", "8", "--set", "segments_per_shard=3") == 2


def test_moss_jsonl_with_16k_wavs(annotated, tmp_path):
    out = tmp_path / "moss"
    assert run_cli(str(annotated), "--output", str(out), "--format", "moss-jsonl", "--tasks", "caption,asr_ts,reasoning") == 0
    lines = (out / "train.jsonl").read_text().splitlines()
    df = index(out)
    assert len(lines) == len(df) > 0 and {r["task"] for r in df} <= {"caption", "asr_ts", "reasoning"}
    anns = annotations(annotated)
    seen: dict[str, str] = {}
    for line, row in zip(lines, df, strict=True):
        conv = json.loads(line)["conversation"]
        assert [(m["role"], m["message_type"]) for m in conv] == [("user", "audio"), ("user", "text"), ("assistant", "text")]
        assert conv[1]["content"] == row["prompt"] and conv[2]["content"] == render_assistant(row["answer"], row["thinking"])
        path = Path(conv[0]["content"])
        assert path.exists() and path.parent == out / "audio" and path.name == f"{row['key']}.wav"
        seen[row["key"]] = str(path)
    assert sorted(p.name for p in (out / "audio").glob("*.wav")) == sorted(f"{k}.wav" for k in seen)  # each once
    import datasets  # the card's config for this format is train.jsonl, typed

    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.to_list() == [json.loads(line) for line in lines]
    assert ds.features["conversation"] == datasets.List({k: datasets.Value("string")
                                                         for k in ("role", "message_type", "content")})
    for key, path in seen.items():
        info = sf.info(path)
        assert info.samplerate == 16000 and info.channels == 1
        assert math.isclose(info.frames / 16000, anns[key].duration_s, abs_tol=0.002)


def test_embed_audio_copies_the_segment_flac(annotated, tmp_path):
    import webdataset as wds

    out = tmp_path / "embed"
    assert run_cli(str(annotated), "--output", str(out), "--embed-audio", "--tasks", "caption") == 0
    from trainer.audio_refs import RESOLVER

    n = 0
    for sample in wds.WebDataset(str(out / "shards" / "shard-000000.tar"), shardshuffle=False):
        meta = json.loads(sample["json"])
        assert sample["flac"] == RESOLVER.flac(meta["audio_ref"])
        data, sr = sf.read(io.BytesIO(sample["flac"]))
        assert sr == 16000 and data.ndim == 1
        n += 1
    assert n == json.loads((out / "report.json").read_text())["total_samples"]
    assert "name: flac\n    dtype:\n      audio:\n        sampling_rate: 16000" in (out / "README.md").read_text()
    assert RESOLVER.flac(f"{tmp_path}/missing.tar#{'0' * 32}") is None and RESOLVER.flac("no-hash-here") is None


def test_config_errors_name_the_key(tmp_path, annotated, capsys):
    from schemas.config import ConfigError

    example = load_sft_config(Path(__file__).parents[1] / "jobs" / "examples" / "sft.yaml")
    assert example.weights()["music_qa"] == 2.0 and load_sft_config(None, ["tasks.asr.weight=0.5"]).weights() == {
        **SftConfig().weights(), "asr": 0.5}
    with pytest.raises(ConfigError, match="tasks.karaoke"):
        load_sft_config(None, ["tasks.karaoke.weight=1"])
    with pytest.raises(ConfigError, match="thresholds.tempo_conf"):
        load_sft_config(None, ["thresholds.tempo_conf=0.2"])
    assert run_cli(str(annotated), "--output", str(tmp_path / "x"), "--tasks", "caption,lyrics") == 2
    assert "lyrics" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the trainer
@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_trainer_learns_from_sft_shards_and_a_mix(sft_out, annotated, tmp_path, capfd):
    from trainer.configs import get_config
    from trainer.train import train

    def tiny(steps: int, weights: dict):
        cfg = get_config("tiny")
        cfg.train.tokens_per_batch = cfg.train.max_seq_len = 1536
        cfg.train.log_interval, cfg.train.ckpt_interval, cfg.train.shuffle_buffer = 1, 10_000, 0
        cfg.train.max_steps, cfg.train.warmup_steps, cfg.train.lr, cfg.train.min_lr = steps, 3, 5e-3, 5e-3
        cfg.train.task_weights = weights
        return cfg

    # a handful of samples: the captions of the first two segments, audio resolved through audio_ref
    small = tmp_path / "small"
    assert run_cli(str(annotated), "--output", str(small), "--tasks", "caption", "--set", "segments_per_shard=2") == 0
    assert not any("flac" in p.name for p in (small / "shards").iterdir())
    logs = []
    train(tiny(30, {"sft": 1.0}), [str(small / "shards" / "shard-000000.tar")], tmp_path / "run", emit=logs.append)
    losses = [r["loss"] for r in logs if "loss" in r]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < losses[0] / 3, losses
    counters = json.loads(next(line for line in capfd.readouterr().err.splitlines() if "data_counters" in line))["data_counters"]
    assert counters["sft"] > 0 and counters.get("sft_no_audio", 0) == 0, counters
    logs = []
    train(tiny(8, {"caption": 1.0, "asr": 1.0, "sft": 1.0}), [str(annotated / "shards"), str(small / "shards")],
          tmp_path / "mix", emit=logs.append)
    counters = json.loads(next(line for line in capfd.readouterr().err.splitlines() if "data_counters" in line))["data_counters"]
    assert counters.get("sft", 0) > 0 and counters.get("caption", 0) + counters.get("asr", 0) > 0, counters
    assert not counters.get("sft_no_audio"), counters
    assert all(r["loss"] > 0 for r in logs if "loss" in r)


def test_named_caption_table_replaces_the_unified_caption(annotated, tmp_path):
    import pyarrow as pa

    keys = sorted(annotations(annotated))
    table_dir = annotated / "captions" / "sftcheck"
    table_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"key": k, "caption": f"Recaptioned {k[:6]}. Second sentence.", "short_caption": f"Short {k[:6]}."}
            for k in keys[1:]]  # the first key is missing from the table
    pq.write_table(pa.Table.from_pylist(rows), table_dir / "part-0.parquet")
    out = tmp_path / "recap"
    assert run_cli(str(annotated), "--output", str(out), "--tasks", "caption", "--set", "caption_table=sftcheck",
                   "--set", "tasks.caption.weight=2") == 0
    recs = shard_records(out)
    assert {r["key"] for r in recs} == set(keys[1:])
    for r in recs:
        expect = {"detailed": f"Recaptioned {r['key'][:6]}. Second sentence.", "short": f"Short {r['key'][:6]}."}
        assert r["answer"] == expect[r["variant"]] and r["caption_source"] == "table:sftcheck"
    rep = json.loads((out / "report.json").read_text())
    assert rep["skipped"]["caption"] == {"caption_table_missing_key": 1} and rep["segments"]["errors"] == {}
    shutil.rmtree(annotated / "captions")


def test_unreadable_shard_is_counted_and_a_missing_input_refused(annotated, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(annotated, broken)
    tars = sorted((broken / "shards").glob("shard-*.tar"))
    tars[0].write_bytes(b"this is not a tar archive" * 100)
    n_bad = len(json.loads(tars[0].with_suffix("").with_suffix(".keys.json").read_text())["keys"])
    out = tmp_path / "out"
    assert run_cli(str(broken), "--output", str(out), "--tasks", "caption") == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["segments"]["errors"] == {"shard_unreadable": n_bad}
    assert rep["segments"]["used"] == len(annotations(annotated)) - n_bad
    assert run_cli(str(tmp_path / "nowhere"), "--output", str(tmp_path / "o2")) == 2
    assert "no annotate output" in capsys.readouterr().err
