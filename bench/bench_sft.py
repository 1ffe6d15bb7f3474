"""Time `eventcap sft` per 1,000 samples on a scaled copy of a real annotate output.

    python -m bench.bench_sft ANNOTATE_OUT [--copies 40] [--format webdataset|moss-jsonl]

Every committed segment of ANNOTATE_OUT is written `--copies` times under new keys (same annotation, same
FLAC) into a temporary annotate output with its own manifest and sidecars; then the SFT job runs over it
once (all tasks, default weights) and prints samples, seconds and seconds per 1,000 samples.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.compat import read_annotation
from schemas.tables import MANIFEST_SCHEMA, manifest_row


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def scale(src: Path, dst: Path, copies: int) -> int:
    """Write `copies` re-keyed copies of every segment of `src` into `dst`; return the segment count."""
    (dst / "shards").mkdir(parents=True)
    (dst / "manifest").mkdir()
    n = 0
    for tar_path in sorted((src / "shards").glob("shard-*.tar")):
        if not tar_path.with_suffix("").with_suffix(".keys.json").exists():
            continue
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        segs = [read_annotation(v) for k, v in members.items() if k.endswith(".json")]
        name = tar_path.name
        rows, keys = [], []
        with tarfile.open(dst / "shards" / name, "w") as out:
            for c in range(copies):
                for seg in segs:
                    key = hashlib.sha256(f"{seg.key}:{c}".encode()).hexdigest()[:32]
                    copy = seg.model_copy(update={"key": key})
                    _add(out, f"{key}.flac", members[f"{seg.key}.flac"])
                    _add(out, f"{key}.json", copy.model_dump_json().encode())
                    _add(out, f"{key}.txt", copy.caption.encode())
                    rows.append(manifest_row(copy, name))
                    keys.append(key)
        pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), dst / "manifest" / name.replace(".tar", ".parquet"))
        (dst / "shards" / name.replace(".tar", ".keys.json")).write_text(json.dumps({"shard": name, "keys": keys}))
        n += len(keys)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("annotate_out")
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--format", default="webdataset", choices=["webdataset", "moss-jsonl"])
    args = ap.parse_args(argv)
    from jobs.sft.run import run_sft
    from schemas.sft_config import SftConfig

    with tempfile.TemporaryDirectory(prefix="bench-sft-") as d:
        n = scale(Path(args.annotate_out), Path(d) / "annotated", args.copies)
        t0 = time.perf_counter()
        result = run_sft([str(Path(d) / "annotated")], str(Path(d) / "sft"), SftConfig(format=args.format))
        wall = time.perf_counter() - t0
    total = result.report["total_samples"]
    print(json.dumps({"segments": n, "samples": total, "format": args.format, "wall_s": round(wall, 2),
                      "s_per_1000_samples": round(1000 * wall / total, 2), "samples_per_task": result.report["samples"],
                      "skipped_by_reason": result.report["skipped_by_reason"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
