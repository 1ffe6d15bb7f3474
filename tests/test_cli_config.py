"""Job config errors name the bad key before any work starts; the CLI exits 0 with quarantined files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from schemas.config import ConfigError, JobConfig, load_config
from tests import synth as S

EVENTCAP = [sys.executable, "-m", "jobs.cli"]
ROOT = Path(__file__).parent.parent


def test_unknown_key_is_named(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("segmenter:\n  max_segmnt_s: 20\n")
    with pytest.raises(ConfigError, match=r"segmenter\.max_segmnt_s: unknown key"):
        load_config(cfg)


def test_bad_values_are_named():
    with pytest.raises(ConfigError, match=r"segmenter\.max_segment_s"):
        load_config(None, ["segmenter.max_segment_s=abc"])
    with pytest.raises(ConfigError, match=r"min_segment_s \(40.0\) must be smaller than max_segment_s"):
        load_config(None, ["segmenter.min_segment_s=40"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["segmenter.max_segment_s"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/job.yaml")


def test_overrides_and_hashes(tmp_path):
    cfg = load_config(None, ["segmenter.max_segment_s=20", "router.music_threshold=0.5"])
    assert cfg.segmenter.max_segment_s == 20.0 and cfg.router.music_threshold == 0.5
    base = JobConfig()
    assert cfg.segmentation_hash() != base.segmentation_hash()
    routed = load_config(None, ["router.music_threshold=0.5"])
    assert routed.segmentation_hash() == base.segmentation_hash()  # keys depend on cutting only
    assert routed.config_hash() != base.config_hash()
    placed = load_config(None, ["speech.resources.num_gpus=1", "segmenter.resources.concurrency=4"])
    assert placed.config_hash() == base.config_hash()  # where it runs does not change what it writes


def test_cli_bad_config_fails_before_work(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(EVENTCAP + ["annotate", str(tmp_path), "--output", str(out), "--set", "router.nope=1"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert "router.nope: unknown key" in res.stderr
    assert not out.exists()


@pytest.mark.slow
def test_cli_annotates_and_reports_quarantine(tmp_path):
    corpus = tmp_path / "in"
    x, _ = S.layout([("speech", S.tts(S.SENTENCES[4]), 0.2, "")])
    S.write(corpus / "a.wav", x)
    (corpus / "broken.wav").write_bytes(b"garbage" * 100)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{corpus / 'a.wav'}\n{corpus / 'broken.wav'}\n# a comment\n")
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    res = subprocess.run(EVENTCAP + ["annotate", str(listing), "--output", str(tmp_path / "out"),
                                     "--set", "segmenter.max_segment_s=20"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "quarantined 1" in res.stdout and "annotated 1 segments" in res.stdout
    assert (tmp_path / "out" / "report.json").exists()
    assert np.any([p.suffix == ".tar" for p in (tmp_path / "out" / "shards").iterdir()])
