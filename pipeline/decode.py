"""Hash, probe and decode one source to mono float32 at 16 kHz, streaming (no Ray here).

Everything goes through `pyarrow.fs` (see pipeline/sources.py), so local paths and `s3://` URIs share one
code path. Decoding is streamed in blocks: a 2-hour file never becomes one 2-hour array.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.fs as pafs

from pipeline.sources import filesystem_for
from schemas.errors import QuarantineError


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


# ------------------------------------------------------------------ probing
def sha256_of(uri: str, block: int = 8 << 20) -> str:
    fs, path = filesystem_for(uri)
    h = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _plain(e: Exception) -> str:
    """A decoder's error without the repr of the file object it was handed (pyarrow's NativeFile) or PyAV's
    placeholder name: "Error opening the file: Format not recognised." """
    msg = re.sub(r"<pyarrow\.\w+[^>]*>", "the file", str(e))
    return re.sub(r"(: )?'<none>'$", "", msg).strip()


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
        errors.append(f"soundfile: {_plain(e)}")
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
        errors.append(f"pyav: {_plain(e)}")
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
