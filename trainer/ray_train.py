"""Ray Train entry: the same loop in a `TorchTrainer`, one worker per GPU across the cluster.

    eventcap train --config 4b --decoder-path /models/Qwen3-4B --data s3-mounted/shards --output /shared/run \\
        --ray-workers 16 --ray-gpu [--ray-address auto]

Ray Train starts the processes and the torch process group (NCCL on GPUs, gloo on CPUs); `train()` joins
that group as it would torchrun's. RUN_DIR must be a path every worker sees (a shared filesystem): rank 0
writes checkpoints there and every rank resumes from them.
"""

from __future__ import annotations

import os

from trainer.configs import RunConfig


def _worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from trainer.train import train

    ctx = ray.train.get_context()
    device = ray.train.torch.get_device()
    os.environ["LOCAL_RANK"] = str(device.index or 0) if device.type == "cuda" else str(ctx.get_local_rank())
    summary = train(config["cfg"], config["data"], config["output"], eval_data=config["eval_data"])
    ray.train.report({"step": summary["step"], "loss": summary["loss"], "tokens_per_s": summary["tokens_per_s"]})


def train_with_ray(cfg: RunConfig, data: list[str], output: str, eval_data: list[str] | None = None, *,
                   num_workers: int = 1, use_gpu: bool = False, address: str | None = None,
                   cpus_per_worker: float = 1.0):
    import ray
    from ray.train import RunConfig as RayRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        ray.init(address=address)
    output = os.path.abspath(output)
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"cfg": cfg, "data": [os.path.abspath(d) if os.path.exists(d) else d for d in data],
                           "output": output, "eval_data": eval_data or None},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RayRunConfig(name="eventcap-train", storage_path=os.path.join(output, "ray")),
    )
    return trainer.fit()
