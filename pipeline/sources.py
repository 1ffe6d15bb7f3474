"""Listing the sources of a job, streamed: directories, object-store prefixes and manifests of URIs (no Ray).

`iter_sources` yields one source row at a time, so a corpus of 10^6 files never becomes a driver-side list:
a local directory is walked one directory at a time, an object-store prefix one "directory" level at a time
(pyarrow lists a level in one call), and a manifest (`.lst`/`.txt`: one URI a line; `.tsv`: the `uri`
column or the first; `.parquet`: the `uri` column or the first) is read in batches. `list_sources` is the
sorted list of the same rows, for tools and tests on small inputs.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow.fs as pafs

LIST_FILE_EXTENSIONS = {"txt", "lst", "list", "uris"}  # one URI a line
TABLE_MANIFEST_EXTENSIONS = {"tsv", "parquet"}  # a `uri` column (or the first column)
_MANIFEST_EXTENSIONS = frozenset(LIST_FILE_EXTENSIONS | TABLE_MANIFEST_EXTENSIONS)
MANIFEST_BATCH_ROWS = 65536


@dataclass(frozen=True)
class S3Settings:
    """S3 endpoint, region and credentials from the job config; unset fields fall back to the AWS environment.

    `configure_s3` makes them this process's settings for every s3:// URI; a job hands them to its Ray workers
    through a worker setup hook (pipeline/run.py), never through logged environment variables.
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @property
    def empty(self) -> bool:
        return not any((self.endpoint_url, self.region, self.access_key_id, self.secret_access_key))

    def filesystem(self) -> pafs.S3FileSystem:
        kw: dict = {}
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.rpartition("://")
            kw |= {"endpoint_override": host.rstrip("/"), "scheme": scheme or "https"}
        if self.region:
            kw["region"] = self.region
        if self.access_key_id and self.secret_access_key:
            kw |= {"access_key": self.access_key_id, "secret_key": self.secret_access_key,
                   "session_token": self.session_token}
        return pafs.S3FileSystem(**kw)

    def client(self):
        """A boto3 S3 client with the same settings (for the calls pyarrow lacks, e.g. multipart uploads)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url or None, region_name=self.region or None,
                            aws_access_key_id=self.access_key_id or None,
                            aws_secret_access_key=self.secret_access_key or None,
                            aws_session_token=self.session_token or None)


_S3 = S3Settings()


def configure_s3(settings: S3Settings) -> None:
    """Use `settings` for every s3:// URI this process opens (a worker setup hook calls it on each worker)."""
    global _S3
    _S3 = settings


def apply_s3_config(section) -> S3Settings:
    """Use a config's `s3:` section (schemas.config.S3Config) for this process's s3:// URIs, if it sets anything;
    otherwise the AWS environment stays in charge. Returns the settings (a job hands them to its workers)."""
    settings = S3Settings(**section.model_dump())
    if not settings.empty:
        configure_s3(settings)
    return settings


def s3_settings() -> S3Settings:
    return _S3


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a URI or local path."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    if uri.startswith("s3://") and not _S3.empty:
        return _S3.filesystem(), uri[len("s3://"):].rstrip("/")
    return pafs.FileSystem.from_uri(uri)


def redact_uri(uri: str) -> str:
    """A URI fit for logs and reports: no user:password@ part, no query string (which may carry keys)."""
    if "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    host, _, path = rest.partition("/")
    host = host.rsplit("@", 1)[-1]
    return f"{scheme}://{host}/{path.split('?', 1)[0]}".rstrip("/") if path else f"{scheme}://{host.split('?')[0]}"


def _uri(fs: pafs.FileSystem, path: str, template: str) -> str:
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    scheme = template.split("://", 1)[0]
    return f"{scheme}://{path}"


def uri_digest(uri: str) -> int:
    """A 64-bit digest of a URI, stable across processes (the ledger and the de-duplication use it)."""
    return int.from_bytes(hashlib.blake2b(uri.encode(), digest_size=8).digest(), "little")


