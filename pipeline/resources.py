"""Placement of actor stages, derived from the cluster's resources so that no machine size can deadlock it.

On a 2-core node, two actors asking one CPU each starve the read tasks forever (ENVIRONMENT.md). Actor
stages therefore share at most the CPUs left after a reserve for task stages, and pool sizes follow.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from schemas.resources import ActorResources

log = logging.getLogger(__name__)

TASK_CPUS = 0.25  # what each light task stage (probe, route, caption, write) asks for


@dataclass
class Placement:
    num_cpus: float
    num_gpus: float
    pool_size: int
    batch_size: int
    num_threads: int  # intra-op threads the actor's models may use


def place(res: ActorResources, name: str, n_actor_stages: int, cluster: dict[str, float]) -> Placement:
    cpus, gpus = float(cluster.get("CPU", 1.0)), float(cluster.get("GPU", 0.0))
    reserve = max(2 * TASK_CPUS, 0.25 * cpus)
    share = max(cpus - reserve, 0.2) / n_actor_stages  # CPUs this stage's pool may hold in all
    if res.num_gpus > 0 and gpus > 0:
        size = res.concurrency or max(1, math.floor(gpus / res.num_gpus))
        num_cpus = min(res.num_cpus, share / size)
        return Placement(num_cpus, res.num_gpus, size, res.batch_size, max(1, round(num_cpus)))
    if res.num_gpus > 0:
        log.warning("%s asks for num_gpus=%s but the cluster has no GPU: running on CPU", name, res.num_gpus)
    num_cpus = min(res.num_cpus, share)
    size = res.concurrency or max(1, math.floor(share / num_cpus + 1e-9))
    num_cpus = min(num_cpus, share / size)
    return Placement(num_cpus, 0.0, size, res.batch_size, max(1, math.floor(num_cpus + 1e-9)))
