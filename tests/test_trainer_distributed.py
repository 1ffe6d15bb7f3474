"""torchrun with 2 CPU processes (gloo): the ranks read disjoint data and end with identical weights."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import subprocess
import sys
from pathlib import Path

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
