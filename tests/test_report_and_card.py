"""The annotate output as others open it: report.html rendered by headless Chromium, and the dataset card that
lets `datasets`, `webdataset`, `ray.data` and DuckDB read the manifest and the shards with typed columns."""

from __future__ import annotations

import glob
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import synth as S

ROOT = Path(__file__).parent.parent
ENV_KEYS = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
            "PYANNOTE_METRICS_ENABLED": "0"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> Path:
    """A real annotate output: speech, music and noise, all branches on, plus one corrupt file."""
    import os

    d = tmp_path_factory.mktemp("report")
    corpus = d / "corpus"
    x, _ = S.layout([("speech", S.tts(S.SENTENCES[0]), 1.0, ""), ("music", S.chords(S.C_MAJOR, 1.0), 1.0, ""),
                     ("noise", S.noise_burst(1.5, seed=1), 0.5, "")])
    S.write(corpus / "mix.wav", x)
    S.write(corpus / "talk.wav", S.layout([("speech", S.tts(S.SENTENCES[1]), 0.5, "")])[0])
    (corpus / "broken.wav").write_bytes(b"RIFF\x00\x00not audio")
    out = d / "out"
    r = subprocess.run([sys.executable, "-m", "jobs.cli", "annotate", str(corpus), "--output", str(out)], cwd=ROOT,
                       env={**os.environ, **ENV_KEYS}, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def manifest(out: Path) -> pa.Table:
    return pq.read_table(out / "manifest")


# ------------------------------------------------------------------ report.html
def screenshot(html: Path, png: Path, width: int = 1280, height: int = 2200) -> np.ndarray:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian package `chromium` is not installed")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png}", html.as_uri()], capture_output=True, timeout=120, check=True)
    import matplotlib.image

    return matplotlib.image.imread(png)[..., :3]


