"""The output directory's layout and ledger: what is committed, what a killed run left, which sources are done.

Layout under OUT (any `pyarrow.fs` filesystem):
    shards/shard-NNNNNN[-<run>].tar         <key>.flac, <key>.json (SegmentAnnotation), <key>.txt (caption)
    shards/shard-NNNNNN[-<run>].keys.json   the commit marker: written last, lists the shard's keys (and, since
                                            issue 22, tar_bytes, sha256 and members [[name, size]] for `verify`,
                                            and write_task / write_attempt: the Ray task that committed it)
    manifest/shard-NNNNNN[-<run>].parquet   one row per segment (MANIFEST_SCHEMA), no audio
    quarantine/part-<id>.parquet            QUARANTINE_SCHEMA rows
    ledger/done-<id>.parquet                SOURCE_DONE_SCHEMA rows: a source the segmenter finished, with its
                                            number of segments (committed or not)
    .listing-<run>/part-N.parquet           the running job's listing, spooled (pipeline/sources.py)
A shard counts only when its tar and its sidecar are both in place (DESIGN.md §4): files are written under a
temporary name and renamed (local), or uploaded whole (object stores make an object visible only when its
upload completes, so a reader never sees a partial object).

Shard names never collide. Locally a name is claimed with a hard link, which fails if the name exists. An
object store has no such call through pyarrow, and listing-then-writing races, so there the name carries the
run's id (`shard-NNNNNN-<run>`): numbers are unique within a run (one counter), run ids across runs.

Resume reads the ledger per source (`SourceLedger`): a source whose committed segments number what the
segmenter counted is skipped unread; a source with some committed segments carries just its own keys; the rest
carry nothing. No process holds the set of every committed key. The writer (stages/shard_writer.py) and the
job runner (pipeline/run.py) both use this module; it has no Ray in it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.sources import filesystem_for, redact_uri, s3_settings, uri_digest

log = logging.getLogger(__name__)
SHARD_RE = re.compile(r"(shard-(\d{6,})(?:-[0-9a-f]{8})?)\.(tar|keys\.json)$")
SUBDIRS = ("shards", "manifest", "quarantine", "ledger")
SPOOL_PREFIX = ".listing-"  # OUT/.listing-<run>/part-N.parquet: a run's sources to do (removed when it ends)
SOURCE_DONE_SCHEMA = pa.schema([("source_uri", pa.string()), ("source_sha256", pa.string()),
                                ("segments", pa.int64())])


# ------------------------------------------------------------------ atomic writes
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


def write_parquet_atomic(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    write_atomic(fs, path, buf.getvalue().to_pybytes())


# ------------------------------------------------------------------ shards
def committed_shard_names(output: str) -> list[str]:
    """Names (`shard-NNNNNN[-run]`) of the shards whose tar and sidecar are both present; reads no file."""
    fs, root = filesystem_for(output)
    sel = pafs.FileSelector(f"{root}/shards", allow_not_found=True)
    names = {fi.base_name for fi in fs.get_file_info(sel) if fi.type == pafs.FileType.File}
    return sorted(m.group(1) for name in names
                  if (m := SHARD_RE.match(name)) and m.group(3) == "keys.json" and f"{m.group(1)}.tar" in names)


def committed_shards(output: str) -> dict[str, list[str]]:
    """{shard name: keys} of every committed shard (reads every sidecar: for tools, not for resume)."""
    fs, root = filesystem_for(output)
    out = {}
    for name in committed_shard_names(output):
        with fs.open_input_stream(f"{root}/shards/{name}.keys.json") as f:
            out[name] = json.loads(f.read())["keys"]
    return out


def clean_uncommitted(output: str) -> list[str]:
    """Remove what a killed run left half-written: temp files, tars and manifest parts without a sidecar."""
    fs, root = filesystem_for(output)
    committed = set(committed_shard_names(output))
    removed = []
    for sub in SUBDIRS:
        sel = pafs.FileSelector(f"{root}/{sub}", allow_not_found=True)
        for fi in fs.get_file_info(sel):
            if fi.type != pafs.FileType.File:
                continue
            stem = fi.base_name.split(".")[0]
            orphan = sub in ("shards", "manifest") and stem.startswith("shard-") and stem not in committed
            if fi.base_name.startswith(".tmp-") or orphan:
                fs.delete_file(fi.path)
                removed.append(fi.path)
    removed += abort_incomplete_uploads(output)
    for fi in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):  # the output's lease: one writer
        if fi.type == pafs.FileType.Directory and fi.base_name.startswith(SPOOL_PREFIX):
            fs.delete_dir(fi.path)
            removed.append(fi.path)
    return removed


def abort_incomplete_uploads(output: str) -> list[str]:
    """Abort the multipart uploads a killed run left under an s3:// output (invisible, but stored and billed).

    The output's lease (pipeline/lease.py) means no live writer: every upload in progress under it is a dead
    run's. pyarrow has no call to list uploads, so this one uses boto3. Returns "s3://bucket/key (upload id)".
    """
    if not output.startswith("s3://"):
        return []
    bucket, _, prefix = output[len("s3://"):].partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    client = s3_settings().client()
    aborted, kw = [], {"Bucket": bucket, "Prefix": prefix}
    while True:
        try:
            page = client.list_multipart_uploads(**kw)
        except Exception as e:  # noqa: BLE001 - e.g. no s3:ListBucketMultipartUploads permission: not fatal
            log.warning("could not list incomplete uploads under %s: %s", redact_uri(output), type(e).__name__)
            return aborted
        for up in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
            aborted.append(f"s3://{bucket}/{up['Key']} (incomplete upload {up['UploadId'][:12]})")
        if not page.get("IsTruncated"):
            return aborted
        kw |= {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}


def next_shard_index(output: str) -> int:
    fs, root = filesystem_for(output)
    sel = pafs.FileSelector(f"{root}/shards", allow_not_found=True)
    idx = [int(m.group(2)) for fi in fs.get_file_info(sel) if (m := SHARD_RE.match(fi.base_name))]
    return max(idx) + 1 if idx else 0


def run_suffix(output: str) -> str:
    """'' on a local disk (names are claimed by hard link); '-<8 hex>' unique to this run on an object store."""
    fs, _ = filesystem_for(output)
    return "" if isinstance(fs, pafs.LocalFileSystem) else f"-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ per-source ledger
def write_sources_done(output: str, done: list[dict]) -> str | None:
    """Record sources the segmenter finished ({"source_uri", "source_sha256", "segments"}); the part's path."""
    if not done:
        return None
    fs, root = filesystem_for(output)
    ident = hashlib.sha256(json.dumps(sorted((d["source_uri"], d["segments"]) for d in done)).encode()).hexdigest()
    path = f"{root}/ledger/done-{ident[:16]}.parquet"
    write_parquet_atomic(fs, path, pa.Table.from_pylist(done, schema=SOURCE_DONE_SCHEMA))
    return path


