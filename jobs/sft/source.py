"""Reading an annotate output: its manifest (which segments exist, in which committed shard), the shard JSON
(the full `SegmentAnnotation`: words, turns, beats, events), a named caption table, and segment audio.

Nothing here runs an annotator or decodes audio except `AudioReader` (for `--embed-audio` and moss-jsonl).
All access goes through `pyarrow.fs`, so an annotate output on S3 reads like a local one.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import OrderedDict
from dataclasses import dataclass

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.sources import filesystem_for
from schemas.annotation import SegmentAnnotation
from schemas.compat import read_annotation


@dataclass(frozen=True)
class SegmentRef:
    """Where one segment of one annotate output lives; sorts by (output, shard, key)."""

    output_index: int
    shard: str  # "shard-NNNNNN.tar"
    key: str


class AnnotateOutput:
    """One annotate output directory (or URI), read-only."""

    def __init__(self, uri: str, index: int):
        self.uri = uri.rstrip("/")
        self.index = index
        self.fs, self.root = filesystem_for(self.uri)
        self.ref_root = self.root if isinstance(self.fs, pafs.LocalFileSystem) else self.uri  # what audio_ref names
        if self.fs.get_file_info(self.root).type != pafs.FileType.Directory:
            raise FileNotFoundError(f"no annotate output at {uri}")

    def committed(self) -> dict[str, list[str]]:
        """{shard tar name: keys} of every shard whose tar and sidecar are both in place."""
        sel = pafs.FileSelector(f"{self.root}/shards", allow_not_found=True)
        names = {fi.base_name for fi in self.fs.get_file_info(sel) if fi.type == pafs.FileType.File}
        out = {}
        for name in sorted(names):
            if name.endswith(".keys.json") and name.replace(".keys.json", ".tar") in names:
                with self.fs.open_input_stream(f"{self.root}/shards/{name}") as f:
                    out[name.replace(".keys.json", ".tar")] = json.loads(f.read())["keys"]
        return out

    def segments(self) -> tuple[list[SegmentRef], dict[str, int]]:
        """Segments listed in the manifest whose shard is committed; and counts of rows that are not usable."""
        committed = self.committed()
        problems: dict[str, int] = {}
        sel = pafs.FileSelector(f"{self.root}/manifest", allow_not_found=True)
        parts = sorted(fi.path for fi in self.fs.get_file_info(sel)
                       if fi.type == pafs.FileType.File and fi.base_name.endswith(".parquet")
                       and not fi.base_name.startswith("."))
        keysets = {shard: set(keys) for shard, keys in committed.items()}
        refs = []
        for part in parts:
            table = pq.read_table(part, columns=["key", "shard"], filesystem=self.fs)
            for key, shard in zip(table.column("key").to_pylist(), table.column("shard").to_pylist(), strict=True):
                if key in keysets.get(shard, ()):
                    refs.append(SegmentRef(self.index, shard, key))
                else:
                    problems["manifest_row_without_committed_shard"] = problems.get(
                        "manifest_row_without_committed_shard", 0) + 1
        return sorted(set(refs), key=lambda r: (r.output_index, r.shard, r.key)), problems

    def read_annotations(self, shard: str) -> dict[str, SegmentAnnotation | Exception]:
        """{key: SegmentAnnotation} from the shard's `<key>.json` members (a member that does not validate maps
        to its exception, so the caller can count it)."""
        out: dict[str, SegmentAnnotation | Exception] = {}
        with self.fs.open_input_file(f"{self.root}/shards/{shard}") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for m in tar:
                if not m.isfile() or not m.name.endswith(".json"):
                    continue
                key = m.name[: -len(".json")]
                try:
                    out[key] = read_annotation(tar.extractfile(m).read())
                except Exception as e:  # noqa: BLE001 - a bad member is counted, not fatal
                    out[key] = e
        return out

    def caption_table(self, name: str) -> dict[str, dict]:
        """{key: {caption, short_caption?}} of `recaption`'s named table (OUT/captions/NAME/*.parquet)."""
        sel = pafs.FileSelector(f"{self.root}/captions/{name}", allow_not_found=True)
        out: dict[str, dict] = {}
        for fi in sorted(self.fs.get_file_info(sel), key=lambda fi: fi.path):
            if fi.type == pafs.FileType.File and fi.base_name.endswith(".parquet") and not fi.base_name.startswith("."):
                for row in pq.read_table(fi.path, filesystem=self.fs).to_pylist():
                    out[row["key"]] = {"caption": row.get("caption") or "", "short_caption": row.get("short_caption")}
        if not out:
            raise FileNotFoundError(f"no caption table {name!r} under {self.uri}/captions/{name}")
        return out


class AudioReader:
    """`<key>.flac` bytes from annotate shards, with each tar's member index kept (a few tars at a time)."""

    def __init__(self, outputs: list[AnnotateOutput], keep: int = 4):
        self.outputs = outputs
        self.keep = keep
        self._open: OrderedDict[tuple[int, str], tuple[object, dict[str, tarfile.TarInfo]]] = OrderedDict()

    def flac(self, ref: SegmentRef) -> bytes:
        ident = (ref.output_index, ref.shard)
        if ident not in self._open:
            out = self.outputs[ref.output_index]
            f = out.fs.open_input_file(f"{out.root}/shards/{ref.shard}")
            tar = tarfile.open(fileobj=f, mode="r:")
            self._open[ident] = (f, {m.name: m for m in tar.getmembers()})
            if len(self._open) > self.keep:
                old, _ = self._open.popitem(last=False)[1]
                old.close()
        self._open.move_to_end(ident)
        f, members = self._open[ident]
        m = members.get(f"{ref.key}.flac")
        if m is None:
            raise KeyError(f"{ref.key}.flac not in {ref.shard}")
        f.seek(m.offset_data)
        return f.read(m.size)

    def close(self) -> None:
        for f, _ in self._open.values():
            f.close()
        self._open.clear()


def wav16k(flac: bytes) -> bytes:
    """FLAC bytes -> 16 kHz mono 16-bit PCM WAV bytes (lossless for the annotate job's 16 kHz PCM_16 FLAC)."""
    import numpy as np
    import soundfile as sf

    data, sr = sf.read(io.BytesIO(flac), dtype="float32", always_2d=True)
    x = data.mean(axis=1)
    if sr != 16000:
        import soxr

        x = soxr.resample(x, sr, 16000)
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()
