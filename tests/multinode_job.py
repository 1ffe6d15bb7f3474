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


class JobThread(threading.Thread):
    """Runs the annotate job, so that the main thread can add nodes (Ray installs signal handlers there)."""

    def __init__(self, corpus: str, out: str):
        super().__init__(daemon=True)
        self.corpus, self.out = corpus, out
        self.result = self.error = None

    def run(self) -> None:
        from pipeline.run import run_annotate

        try:
            self.result = run_annotate([self.corpus], self.out, job_config())
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = e


def remove_busiest_worker(cluster, workers: list, job: JobThread, out: Path) -> tuple[set[str], int | None]:
    """Watch the job; at its first committed shard, remove the worker node hosting the most actors and add a
    fresh one. Returns the worker nodes seen hosting actors, and how many shards were committed at removal."""
    from ray._private.state import actors as actor_table  # from the GCS: no dashboard needed

    seen: set[str] = set()
    while job.is_alive():
        by_id = {w.node_id: w for w in workers}
        hosts = [a["Address"]["NodeID"] for a in actor_table().values()
                 if a["State"] == "ALIVE" and "MapWorker" in a["ActorClassName"]]
        seen |= {n for n in hosts if n in by_id}
        shards = len(list((out / "shards").glob("*.keys.json")))
        if shards:  # mid-job: something is committed, not everything
            cluster.remove_node(by_id[max(by_id, key=hosts.count)], allow_graceful=False)
            try:
                cluster.add_node(**WORKER)
            except Exception as e:  # noqa: BLE001 - an overloaded machine may not start it in time: the job
                print(f"replacement node did not start: {e}", file=sys.stderr)  # must finish without it
            return seen, shards
        time.sleep(0.2)
    return seen, None


def main(corpus: str, out: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "node_ip_address": "127.0.0.1"})
    workers = [cluster.add_node(**WORKER) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    job = JobThread(corpus, out)
    job.start()
    try:
        actor_nodes, removed_at = remove_busiest_worker(cluster, workers, job, Path(out))
        job.join()
    finally:
        ray.shutdown()
        cluster.shutdown()
    if job.error is not None:
        raise job.error
    import pyarrow.parquet as pq

    keys = pq.read_table(Path(out) / "manifest", columns=["key"]).column("key").to_pylist()
    print(json.dumps({"keys": keys, "actor_nodes": len(actor_nodes), "removed_at_shards": removed_at,
                      "segments": job.result.segments}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