def _digests(uris: list[str]) -> np.ndarray:
    return np.fromiter((uri_digest(u) for u in uris), dtype=np.uint64, count=len(uris))


def sha256_digest(sha256: str) -> int:
    """The first 64 bits of a hex sha256 (enough to tell 10^6 sources apart)."""
    return int(sha256[:16], 16) if sha256 else 0


def _sum_by_digest(digests: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted digests and the sum of `counts` per digest."""
    if digests.size == 0:
        return digests, counts
    order = np.argsort(digests, kind="stable")
    d, c = digests[order], counts[order]
    starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    return d[starts], np.add.reduceat(c, starts)


def _first_by_digest(digests: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Unique sorted digests and, per digest, the first value of each column."""
    d, first = np.unique(digests, return_index=True)
    return (d, *(c[first] for c in columns))


def _in_sorted(sorted_arr: np.ndarray, values: np.ndarray) -> np.ndarray:
    if sorted_arr.size == 0:
        return np.zeros(values.shape, dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_arr, values), sorted_arr.size - 1)
    return sorted_arr[idx] == values


def _cat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype)


@dataclass(frozen=True)
class ContentDigests:
    """A sorted set of sha256 digests (8 bytes each): the bytes of the sources an earlier run finished."""

    sorted_digests: np.ndarray

    def __contains__(self, sha256: str) -> bool:
        return bool(_in_sorted(self.sorted_digests, np.array([sha256_digest(sha256)], np.uint64))[0])


