"""The write stage writes each key once however often Ray runs its tasks (issue 22's "loses and duplicates
nothing", after a CI run of the 3-node test found every key written twice once a worker node was removed).

Ray runs a write task again in three ways, each done here with real write tasks on the local Ray instance and a
fixed task id (what Ray keeps across a task's attempts):
  - lineage reconstruction of a task that finished (its result lost with a node): the same result, no write;
  - a retry after the attempt's node went away mid-task: the retry skips the shard that attempt committed, and
    removes the one it had begun but not committed (that attempt may still run on a node being torn down);
  - an upstream task replayed after a node loss: rows another write task has already reach a second one.
And an attempt on a node being torn down, still running when its retry has begun, commits nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import ray

from pipeline.coordinator import StaleAttempt, WriteCoordinator
from pipeline.ledger import committed_shards
from pipeline.verify import OutputVerifier
from stages.rows import COLUMNS, Row, RowKind, audio_bytes
from stages.shard_writer import ShardWriter
from tests.caption_fixtures import segment

SR = 16000


def block(keys: list[str]) -> pa.Table:
    """A block of segment rows as the caption stage hands them to the writer (0.5 s of audio each)."""
    rows = []
    for i, k in enumerate(keys):
        seg = segment(k, 0.5, ["general"])
        x = 0.1 * np.sin(2 * np.pi * (220 + 10 * i) * np.arange(SR // 2) / SR)
        rows.append(Row(RowKind.SEGMENT, seg.model_dump_json(), key=k, audio=audio_bytes(x)).to_dict())
    return pa.table({c: [r[c] for r in rows] for c in COLUMNS})


class FixedTask(ShardWriter):
    """A writer whose task id is given (Ray gives every attempt and re-execution of a task the same one), and
    whose worker can exit, as its node going away would leave it: `die="after_shard"` once its first shard is
    committed, `die="before_marker"` with its first shard's tar and manifest part written, but not its marker."""

    def __init__(self, *a, task: str, die: str = "", **kw):
        super().__init__(*a, **kw)
        self.task, self.die = task, die

    def task_id(self) -> str:
        return self.task

    def _commit(self, *a, **kw) -> str:
        if self.die == "before_marker":
            import stages.shard_writer as sw

            real = sw.write_atomic

            def write_atomic(fs, path, *args, **kwargs):
                if path.endswith(".keys.json"):
                    raise SystemExit("node went away")
                return real(fs, path, *args, **kwargs)

            sw.write_atomic = write_atomic  # the worker exits with it
        name = super()._commit(*a, **kw)
        if self.die == "after_shard":
            raise SystemExit("node went away")
        return name


@ray.remote(num_cpus=0, max_retries=0)
def write_task(sink: ShardWriter, blocks: list[pa.Table]) -> dict:
    return sink.write(iter(blocks), None)


def manifest_keys(out) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "manifest", columns=["key"]).column("key").to_pylist()