@pytest.mark.slow
def test_report_is_one_offline_page_chromium_renders(annotated, tmp_path):
    page = annotated / "report.html"
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no network asset of any kind
    assert "@import" not in html and "url(" not in html
    imgs = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', html)
    assert {"Segment duration", "Route composition", "Languages", "Per-stage throughput"} <= set(imgs)
    m = manifest(annotated)
    assert f"<b>{m.num_rows:,}</b><span>segments</span>" in html
    assert "<b>1</b><span>quarantined</span>" in html  # the corrupt file

    shot = screenshot(page, tmp_path / "report.png")
    h, w, _ = shot.shape
    assert (h, w) == (2200, 1280)
    background = np.array([0xF3, 0xF4, 0xF6]) / 255
    differs = np.abs(shot - background).sum(axis=2) > 0.05
    assert differs.mean() > 0.25  # cards and charts cover the page, not a blank or error page
    assert len(np.unique((shot[::4, ::4] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50  # real charts
    top = differs[:400].mean(axis=1)
    assert (top > 0.3).sum() > 50  # the header stats row rendered at the top


def test_report_of_an_output_with_nothing_but_quarantine_says_so(tmp_path):
    from pipeline.report import write_report
    from schemas.tables import QUARANTINE_SCHEMA

    (tmp_path / "quarantine").mkdir()
    rows = [{"source_uri": f"/x/{i}.wav", "stage": "ingest", "error": e, "message": "m", "source_sha256": None,
             "key": None, "time": "2026-11-30T00:00:00Z", "schema_version": "1"}
            for i, e in enumerate(["DecodeError", "DecodeError", "EmptyFile"])]
    pq.write_table(pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA), tmp_path / "quarantine" / "part-a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:1], schema=QUARANTINE_SCHEMA), tmp_path / "quarantine" / "part-b.parquet")
    html = Path(write_report(str(tmp_path))).read_text()
    assert "No segments in the output yet." in html and "<b>3</b><span>quarantined</span>" in html  # de-duplicated
    assert html.count("data:image/png;base64,") == 1  # only the quarantine chart has something to draw


# ------------------------------------------------------------------ the dataset card and the readers
@pytest.mark.slow
def test_datasets_loads_typed_shards_from_the_card(annotated):
    import datasets

    from pipeline.dataset_card import manifest_features

    m = manifest(annotated)
    shards = datasets.load_dataset(str(annotated), split="train")  # the card's default config: the shards
    assert sorted(shards["__key__"]) == sorted(m.column("key").to_pylist())
    speech_t = shards.features["json"]["speech"]
    assert isinstance(speech_t, dict) and speech_t["transcript"] == datasets.Value("string")
    assert speech_t["speakers"] == datasets.List({"speaker": datasets.Value("string"),
                                                  "start_s": datasets.Value("float64"),
                                                  "end_s": datasets.Value("float64")})
    assert shards.features["flac"] == datasets.Audio(sampling_rate=16000)
    rows = {r["__key__"]: r for r in shards.select_columns(["__key__", "json", "txt"])}
    for key, routes, transcript, caption in zip(*(m.column(c).to_pylist() for c in
                                                  ("key", "routes", "transcript", "caption")), strict=True):
        j = rows[key]["json"]
        assert j["routes"] == routes and rows[key]["txt"] == caption
        assert (j["speech"] is None) == ("speech" not in routes)
        if j["speech"] is not None:
            assert j["speech"]["transcript"] == transcript
    assert set(shards.features["json"]["models"]) >= {"vad", "sound_classes"}

    # the manifest is Parquet: typed as written, and the same types the card module derives for it
    man = datasets.load_dataset("parquet", data_files=str(annotated / "manifest" / "*.parquet"), split="train")
    assert man.num_rows == m.num_rows
    assert man.features == datasets.Features._from_yaml_list(manifest_features())


def test_card_types_follow_the_pydantic_model_even_when_the_first_rows_have_no_speech(tmp_path):
    """The failure the card exists for: non-speech rows first, a speech struct later."""
    import datasets
    import webdataset as wds

    from pipeline.dataset_card import write_dataset_card
    from schemas.annotation import ModelInfo, SegmentAnnotation, SpeechAnnotation, Word
    from schemas.tables import MANIFEST_SCHEMA, manifest_row
    from stages.shard_writer import flac_bytes

    (tmp_path / "shards").mkdir()
    (tmp_path / "manifest").mkdir()
    segs = []
    with wds.TarWriter(str(tmp_path / "shards" / "shard-000000.tar")) as tw:
        for i in range(4):
            sp = SpeechAnnotation(transcript="hi", language="en", words=[Word(word="hi", start_s=0.1, end_s=0.3,
                                                                              probability=0.9)]) if i == 3 else None
            seg = SegmentAnnotation(key=f"k{i}", source_uri="/a.wav", source_sha256="0" * 64, sample_rate=16000,
                                    start_sample=0, end_sample=1600, start_s=0.0, end_s=0.1, duration_s=0.1,
                                    cut_reasons=["source_start", "source_end"], routes=["speech"] if sp else [],
                                    speech_share=0.0, music_share=0.0, general_share=0.0, speech=sp,
                                    models={"vad": ModelInfo(name="silero")}, config_hash="c")
            tw.write({"__key__": seg.key, "flac": flac_bytes(np.zeros(1600, np.float32), 16000),
                      "json": seg.model_dump_json().encode(), "txt": b""})
            segs.append(seg)
    pq.write_table(pa.Table.from_pylist([manifest_row(s, "shard-000000.tar") for s in segs], schema=MANIFEST_SCHEMA),
                   tmp_path / "manifest" / "shard-000000.parquet")
    write_dataset_card(str(tmp_path))
    ds = datasets.load_dataset(str(tmp_path), split="train")
    assert [r["speech"] for r in ds["json"]][:3] == [None, None, None]
    assert ds[3]["json"]["speech"]["words"][0]["word"] == "hi"
    assert list(ds.features["json"]["models"]) == ["vad"]


@pytest.mark.slow
def test_webdataset_ray_data_and_duckdb_read_the_output(annotated, ray_local):
    import duckdb
    import ray
    import soundfile as sf
    import webdataset as wds

    from schemas.annotation import SegmentAnnotation

    m = manifest(annotated)
    tars = sorted(glob.glob(str(annotated / "shards" / "shard-*.tar")))
    seen = {}
    for sample in wds.WebDataset(tars, shardshuffle=False):
        seg = SegmentAnnotation.model_validate_json(sample["json"])
        audio, sr = sf.read(__import__("io").BytesIO(sample["flac"]))
        assert sr == 16000 and abs(len(audio) / sr - seg.duration_s) < 0.01
        seen[sample["__key__"]] = seg
    assert sorted(seen) == sorted(m.column("key").to_pylist())

    ds = ray.data.read_webdataset(tars)
    got = ds.take_all()
    assert sorted(r["__key__"] for r in got) == sorted(seen)
    assert all(json.loads(r["json"]) if isinstance(r["json"], bytes) else r["json"] for r in got)

    con = duckdb.connect()
    by_route = dict(con.execute(f"SELECT array_to_string(routes, '+'), count(*) FROM "
                                f"'{annotated}/manifest/*.parquet' GROUP BY 1").fetchall())
    assert by_route == dict(Counter("+".join(r) for r in m.column("routes").to_pylist()))
    n_lang = con.execute(f"SELECT count(*) FROM '{annotated}/manifest/*.parquet' WHERE language IS NOT NULL").fetchone()
    assert n_lang[0] == sum(1 for x in m.column("language").to_pylist() if x is not None)
