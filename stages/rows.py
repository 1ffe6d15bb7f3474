"""The row layout every stage reads and writes, and `Row`, its typed view. No stage handles columns by hand.

One flat layout for all stages keeps blocks concatenable whatever mix of rows they hold:
    key       str    segment key ("" for sources and quarantine rows)
    kind      str    a RowKind
    routes    str    the segment's branches, comma-separated ("" until the router ran; "" for other kinds):
                     a branch stage skips rows not routed to it without parsing their payload
    payload   str    JSON: {"uri","size_bytes"} | SourceInfo | SegmentAnnotation | QuarantineRecord
    audio     bytes  float32 little-endian samples of a segment (b"" otherwise)
    evidence  bytes  npz of the segmenter's YAMNet/VAD frames over the segment (b"" otherwise)
    stats     str    JSON {stage: {"rows": n, "seconds": s, "first_at"/"last_at": wall clock of its first/last output}}
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np

from annotators.base import SegmentEvidence
from pipeline.redact import redact_text
from schemas.annotation import QuarantineRecord, SegmentAnnotation
from schemas.errors import ErrorClass

COLUMNS = ("key", "kind", "routes", "payload", "audio", "evidence", "stats")

# How often a SegmentAnnotation payload was parsed / dumped in this process (what the stage protocol saves).
PAYLOAD_COUNTS: Counter = Counter()


class RowKind(StrEnum):
    SOURCE_REF = "source_ref"  # a listed URI, not yet opened
    SOURCE = "source"  # a probed source (SourceInfo)
    SEGMENT = "segment"  # one cut segment (SegmentAnnotation + audio + evidence)
    QUARANTINE = "quarantine"  # a QuarantineRecord on its way to the quarantine table
    SOURCE_DONE = "source_done"  # a source segmented to its end, with its segment count (pipeline/ledger.py)


class Row:
    """One row of a batch. The SegmentAnnotation of a segment row is parsed on first use and dumped once, by
    `to_dict`, only when it was parsed (a stage that never looks at it passes it on as it came)."""

    __slots__ = ("kind", "key", "routes", "payload", "audio", "evidence", "stats", "_segment")

    def __init__(self, kind: RowKind | str, payload: str, key: str = "", routes: str = "", audio: bytes = b"",
                 evidence: bytes = b"", stats: str = "{}", segment: SegmentAnnotation | None = None):
        self.kind = RowKind(kind)
        self.key, self.routes, self.payload = key, routes, payload
        self.audio, self.evidence, self.stats = audio, evidence, stats
        self._segment = segment

    # ---------------------------------------------------------------- typed views
    @property
    def segment(self) -> SegmentAnnotation:
        if self._segment is None:
            PAYLOAD_COUNTS["parse"] += 1
            self._segment = SegmentAnnotation.model_validate_json(self.payload)
        return self._segment

    @property
    def data(self) -> dict:
        """The JSON payload of a source_ref / source / quarantine row."""
        return json.loads(self.payload)

    @property
    def samples(self) -> np.ndarray:
        return samples_of(self.audio)

    @property
    def segment_evidence(self) -> SegmentEvidence | None:
        return evidence_of(self.evidence)

    def routed_to(self, branch: str) -> bool:
        return branch in self.routes.split(",")

    def lineage(self) -> tuple[str, str | None, str | None]:
        """(source URI, source sha256, segment key) of whatever this row is about."""
        if self.kind == RowKind.SEGMENT:
            s = self.segment
            return s.source_uri, s.source_sha256, s.key
        d = self.data
        return d.get("uri") or d.get("source_uri", ""), d.get("sha256") or d.get("source_sha256"), None

    # ---------------------------------------------------------------- batch columns
    @classmethod
    def from_batch(cls, batch: dict[str, np.ndarray], i: int) -> Row:
        return cls(batch["kind"][i], batch["payload"][i], batch["key"][i], batch["routes"][i], batch["audio"][i],
                   batch["evidence"][i], batch["stats"][i])

    def to_dict(self) -> dict:
        if self._segment is not None:
            PAYLOAD_COUNTS["dump"] += 1
            self.payload = self._segment.model_dump_json()
            self.routes = ",".join(self._segment.routes)
            self._segment = None
        return {"key": self.key, "kind": str(self.kind), "routes": self.routes, "payload": self.payload,
                "audio": self.audio, "evidence": self.evidence, "stats": self.stats}

    def add_stats(self, stage: str, seconds: float, rows: int = 1, carried: str | None = None) -> None:
        """This stage's time on the row (plus the `carried` stats of the row it came from)."""
        stats = json.loads(self.stats or "{}")
        if carried:
            merge_stats(stats, json.loads(carried))
        now = round(time.time(), 3)
        self.stats = json.dumps(merge_stats(stats, {stage: {"rows": rows, "seconds": seconds, "first_at": now,
                                                            "last_at": now}}))


