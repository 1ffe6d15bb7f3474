"""The row layout every stage reads and writes, and helpers to move between Ray batches and Python objects.

One flat layout for all stages keeps blocks concatenable whatever mix of rows they hold:
    key       str    segment key ("" for sources and quarantine rows)
    kind      str    "source_ref" | "source" | "segment" | "quarantine"
    payload   str    JSON: {"uri","size_bytes"} | SourceInfo | SegmentAnnotation | QuarantineRecord
    audio     bytes  float32 little-endian samples of a segment (b"" otherwise)
    evidence  bytes  npz of the segmenter's YAMNet/VAD frames over the segment (b"" otherwise)
    stats     str    JSON {stage: {"rows": n, "seconds": s}} accumulated on the way
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np

from annotators.base import SegmentEvidence
from pipeline.redact import redact_text
from schemas.annotation import QuarantineRecord, SegmentAnnotation

COLUMNS = ("key", "kind", "payload", "audio", "evidence", "stats")


def to_rows(batch: dict[str, np.ndarray]) -> list[dict]:
    if "kind" not in batch:  # an empty block has no columns (e.g. every segment of a source was committed)
        return []
    n = len(batch["kind"])
    return [{c: batch[c][i] for c in COLUMNS} for i in range(n)]


def to_batch(rows: Iterable[dict]) -> dict[str, np.ndarray]:
    rows = list(rows)
    return {c: np.array([r[c] for r in rows], dtype=object) for c in COLUMNS}


def row(kind: str, payload: str, key: str = "", audio: bytes = b"", evidence: bytes = b"",
        stats: str = "{}") -> dict:
    return {"key": key, "kind": kind, "payload": payload, "audio": audio, "evidence": evidence, "stats": stats}


def quarantine(uri: str, stage: str, error: str, message: str, sha256: str | None = None,
               key: str | None = None, stats: str = "{}") -> dict:
    rec = QuarantineRecord(source_uri=uri, stage=stage, error=error, message=redact_text(message)[:2000], source_sha256=sha256,
                           key=key, time=datetime.now(UTC).isoformat(timespec="seconds"))
    return row("quarantine", rec.model_dump_json(), key=key or "", stats=stats)


def segment_of(r: dict) -> SegmentAnnotation:
    return SegmentAnnotation.model_validate_json(r["payload"])


def audio_of(r: dict) -> np.ndarray:
    return np.frombuffer(r["audio"], dtype="<f4")


def audio_bytes(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


def evidence_bytes(ev: SegmentEvidence) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, yamnet_hop_s=ev.yamnet_hop_s, yamnet_window_s=ev.yamnet_window_s,
             yamnet_scores=ev.yamnet_scores.astype(np.float16), vad_hop_s=ev.vad_hop_s,
             vad_prob=ev.vad_prob.astype(np.float16))
    return buf.getvalue()


def evidence_of(r: dict) -> SegmentEvidence | None:
    if not r["evidence"]:
        return None
    z = np.load(io.BytesIO(r["evidence"]))
    return SegmentEvidence(float(z["yamnet_hop_s"]), float(z["yamnet_window_s"]),
                           z["yamnet_scores"].astype(np.float32), float(z["vad_hop_s"]),
                           z["vad_prob"].astype(np.float32))


def merge_stats(into: dict, other: dict) -> dict:
    """Add per-stage {"rows", "seconds"} counts of `other` into `into` (returned)."""
    for stage, s in other.items():
        cur = into.setdefault(stage, {"rows": 0, "seconds": 0.0})
        cur["rows"] += s["rows"]
        cur["seconds"] += s["seconds"]
    return into


def add_stats(r: dict, stage: str, seconds: float, rows: int = 1) -> None:
    r["stats"] = json.dumps(merge_stats(json.loads(r["stats"] or "{}"), {stage: {"rows": rows, "seconds": seconds}}))


@contextmanager
def timed():
    """`with timed() as t: ...; t()` gives the seconds spent so far."""
    t0 = time.perf_counter()
    yield lambda: time.perf_counter() - t0
