"""The deterministic template merger: the embedded default for unified captions (no model needed)."""

from __future__ import annotations

from schemas.annotation import SegmentAnnotation

_KIND = {"speech": "speech", "music": "music", "general": "other sounds"}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


class TemplateCaptionMerger:
    name = "template"
    version = "1"

    def merge(self, seg: SegmentAnnotation) -> str:
        kinds = [_KIND[r] for r in seg.routes] or ["sound"]
        parts = [f"A {seg.duration_s:.1f}-second recording of {_join(kinds)}."]
        branch = [c.strip() for c in (seg.speech_caption, seg.music_caption, seg.sound_caption) if c and c.strip()]
        parts += [c if c.endswith(".") else c + "." for c in branch]
        if not branch:
            heard = [t.label for t in seg.top_classes if t.label != "Silence"][:3]
            if heard:
                parts.append(f"Sound classes heard: {_join(heard)}.")
        return " ".join(parts)
