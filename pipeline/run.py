"""Run the annotate job: list inputs, resume from committed shards, execute the plan, write the report."""

from __future__ import annotations

import functools
import json
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray

from pipeline.coordinator import WriteCoordinator
from pipeline.lease import OutputLease
from pipeline.ledger import (
    SPOOL_PREFIX,
    SourceLedger,
    clean_uncommitted,
    committed_shard_names,
    next_shard_index,
    run_suffix,
)
from pipeline.plan import build_plan
from pipeline.raydata import apply_ray_data_config, floor_at_cluster_resources
from pipeline.redact import redact_config
from pipeline.resources import TASK_CPUS, task_pool_size, worker_env
from pipeline.sources import (
    S3Settings,
    SourceLister,
    SourceSpool,
    apply_s3_config,
    configure_s3,
    filesystem_for,
    read_spool_slice,
    redact_uri,
    uri_digest,
)
from pipeline.verify import OutputVerifier
from schemas.config import JobConfig
from schemas.errors import ErrorClass
from schemas.version import SCHEMA_VERSION
from stages.caption_report import caption_report
from stages.probe import ContentRegistry
from stages.rows import Row, RowKind, merge_stats
from stages.shard_writer import ShardWriter

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    output: str
    report: dict

    @property
    def segments(self) -> int:
        return self.report["segments"]["written"]

    @property
    def quarantined(self) -> int:
        return self.report["quarantined"]["count"]


# A Ray started by the job keeps an idle task worker for 30 s instead of 1 s. Past num_cpus workers (the job's
# actors alone are more) Ray kills a worker idle for 1 s, so every route, caption and write task after a pause
# started a new process and imported Ray Data and the stages again (~2 s of CPU under load, 3-4 s of wall before
# the first caption). A cluster sets its own (`ray start --system-config`).
LOCAL_RAY_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 30_000}


def init_ray(address: str | None, s3: S3Settings | None = None) -> None:
    """Start or join Ray. S3 settings from the config reach the workers through a setup hook (pickled into
    Ray's function table), not through environment variables, which Ray shows in its dashboard.

    The workers' malloc settings (pipeline/resources.worker_env) reach a Ray the job starts through the
    environment it inherits, not a runtime_env: Ray starts num_cpus workers with the node, and a worker for a
    job with a runtime_env of its own cannot be one of those, so both sat idle (~140 MiB) while the job's first
    task waited behind ten process starts, two at a time, for a worker of its own (the first segment ~4 s
    later on the bench corpus). A cluster's workers get them through the runtime_env."""
    if ray.is_initialized():
        return
    local = address == "local" or (address is None and not os.environ.get("RAY_ADDRESS"))
    env: dict = {}
    if local:
        os.environ.update(worker_env())  # a value the user exported wins (worker_env reads it back)
    else:
        env["env_vars"] = worker_env()
    if s3 and not s3.empty:
        env["worker_process_setup_hook"] = functools.partial(configure_s3, s3)
    ray.init(address=address, log_to_driver=False, include_dashboard=False if local else None,
             logging_level=logging.WARNING, runtime_env=env or None,
             _system_config=LOCAL_RAY_SYSTEM_CONFIG if local else None)


def run_annotate(inputs: list[str], output: str, cfg: JobConfig, progress: bool = False,
                 repair: bool = False) -> JobResult:
    """Annotate `inputs` into `output`, holding the output's lease (one writer per output: see pipeline/lease.py).

    `repair` first uncommits the shards `eventcap verify` finds damaged, so this run re-does only their keys.
    Raises LeaseHeld, before touching anything, when another live job writes `output`.
    """
    apply_s3_config(cfg.s3)
    with OutputLease(output) as lease:
        repaired = uncommit_damaged_shards(output) if repair else []
        result = _run_annotate(inputs, output, cfg, progress)
        result.report["lease"] = lease.describe()
        if repair:
            result.report["repaired_shards"] = repaired
        fs, root = filesystem_for(output.rstrip("/"))
        with fs.open_output_stream(f"{root}/report.json") as f:
            f.write(json.dumps(result.report, indent=2).encode())
        return result


def _read_slices(batch):
    """Task: spool slices {"path", "lo", "hi"} -> their source_ref rows (one block per slice)."""
    import pyarrow as pa

    return pa.concat_tables([read_spool_slice(p, lo, hi) for p, lo, hi in
                             zip(*(batch.column(c).to_pylist() for c in ("path", "lo", "hi")), strict=True)])


