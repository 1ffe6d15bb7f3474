"""`eventcap recaption OUT --name NAME`: run only the caption merger over an existing annotate output.

The annotations come from the committed shards' `<key>.json` members (the `.flac` members are skipped
unread: no audio is decoded or rewritten, no annotator runs). Each annotate shard gives one part of the
named caption table, `OUT/captions/NAME/shard-NNNNNN.parquet` (CAPTIONS_SCHEMA, keyed by segment key),
written atomically; a rerun skips the parts already there, so a killed re-caption resumes. The LLM reply
cache under OUT/caption_cache is shared with the annotate job: the same prompt and model are paid once.
"""

from __future__ import annotations

import json
import re
import tarfile
import time
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from annotators.llm import build_caption_merger
from pipeline.ledger import committed_shards, write_atomic
from pipeline.sources import filesystem_for
from schemas.annotation import SegmentAnnotation
from schemas.compat import read_annotation
from schemas.config import JobConfig, _hash
from schemas.tables import CAPTIONS_SCHEMA
from schemas.version import SCHEMA_VERSION
from stages.caption_report import count_caption, new_caption_counts

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def read_annotations(fs: pafs.FileSystem, tar_path: str) -> list[SegmentAnnotation]:
    """The SegmentAnnotations of one shard, read from its JSON members in a single streaming pass."""
    segs = []
    with fs.open_input_stream(tar_path) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                segs.append(read_annotation(tar.extractfile(member).read()))
    return segs


def caption_rows(segs: list[SegmentAnnotation], results, shard: str, caption_hash: str) -> list[dict]:
    return [{"key": s.key, "caption": r.caption, "short_caption": r.short_caption, "caption_source": r.source,
             "caption_model": r.model, "caption_prompt_id": r.prompt_id, "caption_rejections": list(r.rejections),
             "shard": shard, "caption_config_hash": caption_hash, "schema_version": SCHEMA_VERSION}
            for s, r in zip(segs, results, strict=True)]


def run_recaption(output: str, name: str, cfg: JobConfig, log=print) -> dict:
    """Write OUT/captions/NAME/*.parquet and OUT/captions/NAME/report.json; returns the report."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"--name {name!r}: use letters, digits, '_', '.', '-' (it names a directory)")
    t0 = time.time()
    output = output.rstrip("/")
    fs, root = filesystem_for(output)
    shards = committed_shards(output)
    if not shards:
        raise FileNotFoundError(f"no committed shards under {output}/shards (run `eventcap annotate` first)")
    table_dir = f"{root}/captions/{name}"
    fs.create_dir(table_dir, recursive=True)
    parts = _parts(fs, table_dir)
    done = {p.rsplit("/", 1)[-1].removesuffix(".parquet") for p in parts}
    caption_hash = _hash(cfg.caption.model_dump(mode="json"))
    if parts:
        before = set(pq.read_table(parts[0], filesystem=fs, columns=["caption_config_hash"]).column(0).to_pylist())
        if before != {caption_hash}:
            raise ValueError(f"caption table {name!r} was written with another caption config; resume it with the "
                             f"same config or choose a new --name")
    merger = build_caption_merger(cfg.caption, output)
    counts = new_caption_counts()
    n_segments, n_written, request_s = 0, 0, 0.0
    try:
        for shard in sorted(shards):
            if shard in done:
                continue
            segs = read_annotations(fs, f"{root}/shards/{shard}.tar")
            t = time.time()
            results = merger.caption_many(segs)
            request_s += time.time() - t
            rows = caption_rows(segs, results, f"{shard}.tar", caption_hash)
            for s, r in zip(segs, results, strict=True):
                r.apply_to(s)
                count_caption(counts, s)
            buf = pa.BufferOutputStream()
            pq.write_table(pa.Table.from_pylist(rows, schema=CAPTIONS_SCHEMA), buf)
            write_atomic(fs, f"{table_dir}/{shard}.parquet", buf.getvalue().to_pybytes())
            n_segments += len(segs)
            n_written += 1
            log(f"{shard}: {len(segs)} captions ({dict(Counter(r.source for r in results))})")
    finally:
        merger.close()
    report = {
        "name": name, "output": output, "table": f"{output}/captions/{name}",
        "finished": datetime.now(UTC).isoformat(timespec="seconds"), "wall_s": round(time.time() - t0, 2),
        "shards": {"total": len(shards), "captioned_now": n_written, "skipped_already_done": len(done & set(shards))},
        "segments_captioned_now": n_segments,
        "captions_per_s": round(n_segments / request_s, 3) if request_s > 0 else None,
        "captions": {k: dict(sorted(v.items())) for k, v in counts.items()},
        "caption_config_hash": caption_hash,
        "caption_config": cfg.caption.model_dump(mode="json"),  # api_key_env is a variable's name, not a key
        "schema_version": SCHEMA_VERSION,
    }
    write_atomic(fs, f"{table_dir}/report.json", json.dumps(report, indent=2).encode())
    return report


def _parts(fs: pafs.FileSystem, table_dir: str) -> list[str]:
    sel = pafs.FileSelector(table_dir, allow_not_found=True)
    return sorted(fi.path for fi in fs.get_file_info(sel)
                  if fi.base_name.endswith(".parquet") and not fi.base_name.startswith("."))


def read_caption_table(output: str, name: str) -> pa.Table:
    """The named caption table as one Arrow table (CAPTIONS_SCHEMA)."""
    fs, root = filesystem_for(output.rstrip("/"))
    parts = _parts(fs, f"{root}/captions/{name}")
    tables = [pq.read_table(p, filesystem=fs, schema=CAPTIONS_SCHEMA) for p in parts]
    return pa.concat_tables(tables) if tables else CAPTIONS_SCHEMA.empty_table()