@pytest.mark.usefixtures("ray_local")
def test_each_key_is_written_once_however_often_ray_runs_the_write_tasks(tmp_path):
    out = tmp_path / "out"
    coord = WriteCoordinator.remote(0)
    shard_mb = 0.001  # 1 segment a shard: every segment is its own commit point

    def sink(task: str, **kw) -> ShardWriter:
        s = FixedTask(str(out), shard_mb, coord, task=task, **kw)
        s.on_write_start()
        return s

    # task A writes k0..k3, then is run again whole (lineage reconstruction): same result, nothing new
    first = ray.get(write_task.remote(sink("A"), [block(["k0", "k1"]), block(["k2", "k3"])]))
    assert first["segments"] == 4 and len(first["shards"]) == 4
    files = sorted(p.name for p in (out / "shards").iterdir())
    again = ray.get(write_task.remote(sink("A"), [block(["k0", "k1"]), block(["k2", "k3"])]))
    assert again == first
    assert sorted(p.name for p in (out / "shards").iterdir()) == files

    # task B gets k2..k5: k2 and k3 replayed from upstream, already A's; it writes k4 and k5 only
    b = ray.get(write_task.remote(sink("B"), [block(["k2", "k3", "k4", "k5"])]))
    assert (b["segments"], b["duplicates_dropped"]) == (2, 2)

    # task C dies after committing its first shard; its retry (same task id) skips that shard, writes the rest,
    # and reports all three segments with the lost attempt's shard among its own
    with pytest.raises(ray.exceptions.WorkerCrashedError):  # the worker exits, as on a node that went away
        ray.get(write_task.remote(sink("C", die="after_shard"), [block(["k6", "k7", "k8"])]))
    lost = set(committed_shards(str(out))) - set(first["shards"]) - set(b["shards"])
    assert len(lost) == 1
    c = ray.get(write_task.remote(sink("C"), [block(["k6", "k7", "k8"])]))
    assert c["segments"] == 3 and lost <= set(c["shards"]) and len(c["shards"]) == 3

    # task D dies between its first shard's tar and marker; the retry removes that tar (an old attempt still
    # running could otherwise complete it) and writes both keys itself
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(write_task.remote(sink("D", die="before_marker"), [block(["k9", "k10"])]))
    begun = {p.name for p in (out / "shards").glob("*.tar")} - {f"{n}.tar" for n in committed_shards(str(out))}
    assert len(begun) == 1
    d = ray.get(write_task.remote(sink("D"), [block(["k9", "k10"])]))
    assert d["segments"] == 2 and not (out / "shards" / begun.pop()).exists()

    keys = manifest_keys(out)
    assert sorted(keys) == sorted(f"k{i}" for i in range(11))  # each key once
    assert sorted(k for ks in committed_shards(str(out)).values() for k in ks) == sorted(keys)
    rep = OutputVerifier(str(out)).run()
    assert not rep.damaged_shards and rep.keys_committed == 11
    sidecar = json.loads(next((out / "shards").glob("*.keys.json")).read_text())
    assert sidecar["write_task"] in {"A", "B", "C", "D"} and sidecar["write_attempt"] >= 1  # lineage of the commit


@pytest.mark.usefixtures("ray_local")
def test_an_attempt_whose_retry_has_begun_commits_nothing():
    coord = WriteCoordinator.remote(0)
    a1, done, begun = ray.get(coord.begin.remote("T"))
    assert (a1, done, begun) == (1, None, [])
    assert ray.get(coord.claim.remote("T", a1, ["x", "y"])) == [True, True]
    assert ray.get(coord.committing.remote("T", a1, "shard-000000", ["x"]))
    a2, _, begun = ray.get(coord.begin.remote("T"))  # the node went away: Ray retries T
    assert a2 == 2 and begun == [("shard-000000", ["x"])]
    assert not ray.get(coord.committing.remote("T", a1, "shard-000001", ["y"]))  # the old attempt is fenced
    with pytest.raises(StaleAttempt):
        ray.get(coord.claim.remote("T", a1, ["z"]))
    assert not ray.get(coord.finished.remote("T", a1, {}))
    assert ray.get(coord.claim.remote("T", a2, ["x", "y", "z"])) == [True, True, True]  # the retry takes them over
    u, _, _ = ray.get(coord.begin.remote("U"))
    assert ray.get(coord.claim.remote("U", u, ["y", "w"])) == [False, True]  # y: T is writing it
    assert ray.get(coord.finished.remote("T", a2, {"segments": 3}))
    assert ray.get(coord.claim.remote("U", u, ["x", "z", "v"])) == [False, False, True]  # committed by T
    assert ray.get(coord.begin.remote("T")) == (0, {"segments": 3}, [])  # T run again: its result, no write


def test_the_coordinators_key_set_holds_keys_in_its_sorted_array_and_its_recent_set():
    from pipeline.coordinator import DigestSet, key_digest

    s = DigestSet()
    s.MERGE_AT = 64  # merge into the sorted array every 64 keys, as every 65536 in a job
    keys = [key_digest(f"k{i}") for i in range(1000)]
    for d in keys[:500]:
        s.add(d)
    assert len(s) == 500 and s.sorted.size == 448 and len(s.recent) == 52
    assert all(d in s for d in keys[:500]) and not any(d in s for d in keys[500:])