@dataclass
class SourceLedger:
    """Per-source resume state of an output, held as sorted 64-bit URI digests plus the keys of partial sources.

    `state(uri)` is "complete" (skip the source unread), a tuple of the keys committed so far (a partial source:
    the segmenter drops those), or None (nothing committed). Memory: 8 bytes a complete source, the keys of
    partial sources only (a killed run leaves as many as it had in flight).
    """

    complete: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    partial: dict[int, tuple[str, ...]] = field(default_factory=dict)
    complete_sha256: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # sorted sha256 digests
    committed_keys: int = 0
    shards: int = 0

    def state(self, uri: str, digest: int | None = None) -> str | tuple[str, ...] | None:
        """"complete", the committed keys of a partial source, or None; `digest` = uri_digest(uri) if known."""
        d = uri_digest(uri) if digest is None else digest
        i = int(self.complete.searchsorted(np.uint64(d)))
        if i < self.complete.size and int(self.complete[i]) == d:
            return "complete"
        return self.partial.get(d)

    def complete_content(self) -> ContentDigests:
        """The bytes of the complete sources: another URI with the same bytes is DuplicateContent."""
        return ContentDigests(self.complete_sha256)

    @property
    def summary(self) -> dict:
        return {"committed_keys": self.committed_keys, "committed_shards": self.shards,
                "complete_sources": int(self.complete.size), "partial_sources": len(self.partial)}

    @classmethod
    def load(cls, output: str) -> SourceLedger:
        """Read the ledger: the done parts, then the source column of each committed shard's manifest part.

        Vectorised (no Python object per row): `source_uri` is read dictionary-encoded, so each file's distinct
        URIs are hashed once and its rows are counted with `bincount`; keys are read (again) only from the
        manifest parts that hold a partial source.
        """
        fs, root = filesystem_for(output.rstrip("/"))
        d_done, n_done, s_done = _read_done_parts(fs, root)
        names = committed_shard_names(output)
        manifest = ManifestScan(fs, [f"{root}/manifest/{n}.parquet" for n in names])
        d_com, n_com = manifest.counts_by_source()

        committed_for_done = np.zeros(d_done.size, np.int64)
        hit = _in_sorted(d_com, d_done)
        committed_for_done[hit] = n_com[np.searchsorted(d_com, d_done[hit])]
        is_complete = committed_for_done >= n_done
        complete = d_done[is_complete]
        partial_d = d_com[~_in_sorted(complete, d_com)]
        ledger = cls(complete=complete, partial=manifest.keys_of(partial_d),
                     complete_sha256=np.unique(s_done[is_complete]), committed_keys=int(n_com.sum()),
                     shards=len(names))
        pa.default_memory_pool().release_unused()  # the scan's buffers: back to the OS before the job starts
        return ledger


def _sha256_digests(col: pa.ChunkedArray) -> np.ndarray:
    """`sha256_digest` of a column of hex strings (null or empty: 0), without a Python int per row."""
    if len(col) == 0:
        return np.zeros(0, np.uint64)
    head = pc.utf8_lpad(pc.utf8_slice_codeunits(pc.fill_null(col, ""), 0, 16), 16, "0")
    return np.frombuffer(bytes.fromhex("".join(head.to_pylist())), dtype=">u8").astype(np.uint64)


