"""Committed cut lists: a source is cut once, and every later run (a resume, a repair, another machine) reuses
those cuts instead of choosing them again from model scores that differ from one CPU to another.

    OUT/cuts/<source sha256>-<segmentation hash>.json
        {"source_sha256", "segmentation_hash", "complete": bool, "cuts": [[start, end, start_reason, end_reason]]}

The list grows as the source is segmented and is rewritten (atomically) before any segment it names leaves the
segmenter, so every key a shard commits has its cut on disk first. `complete` is set once the source is fully
segmented. On a later run a complete list is replayed as is (`segments_at`); a partial one (the job was killed
mid-source) is replayed up to its last cut and the rest of the source is segmented afresh from there, and
committed the same way. Ray-free: the segmenter stage wraps its core with `CommittedCuts`.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow.fs as pafs

from annotators.segmentation.planned import Cut, SampleReader, segments_at
from annotators.segmentation.segmenter import EventSegmenterCore, SourceSegment
from pipeline.sources import filesystem_for
from schemas.errors import OutputFailed

log = logging.getLogger(__name__)

CUTS_DIR = "cuts"


@dataclass
class CutList:
    source_sha256: str
    segmentation_hash: str
    cuts: list[Cut] = field(default_factory=list)
    complete: bool = False

    def to_json(self) -> str:
        return json.dumps({"source_sha256": self.source_sha256, "segmentation_hash": self.segmentation_hash,
                           "complete": self.complete, "cuts": [c.to_json() for c in self.cuts]})

    @classmethod
    def from_json(cls, text: str | bytes) -> CutList:
        d = json.loads(text)
        return cls(d["source_sha256"], d["segmentation_hash"], [Cut.from_json(c) for c in d["cuts"]],
                   bool(d["complete"]))


class CutListWriteError(OutputFailed):
    """The cut list could not be committed (a full disk, a lost store): the job stops, no source is blamed."""


class CutListStore:
    """Reads and writes the cut lists of one output (any `pyarrow.fs` filesystem)."""

    def __init__(self, output: str):
        self.fs, root = filesystem_for(output.rstrip("/"))
        self.dir = f"{root}/{CUTS_DIR}"

    def path(self, sha256: str, seg_hash: str) -> str:
        return f"{self.dir}/{sha256}-{seg_hash}.json"

    def load(self, sha256: str, seg_hash: str) -> CutList | None:
        try:
            with self.fs.open_input_stream(self.path(sha256, seg_hash)) as f:
                return CutList.from_json(f.read())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, IndexError) as e:  # damaged: nothing of it can be trusted
            log.warning("cut list of %s is unreadable (%s): the source is segmented again", sha256[:12], e)
            return None

    def save(self, cl: CutList) -> None:
        """Whole or nothing: a temporary file renamed locally, one upload on an object store."""
        path, data = self.path(cl.source_sha256, cl.segmentation_hash), cl.to_json().encode()
        try:
            if not isinstance(self.fs, pafs.LocalFileSystem):
                with self.fs.open_output_stream(path) as f:
                    f.write(data)
                return
            os.makedirs(self.dir, exist_ok=True)
            tmp = f"{self.dir}/.tmp-{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as e:
            raise CutListWriteError(e.errno, f"cannot commit the cut list {path}: {e.strerror or e}") from e


class CommittedCuts:
    """Segments a source through `core`, committing its cuts before its segments are handed on."""

    def __init__(self, core: EventSegmenterCore, store: CutListStore, seg_hash: str, commit_every: int = 16):
        self.core = core
        self.store = store
        self.seg_hash = seg_hash
        self.commit_every = commit_every
        self.reused = 0  # cuts replayed from a committed list, over this object's life (for the report)

    def segments(self, sha256: str, blocks: Iterable[np.ndarray]) -> Iterator[SourceSegment]:
        prior = self.store.load(sha256, self.seg_hash)
        if prior is not None and prior.complete:
            self.reused += len(prior.cuts)
            yield from segments_at(self.core, SampleReader(blocks), prior.cuts)
            return
        cl = prior or CutList(sha256, self.seg_hash)
        reader = SampleReader(blocks)
        if cl.cuts:
            self.reused += len(cl.cuts)
            yield from segments_at(self.core, reader, cl.cuts)
            reader.read(reader.pos, cl.cuts[-1].end)  # the fresh part starts after the last committed cut
        yield from self._fresh(cl, reader)

    def _fresh(self, cl: CutList, reader: SampleReader) -> Iterator[SourceSegment]:
        offset = reader.pos
        held: list[SourceSegment] = []
        try:
            for s in self.core.segments(reader.rest()):
                s = replace(s, start_sample=s.start_sample + offset, end_sample=s.end_sample + offset)
                cl.cuts.append(Cut(int(s.start_sample), int(s.end_sample), *s.cut_reasons))
                held.append(s)
                if len(held) >= self.commit_every:
                    self.store.save(cl)
                    yield from held
                    held = []
        except Exception:  # a decode error mid-source: what came before it still counts, then the error
            self.store.save(cl)
            yield from held
            raise
        cl.complete = True
        self.store.save(cl)
        yield from held
