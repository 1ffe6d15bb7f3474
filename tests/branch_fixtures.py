"""Minimal SegmentAnnotations for testing a branch annotator on its own."""

from __future__ import annotations

from schemas.annotation import SegmentAnnotation


def make_segment(routes: list[str], sample_rate: int = 16000, **kw) -> SegmentAnnotation:
    """A 1 s segment routed to `routes` (each routed branch's share is 1); `kw` overrides any field."""
    base = dict(key="k", source_uri="mem://x", source_sha256="0" * 64, sample_rate=sample_rate, start_sample=0,
                end_sample=sample_rate, start_s=0.0, end_s=1.0, duration_s=1.0, cut_reasons=["pause", "pause"],
                routes=routes, speech_share=float("speech" in routes), music_share=float("music" in routes),
                general_share=float("general" in routes), config_hash="h")
    base.update(kw)
    return SegmentAnnotation(**base)
