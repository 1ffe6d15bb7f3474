"""Caption counts for report.json: segments by caption source, rejected LLM replies and fallbacks by reason."""

from __future__ import annotations

from collections import Counter

from schemas.annotation import SegmentAnnotation


def _code(rejection: str) -> str:
    return rejection.split(":", 1)[0]


def new_caption_counts() -> dict[str, Counter]:
    return {"by_source": Counter(), "rejections_by_reason": Counter(), "fallbacks_by_reason": Counter()}


def count_caption(counts: dict[str, Counter], seg: SegmentAnnotation) -> None:
    """Add one segment: its source, each rejected reply's reason, and (for a fallback) the last reason."""
    counts["by_source"][seg.caption_source or "none"] += 1
    counts["rejections_by_reason"].update(_code(r) for r in seg.caption_rejections)
    if seg.caption_source == "template_fallback":
        counts["fallbacks_by_reason"][_code(seg.caption_rejections[-1]) if seg.caption_rejections else "unknown"] += 1


def caption_report(results: list[dict]) -> dict[str, dict[str, int]]:
    """Sum the per-write-task counts (each result's "captions") into one report section."""
    total = new_caption_counts()
    for r in results:
        for k, v in r.get("captions", {}).items():
            total[k].update(v)
    return {k: dict(sorted(v.items())) for k, v in total.items()}
