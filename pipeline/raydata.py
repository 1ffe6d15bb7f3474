"""Ray Data's view of the cluster, corrected in one place (the streaming executor runs in the driver).

Ray Data 2.60 sizes every operator's budget from what its cluster autoscaler has *reserved* through the
autoscaling coordinator, not from what the cluster has. On a cluster that is not scaling (a local Ray; `ray up`
with its workers already up) the rate-based autoscaler asks for nothing while utilisation is low, so the
reservation stays empty: the global limits read 0 CPU and 0 bytes of object store, every operator's budget is
0, and an operator may read nothing of what its running tasks yield. Measured here: a segmenter working
through a 3-hour source handed nothing downstream until it had finished the source, so every segment of it
waited in the object store (peak PSS 4.8 GiB against 1.7 GiB for 2 minutes), and the first shard came at the
end of the job (tests/reliability/test_long_noise.py); a bare pipeline of a 1.4-CPU actor pool and a 0.1-CPU
task on 2 CPUs never finished.

`floor_at_cluster_resources()` makes the executor see at least the resources the cluster has now; what the
autoscaler reserves beyond that (nodes being added) still counts.
"""

from __future__ import annotations

import time

_CACHE: dict[str, object] = {"at": 0.0, "value": None}
REFRESH_S = 5.0  # ray.cluster_resources() is an RPC; Ray Data itself refreshes its limits every few seconds


def _cluster_now():
    import ray
    from ray.data._internal.execution.interfaces import ExecutionResources

    if _CACHE["value"] is None or time.monotonic() - float(_CACHE["at"]) > REFRESH_S:
        c = ray.cluster_resources()
        _CACHE.update(at=time.monotonic(), value=ExecutionResources(
            cpu=c.get("CPU", 0.0), gpu=c.get("GPU", 0.0), object_store_memory=c.get("object_store_memory", 0.0)))
    return _CACHE["value"]


def floor_at_cluster_resources() -> None:
    """Patch Ray Data's cluster autoscalers so their total resources are never below the cluster's own."""
    from ray.data._internal import cluster_autoscaler as ca

    for cls in (ca.RateBasedClusterAutoscaler, getattr(ca, "DefaultClusterAutoscalerV2", None)):
        if cls is None or getattr(cls.get_total_resources, "_eventcap_floor", False):
            continue
        reserved = cls.get_total_resources

        def get_total_resources(self, _reserved=reserved):
            return _reserved(self).max(_cluster_now())

        get_total_resources._eventcap_floor = True
        cls.get_total_resources = get_total_resources


def apply_ray_data_config(ctx, cfg, write_buffer_mb: float | None = None) -> None:
    """The job's `ray_data` section (schemas/config.RayDataConfig) on Ray Data's context `ctx`. The object-store
    limit is raised to twice the writer's buffer (`shards.write_buffer_mb`) where it is smaller: a write task
    gathers that much before it starts, and a limit under it would starve the writer."""
    ctx.target_max_block_size = int(cfg.target_block_mb * 2**20)
    if cfg.object_store_limit_mb is not None:
        limit_mb = max(cfg.object_store_limit_mb, 2 * (write_buffer_mb or 0))
        ctx.execution_options.resource_limits = ctx.execution_options.resource_limits.copy(
            object_store_memory=int(limit_mb * 2**20))
