"""Segments stream through the stages: a downstream stage works while an upstream one is still busy (issue 20,
time to first segment).

Ray Data merges a task's outputs into blocks of up to `ray_data.target_block_mb` before any leaves the task, and
holds a stage's inputs until it has a call's worth of rows. With 32 MB blocks and 16 rows per light task call, a
corpus of less than 32 MB of decoded audio left the segmenter in one block, so every stage ran only after the
one before it had finished everything (bench corpus: the first caption 65 s after Ray was up, near the job's
end).

The corpus: 8 sources of 60 s, each six 8 s noise bursts separated by 2 s of digital silence (over
segmenter.split_silence_s, so six segments per source): 48 segments, 30.7 MB of float32 audio at 16 kHz. At the
defaults (0.1 MB blocks, one row per light task call) the caption stage has output long before the segmenter's
last (2026-12-01: caption first 10.7 s, segmenter last 25.8 s after Ray was up, on a loaded machine).

A contrast run at 32 MB no longer shows a difference on this corpus: the segmenter takes one source per call
and each call's outputs leave when it ends, and the router and caption merger now take them one row at a time
(caption first 9.8 s, segmenter last 22.0 s). The block size now matters within one call: a long source's
segments and a branch actor's first segment (tests/test_stage_protocol.py), which needs the models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.reliability.conftest import ROOT, cli_env

pytestmark = pytest.mark.slow  # a job of ~25 s

SR = 16000
LIGHT = ["--set", "speech.enabled=false", "--set", "music.enabled=false", "--set", "general.enabled=false"]


def burst_corpus(root: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(7)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        x = np.zeros(60 * SR, np.float32)
        for b in range(6):
            lo = b * 10 * SR + SR
            x[lo:lo + 8 * SR] = 0.1 * rng.standard_normal(8 * SR).astype(np.float32)
        sf.write(root / f"bursts_{i}.flac", x, SR)
    return root


def stage_times(src: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "jobs.cli", "annotate", str(src), "--output", str(out), "--no-progress",
                        *LIGHT], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["segments"]["written"] == 48, report["segments"]
    spans = {k: [v.get("first_output_s"), v.get("last_output_s")] for k, v in report["stages"].items()}
    print(f"\nfirst/last output s after Ray was up: {json.dumps(spans)}")
    return report["stages"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return burst_corpus(tmp_path_factory.mktemp("bursts") / "in")


def test_the_caption_stage_works_while_the_segmenter_is_still_segmenting(corpus, tmp_path):
    stages = stage_times(corpus, tmp_path / "out")  # the defaults
    assert stages["caption"]["first_output_s"] < stages["segment"]["last_output_s"], stages

