"""Faults inside a real `eventcap annotate` run, each against the keys of one clean run of the same corpus:
an annotator raising on one segment, a Ray actor killed with SIGKILL, the output disk filling up (then a resume
with perturbed model scores, as on another machine)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.verify import OutputVerifier
from tests.reliability.faults import (
    annotate,
    build_fault_corpus,
    descendants_matching,
    fault_env,
    finish,
    manifest,
    overlapping,
    quarantine,
)

pytestmark = pytest.mark.slow  # each test runs the job once or twice (~1 min a run on a loaded 2-core machine)


@dataclass
class Clean:
    corpus: Path
    out: Path
    keys: set[str]
    wall_s: float


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Clean:
    root = tmp_path_factory.mktemp("faults")
    corpus = build_fault_corpus(root / "in")
    t0 = time.time()
    rc, log = finish(annotate(corpus, root / "clean"))
    assert rc == 0, log
    rows = manifest(root / "clean")
    assert len(rows) >= 8 and not overlapping(rows) and not quarantine(root / "clean")
    return Clean(corpus, root / "clean", {r["key"] for r in rows}, time.time() - t0)


def test_an_annotator_raising_on_one_segment_quarantines_that_segment_only(clean, tmp_path):
    victim = sorted(clean.keys)[0]
    t0 = time.time()
    rc, log = finish(annotate(clean.corpus, tmp_path / "out", env=fault_env(raise_key=victim)))
    print(f"raise fault: {time.time() - t0:.1f} s (clean {clean.wall_s:.1f} s)")
    assert rc == 0, log
    assert {r["key"] for r in manifest(tmp_path / "out")} == clean.keys - {victim}
    q = [(r["key"], r["stage"], r["error"]) for r in quarantine(tmp_path / "out")]
    assert q == [(victim, "general", "InjectedFault")], q
    assert OutputVerifier(str(tmp_path / "out")).run().ok
