"""Shared pieces of the fault tests: a small corpus, `eventcap annotate` with faults injected through
`inject/sitecustomize.py`, and what an output holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from tests import mixtures as M
from tests import synth as S
from tests.reliability.conftest import cli_env
from tests.reliability.hostile import _content

ROOT = Path(__file__).parent.parent.parent
INJECT = Path(__file__).parent / "inject"
FAST = ["--set", "speech.enabled=false", "--set", "music.enabled=false",  # segment + general: the subject
        "--set", "shards.target_shard_mb=0.05"]  # about one segment per shard: many commit points


def build_fault_corpus(d: Path) -> Path:
    """Three sources, ~93 s, ~12 segments; the mixture is one whose cuts move under perturbed scores."""
    d.mkdir(parents=True)
    S.write(d / "mixed.wav", M.mixed(noise_floor=0.01)[0])
    S.write(d / "bursts_a.wav", _content(10.0, seed=31))
    S.write(d / "bursts_b.flac", _content(10.0, seed=32))
    return d


def fault_env(**faults: str) -> dict[str, str]:
    """The job's environment with faults switched on (EVENTCAP_FAULT_<NAME>=value, see inject/sitecustomize.py)."""
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(INJECT), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update({f"EVENTCAP_FAULT_{k.upper()}": v for k, v in faults.items()})
    return env


def annotate(corpus: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobs.cli", "annotate", str(corpus), "--output", str(out),
                             *FAST, *extra], cwd=ROOT, env=env or fault_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(p: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    """Wait for the job; one that overruns is killed with its whole process group (its own Ray)."""
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise AssertionError(f"the job overran {timeout} s:\n{out[-5000:]}") from None
    return p.returncode, out


def manifest(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest", columns=["key", "source_uri", "start_s", "end_s"]).to_pylist()


def quarantine(out: Path) -> list[dict]:
    return pq.read_table(out / "quarantine").to_pylist() if (out / "quarantine").exists() else []


def overlapping(rows: list[dict]) -> list[tuple[str, str]]:
    """Pairs of segment keys of one source whose audio overlaps."""
    by_src: dict[str, list[dict]] = {}
    for r in rows:
        by_src.setdefault(r["source_uri"], []).append(r)
    bad = []
    for segs in by_src.values():
        segs.sort(key=lambda r: r["start_s"])
        bad += [(a["key"], b["key"]) for a, b in zip(segs, segs[1:], strict=False) if b["start_s"] < a["end_s"] - 1e-6]
    return bad


def descendants_matching(pid: int, text: str) -> list[psutil.Process]:
    """Processes under `pid` (this job's own Ray, never another's) whose command line contains `text`."""
    found = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if text in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found
