"""Router: branch labels from the segment's speech / music / general shares (multi-label)."""

from __future__ import annotations

from schemas.annotation import Tag
from schemas.config import RouterConfig
from stages.base import RowStage
from stages.rows import Row


def _general_class_names() -> frozenset[str]:
    """Display names of the classes that are sounds for the general branch (not speech, music, silence, rooms)."""
    from annotators.common.yamnet import MUSIC_INDICES, N_CLASSES, SILENCE_INDEX, SPEECH_INDICES, class_names
    from annotators.general.annotator import SCENE_ONLY_INDICES

    skip = {SILENCE_INDEX, *SPEECH_INDICES, *MUSIC_INDICES, *SCENE_ONLY_INDICES}
    names = class_names()
    return frozenset(names[i] for i in range(N_CLASSES) if i not in skip)


_GENERAL_CLASSES: frozenset[str] | None = None


def strong_general_class(top_classes: list[Tag], min_score: float) -> bool:
    """Whether a top class of the segment that belongs to the general branch averages `min_score` or more."""
    global _GENERAL_CLASSES
    if min_score >= 1.0 or not top_classes:
        return False
    if _GENERAL_CLASSES is None:
        _GENERAL_CLASSES = _general_class_names()
    return any(t.label in _GENERAL_CLASSES and t.score >= min_score for t in top_classes)


def routes_for(speech: float, music: float, general: float, cfg: RouterConfig,
               top_classes: list[Tag] | None = None) -> list[str]:
    """Every branch whose share passes its threshold; an audible segment always gets at least one.

    The shares count frames by their dominant kind, so a sound under speech or music (laughter, a bell) never
    wins a frame: a strong general-audio class among the segment's top classes routes it to `general` as well."""
    routes = []
    if speech >= cfg.speech_threshold:
        routes.append("speech")
    if music >= cfg.music_threshold:
        routes.append("music")
    if general >= cfg.general_threshold or strong_general_class(top_classes or [], cfg.general_class_score):
        routes.append("general")
    if not routes:
        shares = {"speech": speech, "music": music, "general": general}
        best = max(shares, key=shares.get)
        routes.append(best if shares[best] > 0 else "general")
    return routes


class Router(RowStage):
    """Fills `routes` of every segment row."""

    name = "route"
    after = ("segment",)

    def process(self, row: Row) -> Row:
        seg = row.segment
        seg.routes = routes_for(seg.speech_share, seg.music_share, seg.general_share, self.cfg.router, seg.top_classes)
        return row