def segment_row(seg: SegmentAnnotation, audio: np.ndarray, evidence: SegmentEvidence | None) -> Row:
    return Row(RowKind.SEGMENT, "", key=seg.key, audio=audio_bytes(audio),
               evidence=evidence_bytes(evidence) if evidence is not None else b"", segment=seg)


def quarantine_row(uri: str, stage: str, error: ErrorClass, message: str, sha256: str | None = None,
                   key: str | None = None) -> Row:
    rec = QuarantineRecord(source_uri=uri, stage=stage, error=str(ErrorClass(error)),
                           message=redact_text(message)[:2000], source_sha256=sha256, key=key,
                           time=datetime.now(UTC).isoformat(timespec="seconds"))
    return Row(RowKind.QUARANTINE, rec.model_dump_json(), key=key or "")


# -------------------------------------------------------------------- batches
def to_rows(batch: dict[str, np.ndarray]) -> list[dict]:
    """Plain dict rows of a batch (the writer's view)."""
    if "kind" not in batch:  # an empty block has no columns (e.g. every segment of a source was committed)
        return []
    n = len(batch["kind"])
    return [{c: batch[c][i] for c in COLUMNS} for i in range(n)]


def to_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    return {c: np.array([r[c] for r in rows], dtype=object) for c in COLUMNS}


def batch_len(batch: dict[str, np.ndarray]) -> int:
    return len(batch["kind"]) if "kind" in batch else 0


# -------------------------------------------------------------------- audio and evidence bytes
def samples_of(audio: bytes) -> np.ndarray:
    return np.frombuffer(audio, dtype="<f4")


def audio_of(r: dict) -> np.ndarray:
    """The samples of a plain dict row (the writer's view)."""
    return samples_of(r["audio"])


def audio_bytes(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


def evidence_bytes(ev: SegmentEvidence) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, yamnet_hop_s=ev.yamnet_hop_s, yamnet_window_s=ev.yamnet_window_s,
             yamnet_scores=ev.yamnet_scores.astype(np.float16), vad_hop_s=ev.vad_hop_s,
             vad_prob=ev.vad_prob.astype(np.float16))
    return buf.getvalue()


def evidence_of(evidence: bytes) -> SegmentEvidence | None:
    if not evidence:
        return None
    z = np.load(io.BytesIO(evidence))
    return SegmentEvidence(float(z["yamnet_hop_s"]), float(z["yamnet_window_s"]),
                           z["yamnet_scores"].astype(np.float32), float(z["vad_hop_s"]),
                           z["vad_prob"].astype(np.float32))


def merge_stats(into: dict, other: dict) -> dict:
    """Add per-stage {"rows", "seconds"} counts of `other` into `into` (returned); `first_at` and `last_at`
    (wall clock of the stage's first and last output row) keep the earliest and the latest."""
    for stage, s in other.items():
        cur = into.setdefault(stage, {"rows": 0, "seconds": 0.0})
        cur["rows"] += s["rows"]
        cur["seconds"] += s["seconds"]
        if s.get("first_at") is not None:
            cur["first_at"] = min(cur.get("first_at") or s["first_at"], s["first_at"])
        if s.get("last_at") is not None:
            cur["last_at"] = max(cur.get("last_at") or s["last_at"], s["last_at"])
    return into
