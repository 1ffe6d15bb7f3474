"""ProbeSources: hash and probe each listed source; unusable ones become quarantine rows."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import ray

from pipeline.decode import IngestError, probe
from pipeline.ledger import ContentDigests
from schemas.config import JobConfig
from stages.rows import add_stats, quarantine, row, timed, to_batch, to_rows


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


class ProbeSources:
    """Task stage: source_ref rows -> source rows (SourceInfo) or quarantine rows.

    With a `registry`, a source whose bytes another source of the job already has becomes a DuplicateContent
    quarantine row naming that source (the same content would give the same segment keys twice).
    """

    def __init__(self, cfg: JobConfig, registry=None):
        self.max_bytes = cfg.ingest.max_file_bytes
        self.registry = registry

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for r in to_rows(batch):
            ref = json.loads(r["payload"])
            with timed() as t:
                try:
                    if ref.get("skip"):
                        raise IngestError(ref.get("skip_error", "SkippedExtension"), ref["skip"])
                    info = probe(ref["uri"], self.max_bytes)
                    owner = ray.get(self.registry.claim.remote(info.sha256, info.uri)) if self.registry else info.uri
                    if owner != info.uri:
                        raise IngestError("DuplicateContent", f"same bytes (sha256 {info.sha256[:16]}...) as "
                                                              f"{owner}, which is annotated instead")
                    new = row("source", json.dumps(dataclasses.asdict(info) | _carried(ref)))
                except IngestError as e:
                    new = quarantine(ref["uri"], "ingest", e.error, e.message)
                except Exception as e:  # noqa: BLE001 - bad input never crashes the job
                    new = quarantine(ref["uri"], "ingest", type(e).__name__, str(e))
            add_stats(new, "ingest", t())
            out.append(new)
        return to_batch(out)


def _carried(ref: dict) -> dict:
    """What a source_ref hands on to the segmenter: the keys an earlier run committed for it (pipeline/ledger.py)."""
    return {"committed_keys": ref["committed_keys"]} if ref.get("committed_keys") else {}
