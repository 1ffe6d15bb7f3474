"""Placement of actor stages by cost, derived from the cluster's resources so that no machine size can deadlock it.

On a 2-core node, two actors asking one CPU each starve the read tasks forever (ENVIRONMENT.md). Actor
stages therefore share at most the CPUs left after a reserve for task stages. That share is split by each
stage's *cost* (core-seconds per audio-second of a mixed corpus): the bottleneck, the speech branch, gets
most of the cores, as threads in its actors and as more actors in its pool. Pools autoscale between one
actor and their size (Ray Data's ActorPoolStrategy), so a branch without work holds a single actor.

Thread counts have one source: the placement. A stage hands `Placement.num_threads` to its annotator, which
sizes every intra-op pool it owns by it (CTranslate2, torch, onnxruntime).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

from schemas.resources import ActorResources

log = logging.getLogger(__name__)

TASK_CPUS = 0.1  # what each light task stage (probe, route, caption, write) asks for
# Rows per call of a light task stage. Ray Data holds a stage's input blocks until it has this many rows, so at
# 16 the first caption waited for 15 more segments to pass every branch (~10 s on the bench corpus); a task call
# costs a few ms. A stage that gains from more rows per call says so (CaptionMerger.task_batch_rows).
TASK_BATCH_ROWS = 1
# CPUs kept out of the actors' reservations. Ray Data reserves each operator at least one task's (or its pool's
# minimum) CPUs, upstream first, and a downstream operator that finds nothing left waits until the upstream
# ones finish: with the actors holding 1.5 of 2 CPUs the caption and write tasks ran only at the very end of a
# job (the first shard came after 215 of 233 s). 4 task operators x max(TASK_CPUS, Ray's default share of
# 1/16 of the CPUs) + margin must fit beside the actors' minimum pools.
MIN_RESERVE = 0.6
MAX_THREADS = 2  # intra-op threads per actor; past two, another actor scales better (segments are independent)

# Relative cost per audio-second of each stage (core-seconds). Speech-heavy, as the measurement on an
# idle 2-core machine found the speech actor the only busy one (ASR alone 5.1 audio-s/s of speech, the whole
# branch 1.9 before the extras were bounded). bench/annotate.py's plain loop, run under load 15-20, measured
# segment 0.18, speech 0.15 (bounded extras), music 0.11 (incl. numba's first compile), general 0.004:
# re-measure on an idle machine (`make bench`, figures.stage_alone_s) before moving these. A stage's
# `resources.cost` in the job config overrides its entry.
STAGE_COST = {"segment": 0.05, "speech": 0.30, "music": 0.05, "general": 0.01}
DEFAULT_COST = 0.05


def task_pool_size(cluster: dict[str, float], declared: int | None = None) -> int:
    """Most tasks one light task stage runs at once: `ray_data.tasks_per_stage`, else one per two CPUs.

    Ray Data otherwise starts as many as the CPUs allow at TASK_CPUS each (20 on 2 cores) and its budget
    admits, and each one holds a worker process: on a 3-hour source, 2 write and 2 route+caption tasks at once
    at the peak in some runs and one of each in others, so the job's peak memory varied by ~500 MiB from run
    to run (tests/reliability/test_long_noise.py). These stages are light: one task each keeps pace on 2 cores.
    """
    if declared is not None:
        return declared
    return max(1, int(float(cluster.get("CPU", 1.0)) // 2))


@dataclass
class Placement:
    num_cpus: float
    num_gpus: float
    pool_size: int  # the pool's max_size; it starts and idles at min_size
    batch_size: int
    num_threads: int  # intra-op threads the actor's models may use
    min_size: int = 1


def stage_cost(name: str, res: ActorResources) -> float:
    declared = getattr(res, "cost", None)
    return float(declared) if declared else STAGE_COST.get(name, DEFAULT_COST)


def place_all(stages: list[tuple[str, ActorResources]], cluster: dict[str, float]) -> dict[str, Placement]:
    """Every actor stage's placement, its share of the CPUs weighted by its cost."""
    costs = {name: stage_cost(name, res) for name, res in stages}
    total = sum(costs.values()) or 1.0
    return {name: place(res, name, len(stages), cluster, weight=costs[name] / total) for name, res in stages}


