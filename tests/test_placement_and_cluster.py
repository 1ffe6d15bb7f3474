"""Actor placement derived from resources never starves task stages; the cluster and job configs are valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.resources import TASK_CPUS, place, task_pool_size
from schemas.config import JobConfig, load_config
from schemas.resources import ActorResources

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("cpus", [1, 2, 4, 16, 64])
def test_actor_stages_leave_cpu_for_tasks(cpus):
    cfg = JobConfig()
    stages = [cfg.segmenter.resources, cfg.speech.resources, cfg.music.resources, cfg.general.resources]
    placed = [place(r, f"s{i}", len(stages), {"CPU": cpus}) for i, r in enumerate(stages)]
    held = sum(p.num_cpus * p.pool_size for p in placed)
    assert held <= cpus - 2 * TASK_CPUS + 1e-9, (cpus, held)
    assert all(p.pool_size >= 1 and p.num_cpus > 0 and p.num_threads >= 1 for p in placed)
    if cpus >= 16:
        assert sum(p.pool_size for p in placed) > len(stages)  # a big node gets more actors, not one each


@pytest.mark.parametrize(("cpus", "declared", "expected"), [(1, None, 1), (2, None, 1), (3, None, 1), (16, None, 8),
                                                            (64, None, 32), (2, 4, 4), (64, 2, 2)])
def test_light_task_stages_run_a_bounded_number_of_tasks(cpus, declared, expected):
    """One task per two CPUs (each holds a worker process), unless ray_data.tasks_per_stage says otherwise."""
    assert task_pool_size({"CPU": float(cpus)}, declared) == expected


def test_gpu_stages_size_pools_from_gpus():
    p = place(ActorResources(num_gpus=0.5, num_cpus=1), "speech", 4, {"CPU": 32, "GPU": 4})
    assert p.num_gpus == 0.5 and p.pool_size == 8
    cpu_only = place(ActorResources(num_gpus=0.5, num_cpus=1), "speech", 4, {"CPU": 2})
    assert cpu_only.num_gpus == 0 and cpu_only.pool_size == 1  # no GPU in the cluster: falls back to CPU


def test_ray_cluster_yaml_is_valid():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    validate_config(prepare_config(cfg))
    assert "gpu_worker" in cfg["available_node_types"]


def test_example_job_config_loads():
    cfg = load_config(ROOT / "jobs" / "examples" / "job.yaml")
    assert cfg.speech.resources.num_gpus == 0.5 and cfg.shards.target_shard_mb == 512
