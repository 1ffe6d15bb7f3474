"""ShardWriter: the Ray Datasink that writes WebDataset tars, the Parquet manifest, quarantine and ledger parts.

Each shard is committed atomically (tar, then manifest part, then the sidecar marker); the output's layout,
the atomic writes and the ledger live in pipeline/ledger.py, which the job runner reads on resume.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
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

from pipeline.coordinator import StaleAttempt
from pipeline.ledger import SUBDIRS, NameTaken, write_atomic, write_sources_done
from pipeline.sources import filesystem_for
from schemas.annotation import QuarantineRecord, SegmentAnnotation
from schemas.tables import MANIFEST_SCHEMA, QUARANTINE_SCHEMA, manifest_row, quarantine_row
from stages.caption_report import count_caption, new_caption_counts
from stages.rows import audio_of, merge_stats, to_rows


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

    def __init__(self, output: str, target_shard_mb: float, counter, name_suffix: str = "",
                 write_buffer_mb: float | None = None):
        self.output = output.rstrip("/")
        self.name_suffix = name_suffix
        self.target_bytes = int(target_shard_mb * 1024 * 1024)
        self.buffer_bytes = int(write_buffer_mb * 1024 * 1024) if write_buffer_mb else None
        self.counter = counter
        self.results: list[dict] = []

    @property
    def min_bytes_per_write(self) -> int:
        """Rows Ray gathers for one write task: a shard's worth (float32 rows in, ~3.5x smaller FLAC out), at
        most the write buffer. Gathering always a full shard held every row of a corpus under ~3 hours in the
        object store until the end (a 3-hour noise file: all of it), and nothing reached the output before."""
        want = self.target_bytes * 3
        return min(want, self.buffer_bytes) if self.buffer_bytes else want

    def on_write_start(self, schema=None) -> None:
        fs, root = filesystem_for(self.output)
        for sub in SUBDIRS:
            fs.create_dir(f"{root}/{sub}", recursive=True)

    def write(self, blocks: Iterable, ctx) -> dict:
        fs, root = filesystem_for(self.output)
        task_id = self.task_id()
        attempt, done, begun = ray.get(self.counter.begin.remote(task_id))
        if done is not None:  # run again by lineage reconstruction: everything it wrote is committed
            return done
        lost = {}  # what an earlier attempt of this task committed
        for name, keys in begun:
            if fs.get_file_info(f"{root}/shards/{name}.keys.json").type == pafs.FileType.File:
                lost[name] = keys
            else:  # begun, not committed: revoked, so that the old attempt, if it still runs on a node being
                self._remove(fs, root, name)  # torn down, cannot complete it (a marker without its tar is no shard)
        committed_before = {k for keys in lost.values() for k in keys}
        stats: dict[str, dict[str, float]] = {}
        quarantined: list[dict] = []
        sources_done: list[dict] = []
        routes: Counter = Counter()
        captions: dict[str, Counter] = new_caption_counts()
        result = {"shards": sorted(lost), "segments": 0, "audio_s": 0.0, "quarantined": 0,
                  "duplicates_dropped": 0, "first_segment_at": None}
        with tempfile.TemporaryDirectory(prefix="eventcap-shard-") as tmpdir:
            shard = None
            for block in blocks:
                segments = []
                for r in to_rows(BlockAccessor.for_block(block).to_batch_format("numpy")):
                    merge_stats(stats, json.loads(r["stats"] or "{}"))
                    if r["kind"] == "quarantine":
                        quarantined.append(quarantine_row(QuarantineRecord.model_validate_json(r["payload"])))
                    elif r["kind"] == "source_done":
                        sources_done.append(json.loads(r["payload"]))
                    elif r["kind"] == "segment":
                        segments.append((SegmentAnnotation.model_validate_json(r["payload"]), r))
                mine = ray.get(self.counter.claim.remote(task_id, attempt, [s.key for s, _ in segments])) if segments else []
                for (seg, r), ok in zip(segments, mine, strict=True):
                    if not ok:  # another write task has (or had) this key: an upstream replay
                        result["duplicates_dropped"] += 1
                        continue
                    if result["first_segment_at"] is None:  # wall clock: the job's time to first segment
                        result["first_segment_at"] = time.time()
                    routes.update(seg.routes)
                    count_caption(captions, seg)
                    result["segments"] += 1
                    result["audio_s"] += seg.duration_s
                    if seg.key in committed_before:  # counted; its shard is in result["shards"]
                        continue
                    if shard is None:
                        shard = _OpenShard(tmpdir)
                    shard.add(seg, audio_of(r))
                    if shard.size() >= self.target_bytes:
                        result["shards"].append(self._commit(fs, root, shard, task_id, attempt))
                        shard = None
            if shard is not None:
                result["shards"].append(self._commit(fs, root, shard, task_id, attempt))
        if quarantined:
            table = pa.Table.from_pylist(quarantined, schema=QUARANTINE_SCHEMA)
            ident = hashlib.sha256(json.dumps([(q["source_uri"], q["stage"], q["key"]) for q in quarantined],
                                              sort_keys=True).encode()).hexdigest()[:16]
            buf = pa.BufferOutputStream()
            pq.write_table(table, buf)
            write_atomic(fs, f"{root}/quarantine/part-{ident}.parquet", buf.getvalue().to_pybytes())
        write_sources_done(self.output, sources_done)  # after this task's shards: see pipeline/ledger.py
        result["quarantined"] = len(quarantined)
        result["stats"] = stats
        result["routes"] = dict(routes)
        result["captions"] = {k: dict(v) for k, v in captions.items()}
        if not ray.get(self.counter.finished.remote(task_id, attempt, result)):
            raise StaleAttempt(task_id)
        return result

    @staticmethod
    def _remove(fs, root: str, name: str) -> None:
        """Remove the tar and manifest part of a shard that is not committed."""
        for path in (f"{root}/manifest/{name}.parquet", f"{root}/shards/{name}.tar"):
            if fs.get_file_info(path).type == pafs.FileType.File:
                fs.delete_file(path)

    @staticmethod
    def task_id() -> str:
        """The id Ray retries and reconstructs this write task under (every attempt has the same)."""
        return ray.get_runtime_context().get_task_id()

    def _commit(self, fs, root: str, shard: _OpenShard, task_id: str, attempt: int) -> str:
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
                   "audio_s": sum(s.duration_s for s in shard.segments), "write_task": task_id,
                   "write_attempt": attempt, **shard_fingerprint(shard.path)}
        if not ray.get(self.counter.committing.remote(task_id, attempt, name, sidecar["keys"])):
            self._remove(fs, root, name)
            raise StaleAttempt(task_id)
        write_atomic(fs, f"{root}/shards/{name}.keys.json", json.dumps(sidecar).encode())  # the commit point
        os.unlink(shard.path)
        return name

    def on_write_complete(self, write_result: WriteResult[dict]) -> None:
        self.results = list(write_result.write_returns)
