"""Resume at corpus scale: driver and per-actor memory of the per-source ledger against the old global key set.

Builds a synthetic output (no audio) as the writer leaves it: committed shards (empty tars, sidecars with their
keys, manifest parts with key and source_uri), ledger done parts, and a `.lst` manifest listing every source.
Most sources are complete, every `partial_every`-th is half committed, every `new_every`-th is new. Then, each
in a fresh process so that peak RSS is its own:
  new  SourceLedger.load + the streamed listing spooled with per-source state (what pipeline/run.py does before
       the plan starts); the segmenter actor gets the config, each partial source's row its own keys.
  old  list_sources into a list, every sidecar's keys into a frozenset (what run_annotate did before), pickled
       once per segmenter actor (its constructor argument), and unpickled in the actor.

    python -m bench.bench_ledger [--sources 1000000] [--keys-per-source 10] [--dir /tmp/ledger-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).parent.parent


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _uri(i: int) -> str:
    return f"s3://corpus/part-{i // 1000:04d}/recording-{i:08d}.flac"


def make_output(base: Path, n_sources: int, keys_per_source: int, shard_keys: int, partial_every: int,
                new_every: int, seed: int = 0) -> dict:
    """Write the synthetic output under base/out and the listing base/sources.lst; returns the known truth."""
    from pipeline.ledger import write_sources_done

    out = base / "out"
    for sub in ("shards", "manifest", "ledger"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    half = keys_per_source // 2
    truth = {"listed": n_sources, "complete": 0, "partial": 0, "new": 0, "committed_keys": 0,
             "committed_per_partial": half}
    keys_buf: list[str] = []
    uris_buf: list[str] = []
    done: list[dict] = []
    shard = 0

    def flush_shard(force: bool = False) -> None:
        nonlocal shard, keys_buf, uris_buf
        while len(keys_buf) >= shard_keys or (force and keys_buf):
            k, u = keys_buf[:shard_keys], uris_buf[:shard_keys]
            keys_buf, uris_buf = keys_buf[shard_keys:], uris_buf[shard_keys:]
            name = f"shard-{shard:06d}"
            pq.write_table(pa.table({"key": k, "source_uri": u}), out / "manifest" / f"{name}.parquet")
            (out / "shards" / f"{name}.tar").write_bytes(b"")
            (out / "shards" / f"{name}.keys.json").write_text(json.dumps({"shard": f"{name}.tar", "keys": k}))
            shard += 1

    with open(base / "sources.lst", "w") as lst:
        for i in range(n_sources):
            uri = _uri(i)
            lst.write(uri + "\n")
            if i % new_every == 0:
                truth["new"] += 1
                continue
            n = half if i % partial_every == 1 else keys_per_source
            truth["partial" if n == half else "complete"] += 1
            keys_buf += [h[j:j + 32] for h in [rng.bytes(16 * n).hex()] for j in range(0, 32 * n, 32)]
            uris_buf += [uri] * n
            truth["committed_keys"] += n
            if n == keys_per_source:
                done.append({"source_uri": uri, "source_sha256": rng.bytes(32).hex(), "segments": n})
            if len(done) >= 100_000:
                write_sources_done(str(out), done)
                done = []
            flush_shard()
    flush_shard(force=True)
    write_sources_done(str(out), done)
    truth["shards"] = shard
    return truth


def _deep_size(obj) -> int:
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(_deep_size(k) + _deep_size(v) for k, v in obj.items())
    if isinstance(obj, tuple | list | frozenset | set):
        return sys.getsizeof(obj) + sum(_deep_size(x) for x in obj)
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    return sys.getsizeof(obj)


def resume_new(base: Path) -> dict:
    """What pipeline/run.py does before the plan starts: load the ledger, stream the listing into the spool."""
    from pipeline.ledger import SourceLedger
    from pipeline.run import spool_todo
    from pipeline.sources import SourceSpool
    from schemas.config import JobConfig

    class MeasuredSpool(SourceSpool):
        first_row_s: float | None = None
        max_keys = 0

        def add(self, row: dict) -> None:
            if self.first_row_s is None:
                self.first_row_s = time.perf_counter() - t0
            self.max_keys = max(self.max_keys, len(json.loads(row["payload"]).get("committed_keys", [])))
            super().add(row)

    t0 = time.perf_counter()
    base_rss = rss_mib()
    cfg = JobConfig()
    ledger = SourceLedger.load(str(base / "out"))
    t_ledger = time.perf_counter() - t0
    ledger_rss = rss_mib()
    spool = MeasuredSpool(str(base / "out" / ".listing-bench"))
    counts = spool_todo([str(base / "sources.lst")], cfg, ledger, np.zeros(0, np.uint64), spool)
    t_spool = time.perf_counter() - t0
    ctor = pickle.dumps({"cfg": cfg.model_dump(mode="json"), "num_threads": 1})
    biggest_row = max((len(r) for p in spool.paths for r in pq.read_table(p).column("payload").to_pylist()),
                      default=0)
    spool.remove()
    return {"counts": counts, "ledger": ledger.summary, "ledger_s": round(t_ledger, 2),
            "plan_starts_after_s": round(t_spool, 2), "first_todo_row_s": round(spool.first_row_s or 0, 2),
            "ledger_bytes": _deep_size(ledger.complete) + _deep_size(ledger.complete_sha256)
            + _deep_size(ledger.partial), "ledger_rss_mib": round(ledger_rss - base_rss, 1),
            "max_keys_in_a_row": spool.max_keys, "actor_constructor_bytes": len(ctor),
            "actor_biggest_row_bytes": biggest_row, "base_rss_mib": round(base_rss, 1)}


def resume_old(base: Path) -> dict:
    """What run_annotate did before: every source into a list, every committed key into one frozenset."""
    import pipeline.run  # noqa: F401 - the same imports as the new path (ray among them): the same baseline
    from pipeline.ledger import committed_shards
    from pipeline.sources import list_sources

    t0 = time.perf_counter()
    base_rss = rss_mib()
    sources = list_sources([str(base / "sources.lst")], ["flac"])
    done = committed_shards(str(base / "out"))
    skip_keys = frozenset(k for keys in done.values() for k in keys)
    del done
    t_plan = time.perf_counter() - t0
    pickled = pickle.dumps({"skip_keys": skip_keys}, protocol=5)
    (base / "old_actor_args.pkl").write_bytes(pickled)
    return {"sources": len(sources), "skip_keys": len(skip_keys), "plan_starts_after_s": round(t_plan, 2),
            "actor_constructor_bytes": len(pickled), "base_rss_mib": round(base_rss, 1)}


def actor_old(base: Path) -> dict:
    """A segmenter actor of the old plan: unpickles its constructor's key set."""
    base_rss = rss_mib()
    data = (base / "old_actor_args.pkl").read_bytes()
    args = pickle.loads(data)
    del data
    return {"keys": len(args["skip_keys"]), "base_rss_mib": round(base_rss, 1)}


