"""A file the job may not read (permissions). Tests run as root, who reads everything: the job runs as root
without the capabilities that bypass file permissions (setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
from the bounding set, which its Ray workers inherit). Running it as `nobody` instead fails earlier: this
environment's interpreter lives under /root (0700). The locked file is quarantined with a reason naming
permissions, the readable one is annotated, the job exits 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from tests import synth as S
from tests.reliability.faults import FAST, ROOT, fault_env
from tests.reliability.hostile import _content

pytestmark = pytest.mark.slow  # one job run


def test_an_unreadable_file_is_quarantined_with_a_reason_naming_permissions(tmp_path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv (util-linux) to drop the permission-bypassing capabilities")
    corpus = tmp_path / "in"
    S.write(corpus / "readable.wav", _content(8.0, seed=51))
    locked = S.write(corpus / "locked.wav", _content(8.0, seed=52))
    locked.chmod(0o000)
    out = tmp_path / "out"
    t0 = time.time()
    p = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-m",
                        "jobs.cli", "annotate", str(corpus), "--output", str(out), *FAST], cwd=ROOT, env=fault_env(),
                       capture_output=True, text=True, timeout=600)
    print(f"unreadable file: {time.time() - t0:.1f} s")
    assert p.returncode == 0, p.stdout + p.stderr
    q = pq.read_table(out / "quarantine").to_pylist()
    assert [(r["source_uri"], r["error"]) for r in q] == [(str(locked), "Unreadable")]
    assert "permission denied" in q[0]["message"].lower()
    m = pq.read_table(out / "manifest", columns=["source_uri"]).column("source_uri").to_pylist()
    assert m and set(m) == {str(corpus / "readable.wav")}