def on_driver_node() -> dict:
    """Options that keep a job's control actors (write coordinator, content registry) on the driver's node: a
    worker node that goes away mid-job takes annotation actors and tasks with it, which Ray retries, but
    never the counter (a restarted one would hand out numbers again) or the registry."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)}


def uncommit_damaged_shards(output: str) -> list[str]:
    """Remove the marker of every shard verify finds damaged (the rest follows as uncommitted): keys re-done."""
    rep = OutputVerifier(output).run()
    fs, root = filesystem_for(output.rstrip("/"))
    for shard in sorted(rep.damaged_shards):
        log.warning("repair: %s is damaged, its keys will be annotated again", shard)
        fs.delete_file(f"{root}/shards/{shard}.keys.json")
    return sorted(rep.damaged_shards)


def _run_annotate(inputs: list[str], output: str, cfg: JobConfig, progress: bool = False) -> JobResult:
    """Annotate `inputs` into `output`. Safe to re-run: committed segments are skipped, nothing duplicates."""
    t0 = time.time()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    output = output.rstrip("/")
    fs, root = filesystem_for(output)
    fs.create_dir(root, recursive=True)

    removed = clean_uncommitted(output)
    ledger = SourceLedger.load(output)
    spool = SourceSpool(f"{output}/{SPOOL_PREFIX}{uuid.uuid4().hex[:8]}")
    counts = spool_todo(inputs, cfg, ledger, _quarantined_sources(output), spool)

    init_ray(cfg.ray_address, S3Settings(**cfg.s3.model_dump()))
    ray_up = time.time()
    floor_at_cluster_resources()  # Ray Data 2.60 would budget 0 CPU / 0 bytes here: pipeline/raydata.py
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = False
    apply_ray_data_config(ctx, cfg.ray_data, cfg.shards.write_buffer_mb)

    counter = WriteCoordinator.options(**on_driver_node()).remote(next_shard_index(output))
    sink = ShardWriter(output, cfg.shards.target_shard_mb, counter, run_suffix(output), cfg.shards.write_buffer_mb)
    tasks = ray.data.TaskPoolStrategy(size=task_pool_size(ray.cluster_resources(), cfg.ray_data.tasks_per_stage))
    try:
        if spool.rows:
            slices = spool.slices(cfg.ingest.read_parallelism or min(spool.rows, 1000))  # spread small files
            refs = ray.data.from_items(slices, override_num_blocks=len(slices)).map_batches(
                _read_slices, batch_size=1, batch_format="pyarrow", num_cpus=TASK_CPUS, compute=tasks)
            registry = ContentRegistry.options(**on_driver_node()).remote(
                ledger.complete_content() if ledger.complete.size else None)
            ds = build_plan(cfg, refs, tasks, output, registry)
            ds.write_datasink(sink, ray_remote_args={"num_cpus": TASK_CPUS}, concurrency=tasks.size)
    finally:
        ray.kill(counter)
        spool.remove()
    removed += clean_uncommitted(output)  # anything a killed earlier run was still writing while we ran

    results = sink.results
    wall = time.time() - t0
    stages: dict[str, dict] = {}
    for r in results:
        merge_stats(stages, r["stats"])
    for s in stages.values():
        s["seconds"] = round(s["seconds"], 3)
        for at, key in (("first_at", "first_output_s"), ("last_at", "last_output_s")):
            if s.get(at) is not None:  # wall clock -> seconds after Ray was up
                s[key] = round(s.pop(at) - ray_up, 2)
    audio_s = sum(r["audio_s"] for r in results)
    by_error = Counter()
    for q in _read_quarantine(output):
        by_error[q["error"]] += 1
    report = {
        "job": {"inputs": [redact_uri(i) for i in inputs], "output": redact_uri(output),
                "config_hash": cfg.config_hash(),
                "segmentation_hash": cfg.segmentation_hash(), "schema_version": SCHEMA_VERSION,
                "started": started, "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "wall_s": round(wall, 2)},
        "sources": counts,
        "segments": {"written": sum(r["segments"] for r in results),
                     "skipped_already_committed": ledger.committed_keys,
                     # rows Ray handed to a second write task after a node loss: each key is written once
                     "duplicates_dropped": sum(r.get("duplicates_dropped", 0) for r in results),
                     "audio_s": round(audio_s, 2), "by_route": dict(sum((Counter(r["routes"]) for r in results),
                                                                         Counter()))},
        "quarantined": {"count": sum(r["quarantined"] for r in results), "total_in_output": sum(by_error.values()),
                        "by_error": dict(by_error)},
        "shards": {"written": sorted(s for r in results for s in r["shards"]),
                   "total_committed": len(committed_shard_names(output))},
        "captions": caption_report(results),
        "stages": stages,
        "throughput": {"audio_s_per_wall_s": round(audio_s / wall, 3) if wall > 0 else None,
                       "ray_up_s": round(ray_up - t0, 2),
                       # after Ray is up: the first segment through every stage, and the first one written
                       "time_to_first_segment_s": stages.get("caption", {}).get("first_output_s"),
                       "time_to_first_write_s": _first_write_s(results, ray_up)},
        "cleaned_uncommitted_files": removed,
        "config": redact_config(cfg.model_dump(mode="json")),
    }
    with fs.open_output_stream(f"{root}/report.json") as f:
        f.write(json.dumps(report, indent=2).encode())
    _write_readables(output)
    return JobResult(redact_uri(output), report)


def _first_write_s(results: list[dict], ray_up: float) -> float | None:
    """Seconds from Ray being up to the first annotated segment reaching a write task (None: no segment);
    the writer bundles rows up to about a shard's worth (`shards.target_shard_mb`) before it starts."""
    firsts = [r["first_segment_at"] for r in results if r.get("first_segment_at")]
    return round(min(firsts) - ray_up, 2) if firsts else None


