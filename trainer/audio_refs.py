"""Resolve an SFT sample's `audio_ref` ("<annotate output>/shards/<shard>.tar#<key>") to the segment's FLAC
bytes, read straight from the annotate shard (SFT shards reference audio instead of copying it). The
output is a local path or a URI `pyarrow.fs` opens (s3://...).

Each tar's member table is read once and kept (a bounded number of tars per process, least recently used
dropped); a lookup is then one seek and one read. A missing tar or member resolves to None (the caller counts it).
"""

from __future__ import annotations

import os
import tarfile
from collections import OrderedDict
from contextlib import contextmanager


def split_audio_ref(ref: str) -> tuple[str, str]:
    """"path/shard-000001.tar#KEY" -> ("path/shard-000001.tar", "KEY")."""
    path, sep, key = ref.rpartition("#")
    if not sep or not path or not key:
        raise ValueError(f"not an audio_ref (expected PATH.tar#KEY): {ref!r}")
    return path, key


@contextmanager
def _open(path: str):
    """A local path with open(); a URI (s3://...) through pyarrow.fs."""
    if "://" not in path:
        with open(path, "rb") as f:
            yield f
        return
    import pyarrow.fs as pafs

    fs, inner = pafs.FileSystem.from_uri(path)
    with fs.open_input_file(inner) as f:
        yield f


def _exists(path: str) -> bool:
    if "://" not in path:
        return os.path.exists(path)
    import pyarrow.fs as pafs

    try:
        fs, inner = pafs.FileSystem.from_uri(path)
        return fs.get_file_info(inner).type == pafs.FileType.File
    except (OSError, ValueError):
        return False


class AudioRefResolver:
    def __init__(self, keep: int = 64):
        self.keep = keep
        self._index: OrderedDict[str, dict[str, tuple[int, int]]] = OrderedDict()

    def _members(self, tar_path: str) -> dict[str, tuple[int, int]]:
        if tar_path in self._index:
            self._index.move_to_end(tar_path)
            return self._index[tar_path]
        with _open(tar_path) as f, tarfile.open(fileobj=f, mode="r:") as tar:
            index = {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}
        self._index[tar_path] = index
        if len(self._index) > self.keep:
            self._index.popitem(last=False)
        return index

    def flac(self, ref: str) -> bytes | None:
        try:
            tar_path, key = split_audio_ref(ref)
        except ValueError:
            return None
        if tar_path not in self._index and not _exists(tar_path):
            return None
        try:
            loc = self._members(tar_path).get(f"{key}.flac")
            if loc is None:
                return None
            with _open(tar_path) as f:
                f.seek(loc[0])
                return f.read(loc[1])
        except (OSError, tarfile.TarError):  # gone or truncated since it was indexed
            self._index.pop(tar_path, None)
            return None


RESOLVER = AudioRefResolver()  # one per process (each DataLoader worker has its own copy)
