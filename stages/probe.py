"""ProbeSources: hash and probe each listed source; unusable ones become quarantine rows."""

from __future__ import annotations

import dataclasses
import json

import ray

from pipeline.decode import probe
from pipeline.ledger import ContentDigests
from schemas.config import JobConfig
from schemas.errors import ErrorClass, QuarantineError
from stages.base import RowStage
from stages.rows import Row, RowKind


@ray.remote(num_cpus=0)
class ContentRegistry:
    """Remembers which source first showed each content hash in this job: the same bytes are annotated once."""

    def __init__(self, earlier: ContentDigests | None = None):
        self.first: dict[str, str] = {}
        self.earlier = earlier  # sources an earlier run finished (skipped unread): their bytes are taken

    def claim(self, sha256: str, uri: str) -> str:
        """The URI that owns `sha256` (`uri` itself when it is the first)."""
        if self.earlier is not None and sha256 in self.earlier:
            return "a source an earlier run of this output annotated"
        return self.first.setdefault(sha256, uri)


class ProbeSources(RowStage):
    """source_ref rows -> source rows (SourceInfo) or quarantine rows.

    With a `registry`, a source whose bytes another source of the job already has becomes a DuplicateContent
    quarantine row naming that source (the same content would give the same segment keys twice).
    """

    name = "ingest"
    handles = frozenset({RowKind.SOURCE_REF})

    def __init__(self, cfg: JobConfig | dict, num_threads: int = 1, registry=None):
        super().__init__(cfg, num_threads)
        self.registry = registry

    def process(self, row: Row) -> Row:
        ref = row.data
        if ref.get("skip"):
            raise QuarantineError(ref.get("skip_error", ErrorClass.SKIPPED_EXTENSION), ref["skip"])
        info = probe(ref["uri"], self.cfg.ingest.max_file_bytes)
        owner = ray.get(self.registry.claim.remote(info.sha256, info.uri)) if self.registry else info.uri
        if owner != info.uri:
            raise QuarantineError(ErrorClass.DUPLICATE_CONTENT, f"same bytes (sha256 {info.sha256[:16]}...) as "
                                                                f"{owner}, which is annotated instead")
        return Row(RowKind.SOURCE, json.dumps(dataclasses.asdict(info) | _carried(ref)))


def _carried(ref: dict) -> dict:
    """What a source_ref hands on to the segmenter: the keys an earlier run committed for it (pipeline/ledger.py)."""
    return {"committed_keys": ref["committed_keys"]} if ref.get("committed_keys") else {}