def place(res: ActorResources, name: str, n_actor_stages: int, cluster: dict[str, float],
          weight: float | None = None) -> Placement:
    """One stage's placement; `weight` is its share of the actor CPUs (equal shares when None)."""
    cpus, gpus = float(cluster.get("CPU", 1.0)), float(cluster.get("GPU", 0.0))
    weight = 1.0 / n_actor_stages if weight is None else weight
    reserve = max(MIN_RESERVE, 0.25 * cpus)
    share = max(cpus - reserve, 0.2) * weight  # CPUs this stage's pool may hold in all (Ray's bookkeeping)
    cores = cpus * weight  # cores the stage needs to keep pace with the others when all are busy
    threads = min(MAX_THREADS, max(1, math.ceil(cores - 1e-9)), max(1, int(cpus)))
    if res.num_gpus > 0 and gpus > 0:
        size = res.concurrency or max(1, math.floor(gpus / res.num_gpus))
        num_cpus = min(max(res.num_cpus, 1.0), share / size)
        return Placement(num_cpus, res.num_gpus, size, res.batch_size, max(1, round(num_cpus)),
                         min_size=size if res.concurrency else 1)
    if res.num_gpus > 0:
        log.warning("%s asks for num_gpus=%s but the cluster has no GPU: running on CPU", name, res.num_gpus)
    size = res.concurrency or max(1, round(cores / threads))
    num_cpus = min(max(res.num_cpus, float(threads)), share / size)
    return Placement(num_cpus, 0.0, size, res.batch_size, threads, min_size=size if res.concurrency else 1)


# glibc malloc settings for every Ray worker (set at process start, so through the runtime_env): two arenas
# bound the per-thread heaps (each thread would get its own). A fixed mmap threshold is *not* set: at 128 KiB it
# returned large buffers to the system on free (plain loop peak PSS 1601 -> 1243 MiB, with the ONNX arenas off
# 1135 MiB) but every ASR/pitch buffer was then mapped and zeroed anew: the speech annotator on 24 x 20 s took
# 2.5x the page faults and +13 s of system time (wall 28-32 -> 37-38 s), and the whole job's speech stage went
# from 45 to 62-71 s on the bench corpus (paired runs, 2026-11-30).
# Ray Data converts every block through pyarrow, whose default pool here is mimalloc: it kept the pages of freed
# blocks until its next allocation, so every task worker that had handled a 32 MiB block sat idle on 250-320 MiB
# of anonymous memory (one 1 GiB mimalloc arena, 100-190 MiB of it resident). A purge delay of 0 returns them on
# free: task workers at 140 MiB; 3 hours of noise through the light job peaked at 2.28-2.64 GiB against 2.53-2.79
# (tests/reliability/test_long_noise.py). A value the user already exported wins.
WORKER_MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MIMALLOC_PURGE_DELAY": "0"}


def worker_env() -> dict[str, str]:
    import os

    return {k: os.environ.get(k, v) for k, v in WORKER_MALLOC_ENV.items()}


def release_free_heap() -> None:
    """Hand glibc's free heap back to the system (`malloc_trim(0)`), for an actor between batches.

    Without a fixed mmap threshold (above) glibc keeps what a batch freed: the speech actor sat on ~1070 MiB of
    anonymous memory between batches of 8 x 20 s where ~700 MiB was live (its models, CTranslate2's and torch's
    caches). A trim after each batch takes 6-22 ms against ~8 s of work (bench speech, 2026-11-30); a no-op
    where the C library is not glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # no glibc
        return None
