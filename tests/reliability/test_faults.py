"""Faults inside a real `eventcap annotate` run, each against the keys of one clean run of the same corpus:
an annotator raising on one segment, a Ray actor killed with SIGKILL, the output disk filling up (then a resume
with perturbed model scores, as on another machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
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
from tests.reliability.s3_proxy import FaultyS3Proxy
from tests.test_s3 import s3  # noqa: F401 - the moto server fixture

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
    assert q == [(victim, "general", "StageFailed")], q
    assert "InjectedFault" in quarantine(tmp_path / "out")[0]["message"]
    assert OutputVerifier(str(tmp_path / "out")).run().ok


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (about half of what the clean run writes) as OUT; unmounted at teardown."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_full_disk_stops_the_job_cleanly_and_a_resume_elsewhere_completes_it(clean, small_disk):
    out = small_disk
    t0 = time.time()
    rc, log = finish(annotate(clean.corpus, out))
    full_s = time.time() - t0
    assert rc == 1, log
    assert "no space left on device" in log.lower() and "eventcap: annotate stopped" in log, log[-3000:]
    shards = out / "shards"
    tars = {p.name[: -len(".tar")] for p in shards.glob("*.tar")}
    markers = {p.name[: -len(".keys.json")] for p in shards.glob("*.keys.json")}
    assert tars == markers, "every shard a reader can see is committed"
    assert not [p for p in out.rglob(".tmp-*")], "no half-written file left"
    rep = OutputVerifier(str(out)).run()
    assert rep.ok, rep.problems
    committed = {r["key"] for r in manifest(out)} if markers else set()
    assert committed < clean.keys

    # space freed; the resume runs with perturbed model scores, as on another machine: the same keys
    subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
    t0 = time.time()
    rc, log = finish(annotate(clean.corpus, out, env=fault_env(perturb="7")))
    print(f"disk full: stopped after {full_s:.1f} s with {len(committed)} keys committed; resume {time.time() - t0:.1f} s")
    assert rc == 0, log
    rows = manifest(out)
    assert sorted(r["key"] for r in rows) == sorted(clean.keys) and not overlapping(rows)
    assert OutputVerifier(str(out)).run().ok


def kill_when(p: subprocess.Popen, ready, names: tuple[str, ...], deadline_s: float = 400) -> int | None:
    """Once `ready()` holds, SIGKILL the first live process of this job whose command line names one of `names`."""
    deadline = time.time() + deadline_s
    while time.time() < deadline and p.poll() is None:
        if ready():
            victims = [v for n in names for v in descendants_matching(p.pid, n)]
            if victims:
                os.kill(victims[0].pid, signal.SIGKILL)
                return victims[0].pid
        time.sleep(0.2)
    return None


def test_actors_killed_mid_job_are_restarted_and_no_key_is_lost_or_duplicated(clean, tmp_path):
    out = tmp_path / "out"
    t0 = time.time()
    held = tmp_path / "general-in-call"  # written by the general annotator as it starts a call (inject/)
    # a slower segmenter and a general branch held 3 s in each call: both kills land mid-call. (The general kill
    # used to wait for the first committed shard; with ~12 segments the light stages take them all in one
    # bundle, so that shard could come after the general actor had finished and left.)
    p = annotate(clean.corpus, out, env=fault_env(slow_s="4", hold_general=str(held)))
    seg_pid = kill_when(p, lambda: any((out / "cuts").glob("*.json")), ("EventSegmenter",))
    branch_pid = kill_when(p, held.exists, ("GeneralAudioStage",))
    rc, log = finish(p)
    print(f"actor kills (segmenter {seg_pid}, general {branch_pid}): {time.time() - t0:.1f} s "
          f"(clean {clean.wall_s:.1f} s)")
    assert seg_pid and branch_pid, "both kills should land while the job runs"
    assert rc == 0, log
    calls = held.read_text().split()
    assert calls[0] == str(branch_pid) and len(calls) >= 2 and str(branch_pid) not in calls[1:], \
        f"the killed call is done again by a restarted actor: {calls}"
    keys = [r["key"] for r in manifest(out)]
    assert len(keys) == len(set(keys)) and set(keys) == clean.keys
    assert not quarantine(out)
    assert OutputVerifier(str(out)).run().ok


def test_s3_throttling_and_a_dropped_upload_are_retried_and_leave_no_partial_object(clean, s3, monkeypatch):  # noqa: F811
    """Output to S3 through a proxy that answers the first shard uploads 503 SlowDown and cuts one mid-body."""
    env, client = s3
    with FaultyS3Proxy(env["AWS_ENDPOINT_URL"], slowdowns=2) as proxy:
        job_env = {**fault_env(), **env, "AWS_ENDPOINT_URL": proxy.url}
        t0 = time.time()
        rc, log = finish(annotate(clean.corpus, "s3://corpus/faults", env=job_env))
        print(f"s3 faults {proxy.faults}: {time.time() - t0:.1f} s (clean {clean.wall_s:.1f} s)")
    assert rc == 0, log
    assert proxy.faults == {"slowdown": 2, "drop": 1}
    objects = [k for page in client.get_paginator("list_objects_v2").paginate(Bucket="corpus", Prefix="faults/")
               for k in (o["Key"] for o in page.get("Contents", []))]
    tars = {k[: -len(".tar")] for k in objects if k.endswith(".tar")}
    assert tars == {k[: -len(".keys.json")] for k in objects if k.endswith(".keys.json")}
    for k, v in env.items():  # the verifier reads moto directly
        monkeypatch.setenv(k, v)
    rep = OutputVerifier("s3://corpus/faults").run()
    assert rep.ok, rep.problems
    keys = [r["key"] for r in pq.read_table("corpus/faults/manifest", filesystem=s3_fs(env)).to_pylist()]
    assert len(keys) == len(set(keys)) and set(keys) == clean.keys


def s3_fs(env: dict[str, str]) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], access_key=env["AWS_ACCESS_KEY_ID"],
                             secret_key=env["AWS_SECRET_ACCESS_KEY"], region="us-east-1")
