"""Ingest: list inputs, hash, probe and decode sources to mono float32 at 16 kHz, streaming.

Everything goes through `pyarrow.fs`, so local paths and (with the cluster issue) `s3://` URIs share one
code path. Decoding is streamed in blocks: a 2-hour file never becomes one 2-hour array.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs

from schemas.errors import QuarantineError

LIST_FILE_EXTENSIONS = {"txt", "lst", "list", "uris"}


class IngestError(QuarantineError):
    """A source that cannot become audio. `error` (an ErrorClass) is the class written to the quarantine table."""


@dataclass
class SourceInfo:
    uri: str
    size_bytes: int
    sha256: str
    native_rate: int
    channels: int
    duration_s: float | None  # None when the container does not say
    decoder: str  # "soundfile" | "pyav"


# ------------------------------------------------------------------ listing (driver side: metadata only)
def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a URI or local path."""
    if "://" not in uri:
        import os

        return pafs.LocalFileSystem(), os.path.abspath(uri)
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


def list_sources(inputs: list[str], extensions: list[str]) -> list[dict]:
    """Expand files, directories (recursive) and list files (.txt/.lst: one URI per line) into source rows.

    A file named explicitly is always taken (and quarantined later if it is not audio). Inside directories,
    files without an audio extension are listed with a `skip` reason, so the job quarantines them instead of
    dropping them silently; hidden files are ignored. Symlinks that dangle, loop, lead out of a listed
    directory or point at a directory get `skip` and `skip_error` (see `_walk_local`).
    Rows: {"uri", "size_bytes", "skip"[, "skip_error"]}, sorted, unique.
    """
    exts = {e.lower().lstrip(".") for e in extensions}
    rows: dict[str, tuple[int, str | None]] = {}
    refused: dict[str, tuple[str, str]] = {}  # uri -> (error, reason): links a directory listing must not follow
    pending = list(inputs)
    while pending:
        item = pending.pop(0).strip()
        if not item or item.startswith("#"):
            continue
        fs, path = filesystem_for(item)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            rows.setdefault(item, (-1, None))  # quarantined later as NotFound
        elif info.type == pafs.FileType.Directory:
            if isinstance(fs, pafs.LocalFileSystem):  # pyarrow follows directory links, loops included
                files, bad_links = _walk_local(path)
                refused.update(bad_links)
            else:
                files = [(fi.path, fi.size) for fi in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                         if fi.type == pafs.FileType.File]
            for file_path, size in files:
                name = file_path.rsplit("/", 1)[-1]
                if name.startswith("."):
                    continue
                ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
                skip = None if ext in exts else f"extension '.{ext}' is not in ingest.extensions"
                rows.setdefault(_uri(fs, file_path, item), (size, skip))
        elif info.extension.lower() in LIST_FILE_EXTENSIONS:
            with fs.open_input_stream(path) as f:
                pending.extend(f.read().decode("utf-8", errors="replace").splitlines())
        else:
            rows[_uri(fs, path, item)] = (info.size, None)
    for uri, (_error, reason) in refused.items():
        rows[uri] = (-1, reason)
    return [{"uri": u, "size_bytes": s, "skip": skip} | ({"skip_error": refused[u][0]} if u in refused else {})
            for u, (s, skip) in sorted(rows.items())]


