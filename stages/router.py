"""Router: branch labels from the segment's speech / music / other shares (multi-label)."""

from __future__ import annotations

import numpy as np

from schemas.annotation import Tag
from schemas.config import JobConfig, RouterConfig
from stages.rows import add_stats, segment_of, timed, to_batch, to_rows


def _sound_class_names() -> frozenset[str]:
    """Display names of the classes that are sounds for the general branch (not speech, music, silence, rooms)."""
    from annotators.general.annotator import SCENE_ONLY_INDICES
    from annotators.general.yamnet import MUSIC_INDICES, N_CLASSES, SILENCE_INDEX, SPEECH_INDICES, class_names

    skip = {SILENCE_INDEX, *SPEECH_INDICES, *MUSIC_INDICES, *SCENE_ONLY_INDICES}
    names = class_names()
    return frozenset(names[i] for i in range(N_CLASSES) if i not in skip)


_SOUND_CLASSES: frozenset[str] | None = None


def strong_sound_class(top_classes: list[Tag], min_score: float) -> bool:
    """Whether a top class of the segment that belongs to the general branch averages `min_score` or more."""
    global _SOUND_CLASSES
    if min_score >= 1.0 or not top_classes:
        return False
    if _SOUND_CLASSES is None:
        _SOUND_CLASSES = _sound_class_names()
    return any(t.label in _SOUND_CLASSES and t.score >= min_score for t in top_classes)


def routes_for(speech: float, music: float, other: float, cfg: RouterConfig,
               top_classes: list[Tag] | None = None) -> list[str]:
    """Every branch whose share passes its threshold; an audible segment always gets at least one.

    The shares count frames by their dominant kind, so a sound under speech or music (laughter, a bell) never
    wins a frame: a strong sound class among the segment's top classes routes it to `general` as well."""
    routes = []
    if speech >= cfg.speech_threshold:
        routes.append("speech")
    if music >= cfg.music_threshold:
        routes.append("music")
    if other >= cfg.general_threshold or strong_sound_class(top_classes or [], cfg.general_class_score):
        routes.append("general")
    if not routes:
        shares = {"speech": speech, "music": music, "general": other}
        best = max(shares, key=shares.get)
        routes.append(best if shares[best] > 0 else "general")
    return routes


class Router:
    """Task stage: fills `routes` of every segment row."""

    def __init__(self, cfg: JobConfig):
        self.cfg = cfg.router

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = to_rows(batch)
        for r in rows:
            if r["kind"] != "segment":
                continue
            with timed() as t:
                seg = segment_of(r)
                seg.routes = routes_for(seg.speech_share, seg.music_share, seg.other_share, self.cfg,
                                        seg.top_classes)
                r["payload"] = seg.model_dump_json()
            add_stats(r, "route", t())
        return to_batch(rows)
