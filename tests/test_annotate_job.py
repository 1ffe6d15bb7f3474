"""The annotate job end to end on a local Ray instance: formats, quarantine, shards, manifest, keys, resume."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from schemas.annotation import SegmentAnnotation
from schemas.config import JobConfig
from schemas.version import SCHEMA_VERSION
from tests import synth as S

REQUIRED_MANIFEST_COLUMNS = ["key", "source_uri", "source_sha256", "start_s", "end_s", "duration_s", "routes",
                             "speech_share", "music_share", "general_share", "cut_reasons", "shard", "config_hash",
                             "schema_version"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    speech, _ = S.layout([("speech", S.tts(S.SENTENCES[0]), 0.3, ""), ("speech", S.tts(S.SENTENCES[1]), 0.5, "")])
    S.write(d / "speech.wav", speech)
    music = S.chords(S.C_MAJOR * 2, 1.0)
    S.write(d / "tmp_music.wav", np.stack([music, music], 1), 16000)
    S.encode(d / "tmp_music.wav", d / "music" / "chords.mp3" if (d / "music").mkdir() is None else None,
             "-ar", "44100", "-ac", "2")
    S.encode(d / "tmp_music.wav", d / "music" / "chords.m4a")
    noise, _ = S.layout([("noise", S.noise_burst(1.5), 0.8, ""), ("clicks", S.clicks(100, 5), 0.2, "")])
    S.write(d / "tmp_noise.wav", noise)
    S.encode(d / "tmp_noise.wav", d / "noise.ogg", "-ar", "22050")
    S.encode(d / "speech.wav", d / "speech.opus", "-c:a", "libopus")
    for tmp in d.glob("tmp_*"):
        tmp.unlink()
    knock = np.zeros(int(1.2 * S.SR), np.float32)
    knock[int(0.4 * S.SR) : int(0.9 * S.SR)] = S.noise_burst(0.5)
    S.write(d / "knock.flac", knock)
    bad = d / "bad"
    bad.mkdir()
    S.write(bad / "too_short.wav", S.noise_burst(0.1))
    S.write(bad / "silent.wav", np.zeros(3 * S.SR, np.float32))
    (bad / "empty.wav").write_bytes(b"")
    (bad / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(3000))
    (bad / "notes.flac").write_text("this is a text file, not audio\n" * 20)
    (bad / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(500))  # not listed as audio: skipped, said so
    return d


def run_job(inputs, out, cfg=None):
    from pipeline.run import run_annotate

    return run_annotate([str(i) for i in inputs], str(out), cfg or JobConfig())


@pytest.fixture(scope="module")
def job(corpus, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run_job([corpus], out)
    return result, out


def manifest(out: Path):
    return pq.read_table(out / "manifest").to_pandas()


def test_bad_files_are_quarantined_with_reasons_and_good_files_annotated(job, corpus):
    result, out = job
    q = pq.read_table(out / "quarantine").to_pandas()
    errors = {Path(u).name: e for u, e in zip(q.source_uri, q.error, strict=True)}
    assert errors == {"too_short.wav": "TooShort", "silent.wav": "AllSilence", "empty.wav": "EmptyFile",
                      "corrupt.wav": "NotAudio", "notes.flac": "NotAudio", "cover.jpg": "SkippedExtension"}
    assert (q.message.str.len() > 10).all() and set(q.stage) <= {"ingest", "segment", "decode"}
    m = manifest(out)
    annotated = {Path(u).name for u in m.source_uri}
    assert annotated == {"speech.wav", "speech.opus", "chords.mp3", "chords.m4a", "noise.ogg", "knock.flac"}
    assert result.quarantined == 6
    report = json.loads((out / "report.json").read_text())
    assert report["segments"]["written"] == len(m)
    assert report["quarantined"]["by_error"]["NotAudio"] == 2
    assert {"ingest", "segment", "route", "caption"} <= set(report["stages"])
    assert report["stages"]["ingest"]["rows"] == 12


def test_manifest_columns_lineage_and_routes(job, corpus):
    _, out = job
    m = manifest(out)
    report = json.loads((out / "report.json").read_text())
    for col in REQUIRED_MANIFEST_COLUMNS:
        assert col in m.columns, col
    assert m.key.is_unique
    for _, r in m.iterrows():
        assert r.source_sha256 == hashlib.sha256(Path(r.source_uri).read_bytes()).hexdigest()
        assert abs(r.end_s - r.start_s - r.duration_s) < 1e-6
        assert r.config_hash == report["job"]["config_hash"] and r.schema_version == SCHEMA_VERSION
        assert "vad" in json.loads(r.models) and "sound_classes" in json.loads(r.models)
        assert (out / "shards" / r.shard).exists()
    routes = {Path(u).name: set(r) for u, r in zip(m.source_uri, m.routes, strict=True)}
    assert "speech" in routes["speech.wav"] and "speech" in routes["speech.opus"]
    assert "music" in routes["chords.mp3"] and "music" in routes["chords.m4a"]
    assert "speech" not in routes["chords.mp3"]
    assert "general" in routes["noise.ogg"] and "speech" not in routes["noise.ogg"]
    knock = m[m.source_uri.str.endswith("knock.flac")]
    assert len(knock) == 1 and knock.duration_s.iloc[0] <= 1.2 + 1e-6


def test_shards_open_with_webdataset_three_members_per_key(job):
    import webdataset as wds

    _, out = job
    m = manifest(out).set_index("key")
    shards = sorted(str(p) for p in (out / "shards").glob("shard-*.tar"))
    assert shards and all(Path(s).name[6:12].isdigit() for s in shards)
    seen = set()
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == {"flac", "json", "txt"}
        seg = SegmentAnnotation.model_validate_json(sample["json"])
        assert seg.key == sample["__key__"]
        audio, sr = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
        assert sr == 16000 and audio.ndim == 1
        assert abs(len(audio) / sr - seg.duration_s) < 1e-3
        assert sample["txt"].decode() == seg.caption and seg.caption
        assert m.loc[seg.key, "start_s"] == pytest.approx(seg.start_s)
        seen.add(seg.key)
    assert seen == set(m.index)
    sidecars = sorted((out / "shards").glob("shard-*.keys.json"))
    assert len(sidecars) == len(shards)


def test_segment_audio_maps_back_to_its_source(job):
    from pipeline.decode import read_segment_audio

    _, out = job
    m = manifest(out)
    r = m[m.source_uri.str.endswith("speech.wav")].iloc[0]
    tar_audio = None
    import webdataset as wds

    for sample in wds.WebDataset(str(out / "shards" / r.shard), shardshuffle=False, empty_check=False):
        if sample["__key__"] == r.key:
            tar_audio, _ = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
    src = read_segment_audio(r.source_uri, int(r.start_sample), int(r.end_sample))
    assert np.abs(src - tar_audio).max() < 1e-3  # FLAC is 16-bit


def test_same_input_gives_same_keys_and_rerun_duplicates_nothing(job, corpus, tmp_path):
    _, out = job
    keys = set(manifest(out).key)
    other = run_job([corpus], tmp_path / "again")
    assert set(manifest(tmp_path / "again").key) == keys and other.segments == len(keys)

    q = pq.read_table(out / "quarantine").to_pylist()
    rerun = run_job([corpus], out)  # everything is committed: nothing new, nothing duplicated
    assert rerun.segments == 0 and rerun.report["segments"]["skipped_already_committed"] == len(keys)
    assert rerun.report["sources"]["skipped_already_complete"] >= 4  # per-source ledger: not even decoded
    # sources rejected as a whole at listing/probing, or as too short or silent, are not read again
    verdicts = [r for r in q if r["key"] is None and (r["stage"] == "ingest" or r["error"] in ("TooShort", "AllSilence"))]
    assert {"TooShort", "AllSilence"} <= {r["error"] for r in verdicts}
    assert rerun.report["sources"]["skipped_already_quarantined"] == len(verdicts)
    after = pq.read_table(out / "quarantine").to_pylist()
    assert sorted((r["source_uri"], r["stage"], r["error"]) for r in after) == \
        sorted((r["source_uri"], r["stage"], r["error"]) for r in q)  # the rerun added no row
    assert manifest(out).key.is_unique and set(manifest(out).key) == keys


def test_killed_between_tar_and_sidecar_is_redone_exactly_once(job, corpus, tmp_path):
    _, out = job
    work = tmp_path / "resume"
    shutil.copytree(out, work)
    keys = set(manifest(work).key)
    sidecar = sorted((work / "shards").glob("*.keys.json"))[0]
    lost = set(json.loads(sidecar.read_text())["keys"])
    sidecar.unlink()  # the tar is there, its commit marker is not: the shard does not count
    (work / "shards" / ".tmp-deadbeef-shard-000099.tar").write_bytes(b"partial")
    result = run_job([corpus], work)
    assert result.segments == len(lost)
    m = manifest(work)
    assert m.key.is_unique and set(m.key) == keys
    assert not list((work / "shards").glob(".tmp-*"))


def test_tiny_trainer_learns_from_the_jobs_shards(job, tmp_path, one_thread):
    """The annotate job's real shards feed the bundled trainer: the tiny model's loss halves in 30 steps."""
    from tests.test_trainer_train import run, tiny

    _, out = job
    cfg = tiny(max_steps=30, warmup_steps=5, shuffle_buffer=0, lr=5e-3, min_lr=5e-3)
    cfg.train.tokens_per_batch = cfg.train.max_seq_len = 1536
    logs, _ = run(cfg, [out / "shards"], tmp_path / "run")
    assert len(logs) == 30
    assert logs[-1]["loss"] < logs[0]["loss"] / 2, (logs[0], logs[-1])


def test_empty_blocks_pass_every_stage():
    """A block with no columns (a source whose segments were all committed) is nothing, not an error."""
    from stages.rows import to_batch, to_rows

    assert to_rows({}) == []
    assert to_rows(to_batch([])) == []
