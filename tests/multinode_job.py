"""Run the annotate job on a 3-node `ray.cluster_utils.Cluster` (127.0.0.1) and take a worker node away mid-job.

    python -m tests.multinode_job CORPUS OUT      prints one JSON line: keys, nodes that hosted actors, removal

Head: 1 CPU, the driver, the task stages and the job's control actors. Two worker nodes offer the custom
resource `worker`; every actor stage asks for `worker: 0.5`, so the four actor stages are spread over both.
Once the first shard is committed, the worker node hosting the most actors is removed and a fresh one joins
(as an autoscaler would replace it): Ray restarts the lost actors and retries the lost tasks.
Run in its own process (tests/test_multinode.py): a Cluster cannot share a process with another Ray instance.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

WORKER = {"num_cpus": 2, "resources": {"worker": 1}}


def job_config():
    from schemas.config import JobConfig

    cfg = JobConfig()
    for section in (cfg.segmenter, cfg.speech, cfg.music, cfg.general):
        section.resources.resources = {"worker": 0.5}
        section.resources.concurrency = 1
    cfg.speech.enabled = cfg.music.enabled = False
    cfg.shards.target_shard_mb = 0.05  # about one segment per shard: many commit points
    return cfg


class NodeRemover(threading.Thread):
    """Watches the job; after the first committed shard, removes the worker node hosting the most actors."""

    def __init__(self, cluster, workers: list, out: Path):
        super().__init__(daemon=True)
        self.cluster, self.workers, self.out = cluster, workers, out
        self.actor_nodes: set[str] = set()
        self.removed_at_shards: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        from ray._private.state import actors as actor_table  # from the GCS: no dashboard needed

        while not self.stop.is_set() and self.removed_at_shards is None:
            workers = {w.node_id: w for w in self.workers}
            hosts = [a["Address"]["NodeID"] for a in actor_table().values()
                     if a["State"] == "ALIVE" and "MapWorker" in a["ActorClassName"]]
            self.actor_nodes |= {n for n in hosts if n in workers}
            shards = len(list((self.out / "shards").glob("*.keys.json")))
            if shards:  # mid-job: something is committed, not everything
                busiest = max(workers, key=hosts.count)
                self.cluster.remove_node(workers[busiest], allow_graceful=False)
                self.cluster.add_node(**WORKER)
                self.removed_at_shards = shards
            time.sleep(0.2)


def main(corpus: str, out: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.run import run_annotate

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "node_ip_address": "127.0.0.1"})
    workers = [cluster.add_node(**WORKER) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    remover = NodeRemover(cluster, workers, Path(out))
    remover.start()
    try:
        result = run_annotate([corpus], out, job_config())
    finally:
        remover.stop.set()
        ray.shutdown()
        cluster.shutdown()
    import pyarrow.parquet as pq

    keys = pq.read_table(Path(out) / "manifest", columns=["key"]).column("key").to_pylist()
    print(json.dumps({"keys": keys, "actor_nodes": len(remover.actor_nodes),
                      "removed_at_shards": remover.removed_at_shards, "segments": result.segments}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