def _write_readables(output: str) -> None:
    """report.html and the dataset card: derived from what is committed, so a failure here loses no data."""
    from pipeline.dataset_card import write_dataset_card
    from pipeline.report import write_report

    for write in (write_report, write_dataset_card):
        try:
            write(output)
        except Exception:  # the shards are committed; `eventcap report OUT` writes these again
            log.exception("could not write %s for %s", write.__name__, redact_uri(output))


def _read_quarantine(output: str) -> list[dict]:
    """Quarantine rows of the output, de-duplicated by (source, stage, error, key) across resumed runs."""
    fs, root = filesystem_for(output)
    sel = pafs.FileSelector(f"{root}/quarantine", allow_not_found=True)
    seen, rows = set(), []
    for fi in fs.get_file_info(sel):
        if fi.type == pafs.FileType.File and fi.base_name.endswith(".parquet") and not fi.base_name.startswith("."):
            for q in pq.read_table(fi.path, filesystem=fs).to_pylist():
                ident = (q["source_uri"], q["stage"], q["error"], q["key"])
                if ident not in seen:
                    seen.add(ident)
                    rows.append(q)
    return rows


# whole-source verdicts of the segmenter that the same bytes and config always reach again
_SOURCE_VERDICTS = frozenset({ErrorClass.TOO_SHORT.value, ErrorClass.ALL_SILENCE.value})


def _quarantined_sources(output: str) -> np.ndarray:
    """Sorted URI digests of the sources rejected as a whole by an earlier run (not re-read on resume): at
    listing and probing (stage `ingest`), or by the segmenter as too short or silent."""
    return np.unique(np.array([uri_digest(q["source_uri"]) for q in _read_quarantine(output)
                               if q["key"] is None and (q["stage"] == "ingest" or q["error"] in _SOURCE_VERDICTS)],
                              dtype=np.uint64))


def spool_todo(inputs: list[str], cfg: JobConfig, ledger: SourceLedger, quarantined: np.ndarray,
               spool: SourceSpool) -> dict:
    """Stream the listing into `spool`, resuming per source: complete and quarantined sources are left out,
    partial ones carry their committed keys. Returns the counts for the report."""
    counts = {"listed": 0, "processed": 0, "skipped_already_quarantined": 0, "skipped_already_complete": 0,
              "resumed_partial": 0}
    for src, digest in SourceLister(cfg.ingest.extensions).with_digests(inputs):
        counts["listed"] += 1
        i = int(quarantined.searchsorted(np.uint64(digest))) if quarantined.size else 0
        if i < quarantined.size and int(quarantined[i]) == digest:
            counts["skipped_already_quarantined"] += 1
            continue
        state = ledger.state(src["uri"], digest)
        if state == "complete":
            counts["skipped_already_complete"] += 1
            continue
        if state:
            src = src | {"committed_keys": list(state)}
            counts["resumed_partial"] += 1
        counts["processed"] += 1
        spool.add(Row(RowKind.SOURCE_REF, json.dumps(src)).to_dict())
    spool.flush()
    return counts
