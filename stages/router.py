"""Router: branch labels from the segment's speech / music / other shares (multi-label)."""

from __future__ import annotations

import numpy as np

from schemas.config import JobConfig, RouterConfig
from stages.rows import add_stats, segment_of, timed, to_batch, to_rows


def routes_for(speech: float, music: float, other: float, cfg: RouterConfig) -> list[str]:
    """Every branch whose share passes its threshold; an audible segment always gets at least one."""
    routes = []
    if speech >= cfg.speech_threshold:
        routes.append("speech")
    if music >= cfg.music_threshold:
        routes.append("music")
    if other >= cfg.general_threshold:
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
                seg.routes = routes_for(seg.speech_share, seg.music_share, seg.other_share, self.cfg)
                r["payload"] = seg.model_dump_json()
            add_stats(r, "route", t())
        return to_batch(rows)