def _read_done_parts(fs: pafs.FileSystem, root: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(URI digests, segment counts, sha256 digests) of the sources the segmenter finished, one row per URI
    (a source done in two runs counted the same segments each time: the first count is kept)."""
    done_d, done_n, done_s = [], [], []
    sel = pafs.FileSelector(f"{root}/ledger", allow_not_found=True)
    for fi in fs.get_file_info(sel):
        if fi.type == pafs.FileType.File and fi.base_name.startswith("done-") and fi.base_name.endswith(".parquet"):
            t = pq.read_table(fi.path, filesystem=fs, columns=["source_uri", "source_sha256", "segments"])
            done_d.append(_digests(t.column("source_uri").to_pylist()))
            done_n.append(t.column("segments").to_numpy().astype(np.int64))
            done_s.append(_sha256_digests(t.column("source_sha256")))
    return _first_by_digest(_cat(done_d, np.uint64), _cat(done_n, np.int64), _cat(done_s, np.uint64))


class ManifestScan:
    """The committed manifest parts, scanned in parallel with `source_uri` dictionary-encoded."""

    def __init__(self, fs: pafs.FileSystem, paths: list[str]):
        self.fs, self.paths = fs, paths
        self.file_digests: dict[str, np.ndarray] = {}  # path -> the sorted URI digests it holds

    def _batches(self, paths: list[str], columns: list[str]):
        import pyarrow.dataset as pads

        if not paths:
            return
        fmt = pads.ParquetFileFormat(read_options=pads.ParquetReadOptions(dictionary_columns={"source_uri"}))
        scan = pads.dataset(paths, filesystem=self.fs, format=fmt).scanner(columns=columns, use_threads=True,
                                                                              fragment_readahead=2)
        for tagged in scan.scan_batches():
            batch = tagged.record_batch
            if batch.column("source_uri").null_count:  # not written by eventcap; nothing to resume from
                batch = batch.filter(pc.is_valid(batch.column("source_uri")))
            uris = batch.column("source_uri")
            if not isinstance(uris, pa.DictionaryArray):
                uris = uris.dictionary_encode()
            yield tagged.fragment.path, batch, uris, _digests(uris.dictionary.to_pylist())

    def counts_by_source(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted URI digests of the committed segments and the number of segments per digest."""
        digests: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        per_file: dict[str, list[np.ndarray]] = {}
        for path, _, uris, dict_digests in self._batches(self.paths, ["source_uri"]):
            n = np.bincount(uris.indices.to_numpy(zero_copy_only=False), minlength=len(dict_digests))
            used = n > 0
            digests.append(dict_digests[used])
            counts.append(n[used].astype(np.int64))
            per_file.setdefault(path, []).append(dict_digests[used])
        self.file_digests = {p: np.unique(np.concatenate(d)) for p, d in per_file.items()}
        return _sum_by_digest(_cat(digests, np.uint64), _cat(counts, np.int64))

    def keys_of(self, partial_digests: np.ndarray) -> dict[int, tuple[str, ...]]:
        """{URI digest: its committed keys, sorted} for the `partial_digests` (read only where they occur)."""
        if not partial_digests.size:
            return {}
        paths = [p for p, d in self.file_digests.items() if _in_sorted(partial_digests, d).any()]
        found: dict[int, list[str]] = {}
        for _, batch, uris, dict_digests in self._batches(paths, ["source_uri", "key"]):
            indices = uris.indices.to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(_in_sorted(partial_digests, dict_digests)[indices])
            if not rows.size:
                continue
            keys = batch.column("key").take(pa.array(rows)).to_pylist()
            for d, key in zip(dict_digests[indices[rows]].tolist(), keys, strict=True):
                found.setdefault(d, []).append(key)
        return {d: tuple(sorted(k)) for d, k in found.items()}
