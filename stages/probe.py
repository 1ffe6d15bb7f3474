"""ProbeSources: hash and probe each listed source; unusable ones become quarantine rows."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from schemas.config import JobConfig
from stages.ingest import IngestError, probe
from stages.rows import add_stats, quarantine, row, timed, to_batch, to_rows


class ProbeSources:
    """Task stage: source_ref rows -> source rows (SourceInfo) or quarantine rows."""

    def __init__(self, cfg: JobConfig):
        self.max_bytes = cfg.ingest.max_file_bytes

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for r in to_rows(batch):
            ref = json.loads(r["payload"])
            with timed() as t:
                try:
                    if ref.get("skip"):
                        raise IngestError("SkippedExtension", ref["skip"])
                    info = probe(ref["uri"], self.max_bytes)
                    new = row("source", json.dumps(dataclasses.asdict(info)))
                except IngestError as e:
                    new = quarantine(ref["uri"], "ingest", e.error, e.message)
                except Exception as e:  # noqa: BLE001 - bad input never crashes the job
                    new = quarantine(ref["uri"], "ingest", type(e).__name__, str(e))
            add_stats(new, "ingest", t())
            out.append(new)
        return to_batch(out)
