"""Kill the annotate job at a random moment (SIGKILL), start it again: same keys as an uninterrupted run,
nothing duplicated, no half-written shard visible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests import synth as S

ROOT = Path(__file__).parent.parent
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
SMALL_SHARDS = ["--set", "shards.target_shard_mb=0.05"]  # about one segment per shard: many commit points


def annotate(corpus: Path, out: Path, *extra: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobs.cli", "annotate", str(corpus), "--output", str(out),
                             *SMALL_SHARDS, *extra], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def keys_of(out: Path) -> list[str]:
    return list(pq.read_table(out / "manifest").column("key").to_pylist())


@pytest.mark.slow
def test_sigkill_then_restart_loses_and_duplicates_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    for i in range(3):
        x, _ = S.layout([("speech", S.tts(S.SENTENCES[i]), 1.2, ""), ("music", S.chords(S.C_MAJOR, 1.0), 1.2, ""),
                         ("noise", S.noise_burst(1.5, seed=i), 0.5, "")])
        S.write(corpus / f"mix{i}.wav", x)
    # reference keys: an uninterrupted run (keys depend on the segmentation only, so branches may be off)
    ref = tmp_path / "ref"
    off = ["--set", "speech.enabled=false", "--set", "music.enabled=false", "--set", "general.enabled=false"]
    p = annotate(corpus, ref, *off)
    assert p.wait(timeout=600) == 0, p.stdout.read()
    reference = keys_of(ref)
    assert len(reference) >= 6

    out = tmp_path / "out"
    p = annotate(corpus, out)
    deadline = time.time() + 600
    while time.time() < deadline and not list((out / "shards").glob("*.keys.json")) and p.poll() is None:
        time.sleep(0.1)
    killed = p.poll() is None
    os.killpg(p.pid, signal.SIGKILL)  # the driver, its local Ray instance and every worker, mid-flight
    p.wait()
    committed_before = len(list((out / "shards").glob("*.keys.json")))
    assert killed and 1 <= committed_before, "the job should have been killed after its first commit"

    p = annotate(corpus, out)
    log = p.communicate(timeout=600)[0]
    assert p.returncode == 0, log
    keys = keys_of(out)
    assert sorted(keys) == sorted(reference)  # nothing lost, nothing duplicated
    report = json.loads((out / "report.json").read_text())
    assert report["segments"]["skipped_already_committed"] >= 1
    tars = sorted((out / "shards").glob("shard-*.tar"))
    sidecars = sorted((out / "shards").glob("shard-*.keys.json"))
    assert len(tars) == len(sidecars) and not list((out / "shards").glob(".tmp-*"))
    assert sum(len(json.loads(s.read_text())["keys"]) for s in sidecars) == len(reference)
    assert np.all([t.stat().st_size > 0 for t in tars])
