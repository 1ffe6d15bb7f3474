"""torchrun with 2 CPU processes (gloo): the ranks read disjoint data and end with identical weights."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer_fixtures import make_annotate_shards

ROOT = Path(__file__).resolve().parents[1]


def torchrun(args, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainer.cli", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_two_ranks_see_disjoint_data_and_end_identical(tmp_path):
    make_annotate_shards(tmp_path / "data", n_shards=4, per_shard=3, durations=(0.6, 0.8, 1.0))
    out = tmp_path / "run"
    res = torchrun(["--config", "tiny", "--data", str(tmp_path / "data" / "shards"), "--output", str(out),
                    "--max-steps", "3", "--log-interval", "1", "--tokens-per-batch", "512", "--max-seq-len", "512",
                    "--record-keys"], tmp_path)
    steps = [json.loads(line) for line in res.stdout.splitlines() if line.startswith('{"step"')]
    assert [r["step"] for r in steps] == [1, 2, 3]  # rank 0 alone logs
    r0 = json.loads((out / "debug" / "rank0.json").read_text())
    r1 = json.loads((out / "debug" / "rank1.json").read_text())
    epoch0 = [{k.split(":")[1] for k in r["keys"] if k.startswith("0:")} for r in (r0, r1)]
    # each rank read its own 2 of the 4 shards in epoch 0 (6 samples each) and went on into epoch 1
    assert len(epoch0[0]) == len(epoch0[1]) == 6
    assert not epoch0[0] & epoch0[1]
    assert any(k.startswith("1:") for k in r0["keys"])
    assert r0["digest"] == r1["digest"]
    assert (out / "checkpoints" / "latest").read_text() == "step-00000003"

    # FSDP (as the 4b/8b configs use) on the same data computes the same losses as DDP
    res = torchrun(["--config", "tiny", "--data", str(tmp_path / "data" / "shards"), "--output",
                    str(tmp_path / "fsdp"), "--max-steps", "3", "--log-interval", "1", "--tokens-per-batch", "512",
                    "--max-seq-len", "512", "--fsdp"], tmp_path)
    fsdp = [json.loads(line) for line in res.stdout.splitlines() if line.startswith('{"step"')]
    assert [r["step"] for r in fsdp] == [1, 2, 3]
    for a, b in zip(steps, fsdp, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-3
    assert (tmp_path / "fsdp" / "checkpoints" / "step-00000003" / "model.pt").exists()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("EVENTCAP_RAY_TESTS") != "1", reason="set EVENTCAP_RAY_TESTS=1 (about 90 s)")
def test_ray_train_entry_runs_two_workers(tmp_path):
    """Ray Train's TorchTrainer: 2 CPU workers (gloo) train and rank 0 writes the checkpoint."""
    import ray

    from trainer.configs import get_config
    from trainer.ray_train import train_with_ray

    make_annotate_shards(tmp_path / "data", n_shards=2, per_shard=3, durations=(0.6, 0.8))
    cfg = get_config("tiny")
    cfg.train.max_steps, cfg.train.log_interval = 2, 1
    cfg.train.tokens_per_batch = cfg.train.max_seq_len = 512
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {
        "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}})
    try:
        result = train_with_ray(cfg, [str(tmp_path / "data" / "shards")], str(tmp_path / "run"), num_workers=2,
                                cpus_per_worker=0.5)
    finally:
        ray.shutdown()
    assert result.error is None
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step-00000002"
