"""The job's write coordinator: one Ray actor per job, on the driver's node (pipeline/run.py places it).

Kept apart from the writer (stages/shard_writer.py) so that the actor's process imports only numpy and Ray:
~60 MiB of PSS instead of the writer's pyarrow/pandas/Ray Data imports (issue 20).
"""

from __future__ import annotations

import hashlib

import numpy as np
import ray


def key_digest(key: str) -> int:
    """64 bits of a segment key (enough to tell 10^8 keys apart)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class DigestSet:
    """A growing set of 64-bit digests at about 8 bytes each: a sorted array, plus a small set merged into it."""

    MERGE_AT = 1 << 16

    def __init__(self):
        self.sorted = np.zeros(0, np.uint64)
        self.recent: set[int] = set()

    def add(self, digest: int) -> None:
        self.recent.add(digest)
        if len(self.recent) >= self.MERGE_AT:
            self.sorted = np.union1d(self.sorted, np.fromiter(self.recent, np.uint64, len(self.recent)))
            self.recent.clear()

    def __contains__(self, digest: int) -> bool:
        if digest in self.recent:
            return True
        i = int(self.sorted.searchsorted(np.uint64(digest)))
        return i < self.sorted.size and int(self.sorted[i]) == digest

    def __len__(self) -> int:
        return int(self.sorted.size) + len(self.recent)


class StaleAttempt(RuntimeError):
    """A newer attempt of this write task has begun: this one stops and commits nothing more."""


@ray.remote(num_cpus=0)
class WriteCoordinator:
    """One per job, on the driver's node: hands out shard numbers and makes the write stage exactly-once per key.

    Ray may run a write task more than once, and upstream replays may hand written rows to another one:
      - a retry, when the task's node went away (same task id, a new attempt): it skips what the lost attempt
        committed (the shards whose marker exists) and takes over the rest of its keys;
      - lineage reconstruction, when the task's result was lost with a node after it finished (same task id,
        run again from the start): it gets the first run's result back and writes nothing;
      - an upstream task replayed after a node loss can emit rows that another write task already has: a key
        is written by one task id only, so the later one drops it (counted as `duplicates_dropped`).
    A newer attempt fences off the older one, which may still run on a node being torn down: its claims and
    commits are refused. Memory: 8 bytes per committed key, the keys of the write tasks in flight, and each
    finished write task's result (a few KiB: its stats, shard names and counts).
    """

    def __init__(self, start: int):
        self.next_index = start
        self.attempts: dict[str, int] = {}  # task id -> its latest attempt
        self.claimed: dict[int, str] = {}  # key digest -> the task id writing it (tasks in flight)
        self.task_keys: dict[str, list[int]] = {}
        self.commits: dict[str, list[tuple[str, list[str]]]] = {}  # task id -> (shard name, keys) begun
        self.committed = DigestSet()  # keys of the finished write tasks
        self.results: dict[str, dict] = {}  # task id -> what it returned

    def next(self) -> int:
        self.next_index += 1
        return self.next_index - 1

    def begin(self, task_id: str) -> tuple[int, dict | None, list[tuple[str, list[str]]]]:
        """(attempt, the result if `task_id` already finished, (shard name, keys) of the commits earlier
        attempts began)."""
        if task_id in self.results:
            return 0, self.results[task_id], []
        self.attempts[task_id] = attempt = self.attempts.get(task_id, 0) + 1
        return attempt, None, self.commits.get(task_id, [])

    def claim(self, task_id: str, attempt: int, keys: list[str]) -> list[bool]:
        """Whether this attempt may write each key: not committed, and not being written by another task."""
        if self.attempts.get(task_id) != attempt:
            raise StaleAttempt(task_id)
        mine = self.task_keys.setdefault(task_id, [])
        out = []
        for d in map(key_digest, keys):
            owner = self.claimed.get(d)
            ok = owner == task_id or (owner is None and d not in self.committed)
            if ok and owner is None:
                self.claimed[d] = task_id
                mine.append(d)
            out.append(ok)
        return out

    def committing(self, task_id: str, attempt: int, name: str, keys: list[str]) -> bool:
        """Record the shard this attempt is about to commit; False: the attempt is stale, commit nothing."""
        if self.attempts.get(task_id) != attempt:
            return False
        self.commits.setdefault(task_id, []).append((name, keys))
        return True

    def finished(self, task_id: str, attempt: int, result: dict) -> bool:
        if self.attempts.get(task_id) != attempt:
            return False
        for d in self.task_keys.pop(task_id, []):
            self.claimed.pop(d, None)
            self.committed.add(d)
        self.commits.pop(task_id, None)
        self.attempts.pop(task_id, None)
        self.results[task_id] = result
        return True


