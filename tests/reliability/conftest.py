"""One hostile corpus, annotated once per session through the command line, with fake secrets planted.

The run also starts on an OUT holding a stale lease (a dead PID on this host), so it must take the lease over.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.hostile import build_hostile_corpus

ROOT = Path(__file__).parent.parent.parent
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEKEYID22SECRET",
    "AWS_SECRET_ACCESS_KEY": "fake+aws/secret-Zq9xW2vB7nM4kL1pR8tY",
    "OPENAI_API_KEY": "sk-fake-llm-key-Hq3Jd8Kf2Lm9Np4Rs7Tv",
    "EVENTCAP_LLM_API_KEY": "ek-fake-eventcap-llm-key-5Gh2Jk8Lp",
}
FAST = ["--set", "speech.enabled=false", "--set", "music.enabled=false",  # ingest/segment/general: the subject
        "--set", "shards.target_shard_mb=0.05"]  # about one segment per shard: verify can name one


def cli_env() -> dict[str, str]:
    return {**os.environ, **SECRETS, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
            "HF_HUB_OFFLINE": "1", "PYANNOTE_METRICS_ENABLED": "0"}


def eventcap(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def tree_snapshot(root: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for dirpath, _, files in os.walk(root, followlinks=False):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mtime)
    return out


@dataclass
class HostileRun:
    root: Path
    out: Path
    inputs: list[str]
    expected: dict[str, str]
    proc: subprocess.CompletedProcess
    wall_s: float
    stale_pid: int
    before: dict[str, tuple[int, float]]


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory) -> HostileRun:
    root = tmp_path_factory.mktemp("hostile")
    inputs, expected = build_hostile_corpus(root)
    out = root / "out"
    out.mkdir()
    pid = dead_pid()
    (out / ".eventcap.lease").write_text(json.dumps({"host": socket.gethostname(), "pid": pid,
                                                     "started": "2026-01-01T00:00:00+00:00", "token": "old"}))
    before = tree_snapshot(root)
    t0 = time.time()
    proc = eventcap("annotate", *inputs, "--output", str(out), *FAST)
    return HostileRun(root, out, inputs, expected, proc, time.time() - t0, pid, before)
