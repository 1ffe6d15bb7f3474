"""A file the job may not read (permissions). Tests run as root, who reads everything, so the job itself runs as
`nobody` (setpriv) on a copy of the corpus: the locked file is quarantined with a reason naming permissions,
the readable one is annotated, the job exits 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests import synth as S
from tests.reliability.faults import FAST, ROOT, fault_env
from tests.reliability.hostile import _content

pytestmark = pytest.mark.slow  # one job run
NOBODY = 65534


@pytest.fixture
def nobody_dir():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the job as another user")
    d = Path(tempfile.mkdtemp(prefix="i22-", dir="/tmp"))  # pytest's own tmp dir is root-only (0700)
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_an_unreadable_file_is_quarantined_with_a_reason_naming_permissions(nobody_dir):
    corpus = nobody_dir / "in"
    corpus.mkdir()
    S.write(corpus / "readable.wav", _content(8.0, seed=51))
    locked = S.write(corpus / "locked.wav", _content(8.0, seed=52))
    corpus.chmod(0o755)
    for p in corpus.iterdir():
        p.chmod(0o644)
    locked.chmod(0o000)
    for sub in ("out", "home", "tmp"):  # what the job may write: its output, a HOME for model caches, Ray's tmp
        (nobody_dir / sub).mkdir()
        os.chown(nobody_dir / sub, NOBODY, NOBODY)
    env = {**fault_env(), "HOME": str(nobody_dir / "home"), "RAY_TMPDIR": str(nobody_dir / "tmp"),
           "TMPDIR": str(nobody_dir / "tmp")}
    out = nobody_dir / "out"
    t0 = time.time()
    p = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-m",
                        "jobs.cli", "annotate", str(corpus), "--output", str(out), *FAST], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    print(f"unreadable file: {time.time() - t0:.1f} s")
    assert p.returncode == 0, p.stdout + p.stderr
    q = pq.read_table(out / "quarantine").to_pylist()
    assert [(r["source_uri"], r["error"]) for r in q] == [(str(locked), "PermissionError")]
    assert "permission denied" in q[0]["message"].lower()
    m = pq.read_table(out / "manifest", columns=["source_uri"]).column("source_uri").to_pylist()
    assert m and set(m) == {str(corpus / "readable.wav")}
