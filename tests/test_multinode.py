"""Multi-node: the annotate job on a 3-node Ray cluster (ray.cluster_utils.Cluster on 127.0.0.1), actors spread
over two worker nodes by a custom resource, one worker node removed mid-job: the job finishes with exactly the
keys the segmenter gives in a plain single-process loop, none lost, none twice."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import synth as S

ROOT = Path(__file__).parent.parent


def single_process_keys(corpus: Path) -> list[str]:
    """The segment keys of the corpus from the segmenter stage called in a plain loop (no Ray)."""
    from pipeline.decode import probe
    from stages.rows import Row, RowKind, to_batch, to_rows
    from stages.segment import EventSegmenter
    from tests.multinode_job import job_config

    seg = EventSegmenter(job_config().model_dump(mode="json"))
    keys = []
    for f in sorted(corpus.iterdir()):
        batch = to_batch([Row(RowKind.SOURCE, json.dumps(dataclasses.asdict(probe(str(f), 1 << 30)))).to_dict()])
        keys += [r["key"] for b in seg(batch) for r in to_rows(b) if r["kind"] == "segment"]
    return keys


@pytest.mark.slow
def test_job_spread_over_three_nodes_survives_losing_one(tmp_path):
    corpus = tmp_path / "corpus"
    for i in range(3):
        x, _ = S.layout([("noise", S.noise_burst(1.5, seed=i), 0.6, ""), ("clicks", S.clicks(100, 5), 0.8, ""),
                         ("chords", S.chords(S.C_MAJOR, 0.8), 0.6, "")])
        S.write(corpus / f"mix{i}.wav", np.asarray(x, np.float32))
    expected = single_process_keys(corpus)
    assert len(expected) >= 6

    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "tests.multinode_job", str(corpus), str(tmp_path / "out")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["actor_nodes"] == 2  # the actor stages ran on both worker nodes
    assert got["removed_at_shards"] is not None  # a node went away while the job ran
    assert sorted(got["keys"]) == sorted(expected) and len(set(got["keys"])) == len(got["keys"])
    assert got["segments"] == len(expected)  # the report counts each segment once, whichever attempt wrote it
