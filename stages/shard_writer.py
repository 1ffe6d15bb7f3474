"""ShardWriter: WebDataset tars + Parquet manifest + quarantine table, each shard committed atomically.

Layout under OUT (any `pyarrow.fs` filesystem):
    shards/shard-NNNNNN.tar         <key>.flac, <key>.json (SegmentAnnotation), <key>.txt (caption)
    shards/shard-NNNNNN.keys.json   the commit marker: written last, lists the shard's keys (and, since
                                    issue 22, tar_bytes, sha256 and members [[name, size]] for `verify`)
    manifest/shard-NNNNNN.parquet   one row per segment (MANIFEST_SCHEMA), no audio
    quarantine/part-<id>.parquet    QUARANTINE_SCHEMA rows
A shard counts only when its tar and its sidecar are both in place (DESIGN.md §4): files are written under
a temporary name and renamed (local), or uploaded whole (object stores make an object visible only when its
upload completes, so a reader never sees a partial object).

Shard names never collide. Locally a name is claimed with a hard link, which fails if the name exists. An
object store has no such call through pyarrow, and listing-then-writing races, so there the name carries the
run's id (`shard-NNNNNN-<run>`): numbers are unique within a run (one counter actor), run ids across runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data.block import BlockAccessor
from ray.data.datasource.datasink import Datasink, WriteResult

from schemas.annotation import QuarantineRecord, SegmentAnnotation
from schemas.tables import MANIFEST_SCHEMA, QUARANTINE_SCHEMA, manifest_row, quarantine_row
from stages.caption_report import count_caption, new_caption_counts
from stages.ingest import filesystem_for
from stages.rows import audio_of, merge_stats, to_rows

SHARD_RE = re.compile(r"(shard-(\d{6,})(?:-[0-9a-f]{8})?)\.(tar|keys\.json)$")


@ray.remote(num_cpus=0)
class ShardCounter:
    """Hands out consecutive shard numbers to the write tasks of one job."""

    def __init__(self, start: int):
        self.next_index = start

    def next(self) -> int:
        self.next_index += 1
        return self.next_index - 1


# ------------------------------------------------------------------ filesystem helpers
def _write(out, data: bytes | None, local_file: str | None) -> None:
    if local_file is None:
        out.write(data)
        return
    with open(local_file, "rb") as src:
        while chunk := src.read(8 << 20):
            out.write(chunk)


class NameTaken(FileExistsError):
    """The final name already exists (another writer got there first): nothing was written."""


def write_atomic(fs: pafs.FileSystem, path: str, data: bytes | None = None, local_file: str | None = None,
                 exclusive: bool = False) -> None:
    """Write `data` (or the content of `local_file`) so that readers see all of the file or nothing.

    `exclusive` never replaces an existing file (raises NameTaken): a shard name is claimed, not overwritten.
    """
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{os.path.dirname(path)}/.tmp-{uuid.uuid4().hex}-{os.path.basename(path)}"
        try:
            with open(tmp, "wb") as out:
                _write(out, data, local_file)
        except BaseException:  # a full disk: no half-written file stays behind (issue 22)
            os.unlink(tmp)
            raise
        if not exclusive:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # atomic, and fails if the name exists
        except FileExistsError as e:
            raise NameTaken(path) from e
        finally:
            os.unlink(tmp)
        return
    # an object becomes visible only when its upload completes; names written with `exclusive` are unique
    # by construction on object stores (see run_suffix), so there is nothing to claim
    with fs.open_output_stream(path) as out:
        _write(out, data, local_file)


def committed_shards(output: str) -> dict[str, list[str]]:
    """{shard name: keys} of every shard whose tar and sidecar are both present."""
    fs, root = filesystem_for(output)
    sel = pafs.FileSelector(f"{root}/shards", allow_not_found=True)
    names = {fi.base_name for fi in fs.get_file_info(sel) if fi.type == pafs.FileType.File}
    out = {}
    for name in sorted(names):
        m = SHARD_RE.match(name)
        if m and m.group(3) == "keys.json" and f"{m.group(1)}.tar" in names:
            with fs.open_input_stream(f"{root}/shards/{name}") as f:
                out[m.group(1)] = json.loads(f.read())["keys"]
    return out


def clean_uncommitted(output: str) -> list[str]:
    """Remove what a killed run left half-written: temp files, tars and manifest parts without a sidecar."""
    fs, root = filesystem_for(output)
    committed = set(committed_shards(output))
    removed = []
    for sub in ("shards", "manifest", "quarantine"):
        sel = pafs.FileSelector(f"{root}/{sub}", allow_not_found=True)
        for fi in fs.get_file_info(sel):
            if fi.type != pafs.FileType.File:
                continue
            stem = fi.base_name.split(".")[0]
            orphan = sub in ("shards", "manifest") and stem.startswith("shard-") and stem not in committed
            if fi.base_name.startswith(".tmp-") or orphan:
                fs.delete_file(fi.path)
                removed.append(fi.path)
    return removed


def next_shard_index(output: str) -> int:
    fs, root = filesystem_for(output)
    sel = pafs.FileSelector(f"{root}/shards", allow_not_found=True)
    idx = [int(m.group(2)) for fi in fs.get_file_info(sel) if (m := SHARD_RE.match(fi.base_name))]
    return max(idx) + 1 if idx else 0


def run_suffix(output: str) -> str:
    """'' on a local disk (names are claimed by hard link); '-<8 hex>' unique to this run on an object store."""
    fs, _ = filesystem_for(output)
    return "" if isinstance(fs, pafs.LocalFileSystem) else f"-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ the sink
def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def flac_bytes(audio: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def shard_fingerprint(tar_path: str) -> dict:
    """What `eventcap verify` checks a committed tar against: its size, sha256 and member list with sizes."""
    h = hashlib.sha256()
    with open(tar_path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    with tarfile.open(tar_path, "r") as tar:
        members = [[m.name, m.size] for m in tar.getmembers()]
    return {"tar_bytes": os.path.getsize(tar_path), "sha256": h.hexdigest(), "members": members}


class _OpenShard:
    def __init__(self, tmpdir: str):
        self.path = os.path.join(tmpdir, f"{uuid.uuid4().hex}.tar")
        self.tar = tarfile.open(self.path, "w", format=tarfile.USTAR_FORMAT)
        self.segments: list[SegmentAnnotation] = []

    def add(self, seg: SegmentAnnotation, audio: np.ndarray) -> None:
        _tar_add(self.tar, f"{seg.key}.flac", flac_bytes(audio, seg.sample_rate))
        _tar_add(self.tar, f"{seg.key}.json", seg.model_dump_json().encode())
        _tar_add(self.tar, f"{seg.key}.txt", seg.caption.encode())
        self.segments.append(seg)

    def size(self) -> int:
        return self.tar.fileobj.tell()


class ShardWriter(Datasink[dict]):
    """Datasink writing WebDataset shards, manifest parts and quarantine parts; returns per-task stats."""

    def __init__(self, output: str, target_shard_mb: float, counter, name_suffix: str = ""):
        self.output = output.rstrip("/")
        self.name_suffix = name_suffix
        self.target_bytes = int(target_shard_mb * 1024 * 1024)
        self.counter = counter
        self.results: list[dict] = []

    @property
    def min_bytes_per_write(self) -> int:
        return self.target_bytes * 3  # float32 rows in, ~16-bit FLAC out

    def on_write_start(self, schema=None) -> None:
        fs, root = filesystem_for(self.output)
        for sub in ("shards", "manifest", "quarantine"):
            fs.create_dir(f"{root}/{sub}", recursive=True)

    def write(self, blocks: Iterable, ctx) -> dict:
        fs, root = filesystem_for(self.output)
        stats: dict[str, dict[str, float]] = {}
        quarantined: list[dict] = []
        routes: Counter = Counter()
        captions: dict[str, Counter] = new_caption_counts()
        result = {"shards": [], "segments": 0, "audio_s": 0.0, "quarantined": 0}
        with tempfile.TemporaryDirectory(prefix="eventcap-shard-") as tmpdir:
            shard = None
            for block in blocks:
                batch = BlockAccessor.for_block(block).to_batch_format("numpy")
                for r in to_rows(batch):
                    merge_stats(stats, json.loads(r["stats"] or "{}"))
                    if r["kind"] == "quarantine":
                        quarantined.append(quarantine_row(QuarantineRecord.model_validate_json(r["payload"])))
                        continue
                    if r["kind"] != "segment":
                        continue
                    seg = SegmentAnnotation.model_validate_json(r["payload"])
                    if shard is None:
                        shard = _OpenShard(tmpdir)
                    shard.add(seg, audio_of(r))
                    routes.update(seg.routes)
                    count_caption(captions, seg)
                    result["segments"] += 1
                    result["audio_s"] += seg.duration_s
                    if shard.size() >= self.target_bytes:
                        result["shards"].append(self._commit(fs, root, shard))
                        shard = None
            if shard is not None:
                result["shards"].append(self._commit(fs, root, shard))
        if quarantined:
            table = pa.Table.from_pylist(quarantined, schema=QUARANTINE_SCHEMA)
            ident = hashlib.sha256(json.dumps([(q["source_uri"], q["stage"], q["key"]) for q in quarantined],
                                              sort_keys=True).encode()).hexdigest()[:16]
            buf = pa.BufferOutputStream()
            pq.write_table(table, buf)
            write_atomic(fs, f"{root}/quarantine/part-{ident}.parquet", buf.getvalue().to_pybytes())
        result["quarantined"] = len(quarantined)
        result["stats"] = stats
        result["routes"] = dict(routes)
        result["captions"] = {k: dict(v) for k, v in captions.items()}
        return result

    def _commit(self, fs, root: str, shard: _OpenShard) -> str:
        """Claim a shard name with the tar, then write its manifest part, then its sidecar (the commit)."""
        shard.tar.close()
        while True:
            name = f"shard-{ray.get(self.counter.next.remote()):06d}{self.name_suffix}"
            try:
                write_atomic(fs, f"{root}/shards/{name}.tar", local_file=shard.path, exclusive=True)
                break
            except NameTaken:  # left by a killed run that was still writing: take the next number
                continue
        rows = [manifest_row(seg, f"{name}.tar") for seg in shard.segments]
        buf = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), buf)
        write_atomic(fs, f"{root}/manifest/{name}.parquet", buf.getvalue().to_pybytes())
        sidecar = {"shard": f"{name}.tar", "keys": [s.key for s in shard.segments],
                   "audio_s": sum(s.duration_s for s in shard.segments), **shard_fingerprint(shard.path)}
        write_atomic(fs, f"{root}/shards/{name}.keys.json", json.dumps(sidecar).encode())  # the commit point
        os.unlink(shard.path)
        return name

    def on_write_complete(self, write_result: WriteResult[dict]) -> None:
        self.results = list(write_result.write_returns)
