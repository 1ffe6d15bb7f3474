"""One writer per output: a live holder refuses a second job at once; a dead holder's lease is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from pipeline.lease import LEASE_NAME, LeaseHeld, OutputLease
from tests.reliability.conftest import ROOT, SECRETS, dead_pid, eventcap

HOLD = """
import sys, time
from pipeline.lease import OutputLease
with OutputLease(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held_out(tmp_path):
    """An OUT whose lease a live process (not us) holds."""
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    yield out, p.pid
    p.kill()
    p.wait()


def test_second_writer_is_refused_naming_the_holder(held_out):
    out, pid = held_out
    with pytest.raises(LeaseHeld) as e:
        OutputLease(str(out)).acquire()
    msg = str(e.value)
    assert f"PID {pid}" in msg and socket.gethostname() in msg and "started 20" in msg


def test_second_annotate_on_a_held_output_fails_at_once(held_out, tmp_path):
    out, pid = held_out
    (tmp_path / "in").mkdir()
    lease_before = (out / LEASE_NAME).read_text()
    t0 = time.time()
    p = eventcap("annotate", str(tmp_path / "in"), "--output", str(out), timeout=120)
    elapsed = time.time() - t0
    assert p.returncode == 3, p.stdout + p.stderr
    assert f"is being written by another eventcap job: host {socket.gethostname()}, PID {pid}" in p.stderr
    # the command line's own start-up (argparse imports the trainer) is ~20 s on a loaded 2-core machine
    assert elapsed < 60, f"refused after {elapsed:.1f} s: it must not start Ray or read inputs first"
    assert (out / LEASE_NAME).read_text() == lease_before, "the holder's lease is untouched"
    assert sorted(os.listdir(out)) == [LEASE_NAME], "nothing else was written"
    assert not any(v in p.stdout + p.stderr for v in SECRETS.values())


def test_run_annotate_refuses_before_touching_anything(held_out, tmp_path):
    from pipeline.run import run_annotate
    from schemas.config import JobConfig

    out, pid = held_out
    t0 = time.time()
    with pytest.raises(LeaseHeld, match=f"PID {pid}"):
        run_annotate([str(tmp_path)], str(out), JobConfig())
    assert time.time() - t0 < 2
    assert sorted(os.listdir(out)) == [LEASE_NAME]


def test_stale_lease_of_a_dead_pid_is_taken_over_and_said(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pid = dead_pid()
    (out / LEASE_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": "x"}))
    with OutputLease(str(out)) as lease:
        assert lease.taken_over["pid"] == pid and "is not running" in lease.taken_over["reason"]
        assert json.loads((out / LEASE_NAME).read_text())["pid"] == os.getpid()
    assert not (out / LEASE_NAME).exists()


def test_lease_from_another_host_is_stale_only_when_its_heartbeat_stops(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LEASE_NAME).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "x"}))
    with pytest.raises(LeaseHeld, match="host elsewhere, PID 1"):
        OutputLease(str(out), stale_after_s=60).acquire()
    old = time.time() - 300
    os.utime(out / LEASE_NAME, (old, old))
    with OutputLease(str(out), stale_after_s=60) as lease:
        assert "not refreshed for 300 s" in lease.taken_over["reason"]


def test_heartbeat_keeps_the_lease_fresh(tmp_path):
    out = tmp_path / "out"
    with OutputLease(str(out), heartbeat_s=0.2):
        old = time.time() - 300
        os.utime(out / LEASE_NAME, (old, old))
        time.sleep(0.6)
        assert time.time() - (out / LEASE_NAME).stat().st_mtime < 5
