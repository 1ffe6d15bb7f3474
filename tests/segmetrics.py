"""Scoring segmentations against known events: event-cut rate, boundary error, length bounds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.synth import SR, Event


@dataclass
class SegScore:
    n_events: int
    events_cut: int  # events (no longer than max_segment_s) not wholly inside one segment
    boundary_error_s: float  # mean distance of segment edges to the nearest true event edge
    cuts_in_events: int  # segment edges strictly inside an event

    @property
    def event_cut_rate(self) -> float:
        return self.events_cut / max(1, self.n_events)


def score(segments: list[tuple[float, float]], events: list[Event], max_segment_s: float,
          tol: float = 0.0) -> SegScore:
    cut = inside = 0
    for e in events:
        if e.end_s - e.start_s > max_segment_s:
            continue
        if not any(s - tol <= e.start_s and e.end_s <= t + tol for s, t in segments):
            cut += 1
    edges_true = np.array([e.start_s for e in events] + [e.end_s for e in events])
    errs = []
    for s, t in segments:
        for x in (s, t):
            errs.append(float(np.min(np.abs(edges_true - x))))
            if any(e.start_s + tol < x < e.end_s - tol for e in events):
                inside += 1
    return SegScore(len([e for e in events if e.end_s - e.start_s <= max_segment_s]), cut,
                    float(np.mean(errs)) if errs else 0.0, inside)


def as_seconds(segs) -> list[tuple[float, float]]:
    return [(s.start_sample / SR, s.end_sample / SR) for s in segs]