def _walk_local(root: str) -> tuple[list[tuple[str, int]], dict[str, tuple[str, str]]]:
    """Files under a local directory, never following a directory link; and the links refused, with why.

    A file link inside the tree is listed (its bytes are annotated once: see ContentRegistry). Links that
    dangle or loop (`BrokenSymlink`), lead out of the directory (`SymlinkOutsideInput`) or point at a directory
    (`SymlinkedDirectory`: a loop, or a second path to files listed already) are quarantined, unread.
    """
    import os

    top = os.path.realpath(root)
    files, refused = [], {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if name.startswith("."):
                continue
            if not os.path.islink(p):
                if name in filenames:
                    files.append((p, os.path.getsize(p)))
                continue
            target = os.readlink(p)
            if not os.path.exists(p):
                refused[p] = ("BrokenSymlink", f"symlink loop or dangling symlink (-> {target})")
            elif os.path.commonpath([top, os.path.realpath(p)]) != top:
                refused[p] = ("SymlinkOutsideInput", f"symlink leads out of the input directory {root} (-> {target})")
            elif os.path.isdir(p):
                refused[p] = ("SymlinkedDirectory", f"symlink to a directory is not followed (-> {target})")
            else:
                files.append((p, os.path.getsize(p)))
    return files, refused


# ------------------------------------------------------------------ probing
def sha256_of(uri: str, block: int = 8 << 20) -> str:
    fs, path = filesystem_for(uri)
    h = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def probe(uri: str, max_bytes: int) -> SourceInfo:
    """Hash and probe a source; raise IngestError (NotFound, EmptyFile, TooLarge, NotAudio) when it is unusable."""
    fs, path = filesystem_for(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise IngestError("NotFound", f"no such file: {uri}")
    if info.size == 0:
        raise IngestError("EmptyFile", "file is empty (0 bytes)")
    if info.size > max_bytes:
        raise IngestError("TooLarge", f"file is {info.size} bytes, over ingest.max_file_bytes={max_bytes}")
    digest = sha256_of(uri)
    errors = []
    try:
        import soundfile as sf

        with fs.open_input_file(path) as f, sf.SoundFile(f) as snd:
            if snd.frames <= 0 or snd.samplerate <= 0:
                raise RuntimeError("no frames")
            return SourceInfo(uri, info.size, digest, snd.samplerate, snd.channels, snd.frames / snd.samplerate,
                              "soundfile")
    except Exception as e:  # noqa: BLE001 - fall through to PyAV, which reads more containers
        errors.append(f"soundfile: {e}")
    try:
        import av

        with fs.open_input_file(path) as f, av.open(f, mode="r") as container:
            if not container.streams.audio:
                raise RuntimeError("no audio stream")
            st = container.streams.audio[0]
            rate = st.codec_context.sample_rate or st.rate
            duration = float(st.duration * st.time_base) if st.duration else (
                container.duration / 1e6 if container.duration else None)
            if not rate:
                raise RuntimeError("audio stream has no sample rate")
            return SourceInfo(uri, info.size, digest, int(rate), st.codec_context.channels or 1, duration, "pyav")
    except Exception as e:  # noqa: BLE001
        errors.append(f"pyav: {e}")
    raise IngestError("NotAudio", "not a readable audio file (" + "; ".join(errors) + ")")


# ------------------------------------------------------------------ streaming decode
def _soundfile_blocks(path: str, fs: pafs.FileSystem, block_frames: int) -> Iterator[tuple[np.ndarray, int]]:
    import soundfile as sf

    with fs.open_input_file(path) as f, sf.SoundFile(f) as snd:
        while True:
            x = snd.read(block_frames, dtype="float32", always_2d=True)
            if x.shape[0] == 0:
                return
            yield x.mean(axis=1), snd.samplerate


def _pyav_blocks(path: str, fs: pafs.FileSystem, block_frames: int) -> Iterator[tuple[np.ndarray, int]]:
    import av

    with fs.open_input_file(path) as f, av.open(f, mode="r") as container:
        stream = container.streams.audio[0]
        pending: list[np.ndarray] = []
        n = 0
        rate = None
        for frame in container.decode(stream):
            x = frame.to_ndarray()  # (channels, n) planar, or (1, n * channels) packed
            if not frame.format.is_planar:
                x = x.reshape(-1, len(frame.layout.channels)).T
            if x.dtype.kind == "i":
                x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
            rate = frame.sample_rate
            pending.append(x.astype(np.float32).mean(axis=0))
            n += pending[-1].shape[0]
            if n >= block_frames:
                yield np.concatenate(pending), rate
                pending, n = [], 0
        if pending:
            yield np.concatenate(pending), rate


def decode_stream(source: SourceInfo, target_rate: int = 16000, block_s: float = 30.0) -> Iterator[np.ndarray]:
    """Yield consecutive mono float32 blocks at `target_rate` (soxr streaming resampler); memory stays flat."""
    import soxr

    fs, path = filesystem_for(source.uri)
    reader = _soundfile_blocks if source.decoder == "soundfile" else _pyav_blocks
    resampler = None
    rate_seen = None
    n_in = n_bad = 0
    try:
        for x, rate in reader(path, fs, int(block_s * source.native_rate)):
            bad = ~np.isfinite(x)
            n_in, n_bad = n_in + x.size, n_bad + int(bad.sum())
            if n_bad:  # before resampling: one NaN would smear over the filter's length
                x = np.where(bad, np.float32(0), x)
            if rate != target_rate:
                if resampler is None or rate != rate_seen:
                    resampler, rate_seen = soxr.ResampleStream(rate, target_rate, 1, dtype="float32"), rate
                x = resampler.resample_chunk(x, last=False)
            if x.size:
                yield np.clip(np.nan_to_num(x), -1.0, 1.0).astype(np.float32)
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                yield tail.astype(np.float32)
        if n_in and n_bad == n_in:
            raise IngestError("NonFiniteSamples", f"all {n_in} samples are NaN or Inf (no audio)")
    except IngestError:
        raise
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt stream mid-file
        raise IngestError("DecodeError", f"decoding failed: {type(e).__name__}: {e}") from e


def read_segment_audio(uri: str, start_sample: int, end_sample: int, target_rate: int = 16000) -> np.ndarray:
    """Decode [start_sample, end_sample) of a source at `target_rate` (for tools and tests; streams the file)."""
    src = probe(uri, max_bytes=1 << 62)
    out, pos = [], 0
    for block in decode_stream(src, target_rate):
        lo, hi = max(start_sample - pos, 0), min(end_sample - pos, block.shape[0])
        if hi > lo:
            out.append(block[lo:hi])
        pos += block.shape[0]
        if pos >= end_sample:
            break
    return np.concatenate(out) if out else np.zeros(0, np.float32)