class SourceLister:
    """Yields source rows {"uri", "size_bytes", "skip"[, "skip_error"]} for the inputs, each URI once.

    A manifest line naming a file is taken as it is (size_bytes -1: the probe stage looks it up, on a worker);
    a line naming a directory, a prefix or another manifest is expanded.

    A file named explicitly is always taken (and quarantined later if it is not audio). Inside directories,
    files without an audio extension get a `skip` reason, so the job quarantines them instead of dropping them
    silently; hidden files are ignored. Symlinks that dangle, loop, lead out of a listed directory or point at
    a directory get `skip` and `skip_error` (see `_walk_local`). Directory entries come in sorted order per
    directory. Repeated URIs (the same file in two inputs) are dropped by a set of 64-bit digests, the only
    state that grows with the corpus (about 60 bytes a source).
    """

    def __init__(self, extensions: Iterable[str]):
        self.exts = {e.lower().lstrip(".") for e in extensions}
        self.seen: set[int] = set()

    def __call__(self, inputs: Iterable[str]) -> Iterator[dict]:
        for r, _ in self.with_digests(inputs):
            yield r

    def with_digests(self, inputs: Iterable[str]) -> Iterator[tuple[dict, int]]:
        """(row, uri_digest(row["uri"])): the digest the de-duplication computed, for the resume lookups."""
        for item in inputs:
            for r in self._expand(item):
                d = uri_digest(r["uri"])
                if d not in self.seen:
                    self.seen.add(d)
                    yield r, d

    def _expand(self, item: str) -> Iterator[dict]:
        item = item.strip()
        if not item or item.startswith("#"):
            return
        fs, path = filesystem_for(item)
        info = fs.get_file_info(path)
        ext = info.extension.lower()
        if info.type == pafs.FileType.NotFound:
            yield _row(item, -1, None)  # quarantined later as NotFound
        elif info.type == pafs.FileType.Directory:
            yield from self._directory(fs, path, item)
        elif ext in LIST_FILE_EXTENSIONS or ext in TABLE_MANIFEST_EXTENSIONS:
            for uri in manifest_uris(fs, path, ext):
                if _names_a_file(uri):  # not looked up here: 10^6 lines would be 10^6 requests on the driver
                    local = "://" not in uri  # one spelling per file: `sub/../a.wav` is `a.wav`
                    yield _row(os.path.abspath(uri) if local else uri, -1, None)  # the probe stage reads it
                else:
                    yield from self._expand(uri)
        else:
            yield _row(_uri(fs, path, item), info.size, None)

    def _directory(self, fs: pafs.FileSystem, path: str, item: str) -> Iterator[dict]:
        if isinstance(fs, pafs.LocalFileSystem):  # pyarrow follows directory links, loops included
            entries = _walk_local(path)
        else:
            entries = _walk_store(fs, path)
        for file_path, size, refused in entries:
            if refused is not None:
                yield _row(file_path, -1, refused[1]) | {"skip_error": refused[0]}
                continue
            name = file_path.rsplit("/", 1)[-1]
            ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            skip = None if ext in self.exts else f"extension '.{ext}' is not in ingest.extensions"
            yield _row(_uri(fs, file_path, item), size, skip)


def iter_sources(inputs: Iterable[str], extensions: Iterable[str]) -> Iterator[dict]:
    """Source rows of `inputs` (files, directories, prefixes, manifests), streamed, each URI once."""
    return SourceLister(extensions)(inputs)


def list_sources(inputs: list[str], extensions: list[str]) -> list[dict]:
    """All source rows of `inputs`, sorted by URI (holds them all: for small inputs, tools and tests)."""
    return sorted(iter_sources(inputs, extensions), key=lambda r: r["uri"])


