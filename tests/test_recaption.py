"""`eventcap recaption OUT --name NAME`: only the merger runs over committed shards (no audio decoded),
the named table resumes, and `eventcap train --captions NAME` reads it in place of <key>.txt."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.cli import main as cli
from pipeline.recaption import read_caption_table
from schemas.annotation import SegmentAnnotation
from schemas.tables import CAPTIONS_SCHEMA
from tests import caption_fixtures as C
from tests.llm_servers import StubChatServer
from tests.trainer_fixtures import add_member, flac_bytes, make_annotate_shards


def commit(out: Path) -> dict[str, list[str]]:
    """Write the sidecars that commit fixture shards (as the annotate job does); return {shard: keys}."""
    import tarfile

    shards = {}
    for tar_path in sorted((out / "shards").glob("shard-*.tar")):
        with tarfile.open(tar_path) as tar:
            keys = [m.name[:-5] for m in tar.getmembers() if m.name.endswith(".json")]
        (tar_path.parent / f"{tar_path.stem}.keys.json").write_text(json.dumps({"shard": tar_path.name,
                                                                                "keys": keys}))
        shards[tar_path.stem] = keys
    return shards


@pytest.fixture
def annotated(tmp_path) -> tuple[Path, dict[str, list[str]]]:
    """Two shards of fixture segments (music, sounds, speech, the injection) with real FLAC members."""
    import tarfile

    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    segs = [C.music("rc-music"), C.sounds("rc-sounds"), C.speech("rc-speech"), C.injection("rc-inject")]
    import numpy as np

    for s, part in enumerate((segs[:2], segs[2:])):
        with tarfile.open(out / "shards" / f"shard-{s:06d}.tar", "w") as tar:
            for seg in part:
                add_member(tar, f"{seg.key}.flac", flac_bytes(np.zeros(int(seg.duration_s * 16000), np.float32)))
                add_member(tar, f"{seg.key}.json", seg.model_dump_json().encode())
                add_member(tar, f"{seg.key}.txt", b"old caption")
    return out, commit(out)


def no_audio_decoding(monkeypatch):
    import soundfile

    def refuse(*a, **k):
        raise AssertionError("recaption decoded audio")

    monkeypatch.setattr(soundfile, "read", refuse)
    monkeypatch.setattr(soundfile, "SoundFile", refuse)


def test_recaption_writes_a_named_table_and_resumes(annotated, monkeypatch, capsys):
    out, shards = annotated
    no_audio_decoding(monkeypatch)
    before = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}
    with StubChatServer() as stub:
        args = ["recaption", str(out), "--name", "stub-v1", "--set", "caption.merger=llm",
                "--set", f"caption.base_url={stub.base_url}", "--set", "caption.model=ok"]
        assert cli(args) == 0
        table = read_caption_table(str(out), "stub-v1")
        assert table.schema == CAPTIONS_SCHEMA
        rows = {r["key"]: r for r in table.to_pylist()}
        assert set(rows) == {k for keys in shards.values() for k in keys}
        assert rows["rc-music"]["caption_source"] == "llm" and "96 BPM" in rows["rc-music"]["caption"]
        assert rows["rc-music"]["shard"] == "shard-000000.tar" and rows["rc-music"]["caption_model"] == "ok"
        assert "hacked" not in (rows["rc-inject"]["caption"] + rows["rc-inject"]["short_caption"]).lower()
        report = json.loads((out / "captions" / "stub-v1" / "report.json").read_text())
        assert report["segments_captioned_now"] == 4 and report["captions"]["by_source"]["llm"] >= 3
        assert "captioned 4 segments" in capsys.readouterr().out
        n_requests = len(stub.requests)

        # a killed run left one part: the rerun does only the other shard, and its replies come from the cache
        (out / "captions" / "stub-v1" / "shard-000001.parquet").unlink()
        assert cli(args) == 0
        report = json.loads((out / "captions" / "stub-v1" / "report.json").read_text())
        assert report["shards"] == {"total": 2, "captioned_now": 1, "skipped_already_done": 1}
        assert len(stub.requests) == n_requests
        assert read_caption_table(str(out), "stub-v1").num_rows == 4

        # another caption config under the same name is refused, naming the problem
        assert cli(args[:-1] + ["caption.model=other"]) == 2
        assert "another caption config" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (out / "shards").iterdir()} == before  # nothing rewritten

    # the default template merger needs no server
    assert cli(["recaption", str(out), "--name", "tmpl"]) == 0
    t = pq.read_table(out / "captions" / "tmpl" / "shard-000000.parquet").to_pylist()
    assert {r["caption_source"] for r in t} == {"template"} and all(r["short_caption"] for r in t)


def test_recaption_errors_are_clear(tmp_path, capsys):
    assert cli(["recaption", str(tmp_path), "--name", "x"]) == 2
    assert "no committed shards" in capsys.readouterr().err
    assert cli(["recaption", str(tmp_path), "--name", "../escape"]) == 2
    assert cli(["recaption", str(tmp_path), "--name", "x", "--set", "caption.merger=llm"]) == 2
    assert "base_url" in capsys.readouterr().err


def test_train_reads_the_named_caption_table(tmp_path):
    import webdataset as wds

    from pipeline.recaption import run_recaption
    from schemas.config import JobConfig
    from trainer.data import load_caption_table, make_example
    from trainer.sequence import IGNORE
    from trainer.tokenizer import ByteTokenizer

    out = tmp_path / "out"
    paths = make_annotate_shards(out, n_shards=2, per_shard=3)
    commit(out)
    run_recaption(str(out), "tmpl", JobConfig(), log=lambda *_: None)
    table = load_caption_table([str(p) for p in paths], "tmpl")
    assert len(table) == 6
    tok, counters = ByteTokenizer(), Counter()
    seen = 0
    for sample in wds.tarfile_samples([{"url": str(p)} for p in paths]):
        meta = SegmentAnnotation.model_validate_json(sample["json"])
        ex = make_example(sample, tok, {"caption": 1.0}, None, random.Random(0), counters, captions=table)
        target = tok.decode([t for t in ex.labels if t != IGNORE])
        assert table[meta.key] in target and sample["txt"].decode() not in target
        seen += 1
    assert seen == 6 and counters["caption"] == 6
    with pytest.raises(FileNotFoundError, match="eventcap recaption"):
        load_caption_table([str(p) for p in paths], "missing")
    partial = dict(list(table.items())[:1])
    sample = next(iter(wds.tarfile_samples([{"url": str(paths[1])}])))
    assert make_example(sample, tok, {"caption": 1.0}, None, random.Random(0), counters, captions=partial) is None
    assert counters["caption_not_in_table"] == 1