def _measure(which: str, base: Path) -> dict:
    """Run one measurement in a fresh interpreter; adds its peak RSS."""
    code = (f"import json, sys; from bench.bench_ledger import {which}, peak_rss_mib; from pathlib import Path; "
            f"r = {which}(Path(sys.argv[1])); r['peak_rss_mib'] = round(peak_rss_mib(), 1); print(json.dumps(r))")
    res = subprocess.run([sys.executable, "-c", code, str(base)], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sources", type=int, default=1_000_000)
    ap.add_argument("--keys-per-source", type=int, default=10)
    ap.add_argument("--shard-keys", type=int, default=2_500, help="keys per committed shard")
    ap.add_argument("--dir", default=None, help="where to build the synthetic output (removed afterwards)")
    ap.add_argument("--skip-old", action="store_true")
    a = ap.parse_args()
    base = Path(a.dir or tempfile.mkdtemp(prefix="eventcap-ledger-bench-"))
    try:
        t0 = time.perf_counter()
        truth = make_output(base, a.sources, a.keys_per_source, a.shard_keys, partial_every=100, new_every=50)
        print(f"synthetic output: {truth} ({time.perf_counter() - t0:.0f} s to build); "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        new = _measure("resume_new", base)
        print("new:", json.dumps(new), flush=True)
        if not a.skip_old:
            old = _measure("resume_old", base)
            print("old:", json.dumps(old), flush=True)
            actor = _measure("actor_old", base)
            print("old actor:", json.dumps(actor), flush=True)
            print(f"\n{truth['listed']:,} sources, {truth['committed_keys']:,} committed keys "
                  f"(load {os.getloadavg()[0]:.1f})")
            print(f"  driver peak RSS      new {new['peak_rss_mib']:8.1f} MiB   old {old['peak_rss_mib']:8.1f} MiB  "
                  f"(interpreter+imports: new {new['base_rss_mib']}, old {old['base_rss_mib']})")
            print(f"  plan starts after    new {new['plan_starts_after_s']:8.1f} s     "
                  f"old {old['plan_starts_after_s']:8.1f} s  (new: first source to do after "
                  f"{new['first_todo_row_s']} s)")
            print(f"  per segmenter actor  new {new['actor_constructor_bytes'] / 2**10:8.1f} KiB pickled + "
                  f"<= {new['actor_biggest_row_bytes']} B per source row;  old "
                  f"{old['actor_constructor_bytes'] / 2**20:.1f} MiB pickled, peak RSS {actor['peak_rss_mib']:.1f} MiB "
                  f"(interpreter {actor['base_rss_mib']})")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