def _names_a_file(uri: str) -> bool:
    """A manifest line that names a file (an extension that is not a manifest's), not a directory or a list."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return bool(ext) and not uri.endswith("/") and ext not in _MANIFEST_EXTENSIONS


def _row(uri: str, size: int, skip: str | None) -> dict:
    return {"uri": uri, "size_bytes": size, "skip": skip}


def manifest_uris(fs: pafs.FileSystem, path: str, ext: str) -> Iterator[str]:
    """The URIs a manifest lists, read in batches (blank lines and `#` comments skipped)."""
    if ext == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(fs.open_input_file(path))
        col = "uri" if "uri" in pf.schema_arrow.names else pf.schema_arrow.names[0]
        for batch in pf.iter_batches(batch_size=MANIFEST_BATCH_ROWS, columns=[col]):
            yield from (u for u in batch.column(0).to_pylist() if u)
        return
    with fs.open_input_stream(path) as raw:
        lines = io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", errors="replace")
        first = True
        for line in lines:
            field = line.rstrip("\r\n").split("\t", 1)[0].strip() if ext == "tsv" else line.strip()
            if ext == "tsv" and first and field == "uri":  # the header
                first = False
                continue
            first = False
            if field and not field.startswith("#"):
                yield field


def _walk_local(root: str) -> Iterator[tuple[str, int, tuple[str, str] | None]]:
    """(path, size, refused) of the files under a local directory, never following a directory link.

    A file link inside the tree is listed (its bytes are annotated once: see ContentRegistry). Links that
    dangle or loop (`BrokenSymlink`), lead out of the directory (`SymlinkOutsideInput`) or point at a directory
    (`SymlinkedDirectory`: a loop, or a second path to files listed already) come with `refused` =
    (error, reason), and are quarantined unread.
    """
    top = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            if name.startswith("."):
                continue
            if not os.path.islink(p):
                if name in filenames:
                    yield p, os.path.getsize(p), None
                continue
            target = os.readlink(p)
            if not os.path.exists(p):
                yield p, -1, ("BrokenSymlink", f"symlink loop or dangling symlink (-> {target})")
            elif os.path.commonpath([top, os.path.realpath(p)]) != top:
                yield p, -1, ("SymlinkOutsideInput", f"symlink leads out of the input directory {root} (-> {target})")
            elif os.path.isdir(p):
                yield p, -1, ("SymlinkedDirectory", f"symlink to a directory is not followed (-> {target})")
            else:
                yield p, os.path.getsize(p), None


def _walk_store(fs: pafs.FileSystem, root: str) -> Iterator[tuple[str, int, None]]:
    """(path, size, None) of the files under an object-store prefix, one level (one listing call) at a time."""
    pending = [root]
    while pending:
        level = sorted(fs.get_file_info(pafs.FileSelector(pending.pop(), allow_not_found=True)),
                       key=lambda fi: fi.path, reverse=True)
        for fi in level:
            if fi.type == pafs.FileType.Directory:
                pending.append(fi.path)
        for fi in reversed(level):
            if fi.type == pafs.FileType.File and not fi.base_name.startswith("."):
                yield fi.path, fi.size, None


class SourceSpool:
    """Writes rows to Parquet parts of `chunk_rows` under a directory as they come (the driver holds one chunk).

    The job spools its listing here, so that Ray Data reads the sources in parallel from any node, and no
    process holds the whole list. `paths` lists the parts written; `rows` counts the rows.
    """

    def __init__(self, directory: str, chunk_rows: int = 10_000):
        self.fs, self.root = filesystem_for(directory.rstrip("/"))
        self.directory = directory.rstrip("/")
        self.chunk_rows = chunk_rows
        self.paths: list[str] = []
        self.rows = 0
        self._chunk: list[dict] = []
        self.fs.create_dir(self.root, recursive=True)

    def add(self, row: dict) -> None:
        self._chunk.append(row)
        if len(self._chunk) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self._chunk:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = f"part-{len(self.paths):06d}.parquet"
        pq.write_table(pa.Table.from_pylist(self._chunk), f"{self.root}/{name}", filesystem=self.fs)
        self.paths.append(f"{self.directory}/{name}")
        self.rows += len(self._chunk)
        self._chunk = []

    def remove(self) -> None:
        self.fs.delete_dir(self.root)

    def slices(self, n: int) -> list[dict]:
        """The spooled rows cut into `n` (or fewer) ranges {"path", "lo", "hi"} of about equal size, in order."""
        sizes = [self.chunk_rows] * (len(self.paths) - 1) + [self.rows - self.chunk_rows * (len(self.paths) - 1)]
        per = max(1, -(-self.rows // max(1, n)))
        out = []
        for path, size in zip(self.paths, sizes, strict=True):
            out += [{"path": path, "lo": lo, "hi": min(lo + per, size)} for lo in range(0, size, per)]
        return out


def read_spool_slice(path: str, lo: int, hi: int):
    """Rows [lo, hi) of one spooled part, as an Arrow table."""
    import pyarrow.parquet as pq

    fs, p = filesystem_for(path)
    return pq.read_table(p, filesystem=fs).slice(lo, hi - lo)
