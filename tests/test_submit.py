"""`eventcap submit/status/logs/stop` against a real Ray head started here on 127.0.0.1 (stopped by PID)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests import synth as S
from tests.ray_head import RayHead

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head():
    h = RayHead(num_cpus=2)
    try:
        h.wait_ready()
        yield h
    finally:
        h.stop()
    assert not h.leftover_pids()


CORE = ("ray", "numpy", "pyarrow", "pydantic", "soundfile", "onnxruntime", "torch", "librosa", "webdataset")


@pytest.fixture(scope="module")
def lock(tmp_path_factory) -> Path:
    """A lock of exactly the installed versions of the packages the job imports (what `requirements.lock` is
    on a node set up from it). Not every installed package: the shared test venv changes under other work."""
    p = tmp_path_factory.mktemp("lock") / "requirements.lock"
    p.write_text("".join(f"{name}=={metadata.version(name)}\n" for name in CORE))
    return p


def eventcap(head: RayHead, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=head.env, capture_output=True,
                          text=True, timeout=timeout)


def corpus(d: Path, n: int) -> Path:
    for i in range(n):
        x, _ = S.layout([("speech", S.tts(S.SENTENCES[i % len(S.SENTENCES)]), 1.0, ""),
                         ("noise", S.noise_burst(1.5, seed=i), 0.5, "")])
        S.write(d / f"clip{i}.wav", x)
    return d


BRANCHES_OFF = "speech:\n  enabled: false\nmusic:\n  enabled: false\ngeneral:\n  enabled: false\n"


def test_submit_wait_runs_annotate_on_the_cluster_with_the_shipped_config(head, lock, tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("segmenter:\n  max_segment_s: 7.5\n" + BRANCHES_OFF)
    out = tmp_path / "out"
    r = eventcap(head, "submit", "--address", head.address, "--wait", "--lock", str(lock),
                 "annotate", str(corpus(tmp_path / "corpus", 2)), "--output", str(out), "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    job_id = r.stdout.splitlines()[0]
    assert job_id.startswith("eventcap-annotate-")
    assert "lock check:" in r.stdout and "annotated" in r.stdout  # the job's log, followed
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["segmenter"]["max_segment_s"] == 7.5  # the config travelled with the job
    assert report["config"]["speech"]["enabled"] is False
    keys = pq.read_table(out / "manifest").column("key").to_pylist()
    assert len(keys) == report["segments"]["written"] >= 2 and len(set(keys)) == len(keys)
    assert (out / "report.html").stat().st_size > 10_000 and (out / "README.md").exists()  # written at the end

    st = eventcap(head, "status", job_id, "--address", head.address)
    assert st.returncode == 0 and f"{job_id}\tSUCCEEDED" in st.stdout
    lg = eventcap(head, "logs", job_id, "--address", head.address)
    assert lg.returncode == 0 and f"annotated {len(keys)} segments" in lg.stdout
    listing = eventcap(head, "status", "--address", head.address)
    assert job_id in listing.stdout and "annotate " in listing.stdout


def test_a_cluster_that_differs_from_the_lock_fails_fast_and_says_what_differs(head, lock, tmp_path):
    bad = tmp_path / "requirements.lock"
    bad.write_text(lock.read_text().replace(f"numpy=={metadata.version('numpy')}", "numpy==1.0.0"))
    out = tmp_path / "out"
    t0 = time.time()
    r = eventcap(head, "submit", "--address", head.address, "--wait", "--lock", str(bad),
                 "annotate", str(tmp_path), "--output", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"numpy: locked 1.0.0, installed {metadata.version('numpy')}" in r.stdout
    assert "FAILED" in r.stderr and not out.exists()
    assert time.time() - t0 < 120


def test_stop_ends_a_running_job_and_follow_ends_with_it(head, lock, tmp_path):
    src = corpus(tmp_path / "corpus", 6)
    r = eventcap(head, "submit", "--address", head.address, "--lock", str(lock),
                 "annotate", str(src), "--output", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    deadline = time.time() + 120
    while time.time() < deadline and "RUNNING" not in eventcap(head, "status", job_id, "--address",
                                                                 head.address).stdout:
        time.sleep(1)
    follower = subprocess.Popen([sys.executable, "-m", "jobs.cli", "logs", job_id, "--follow", "--address",
                                 head.address], cwd=ROOT, env=head.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    s = eventcap(head, "stop", job_id, "--address", head.address)
    assert s.returncode == 0 and f"job {job_id}: STOPPED" in s.stdout, s.stdout + s.stderr
    _, err = follower.communicate(timeout=120)
    assert follower.returncode == 130 and "STOPPED" in err
    assert f"{job_id}\tSTOPPED" in eventcap(head, "status", job_id, "--address", head.address).stdout
