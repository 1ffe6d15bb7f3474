"""Segments at given cut positions: the evidence is computed again over the audio, the cuts are not chosen again.

A source whose cut list is already committed (see `pipeline/cutlist.py`) is cut exactly where it was cut the
first time, whatever the models score on this machine: same cuts, same keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from annotators.segmentation.cuts import levels
from annotators.segmentation.evidence import compute_evidence
from annotators.segmentation.segmenter import EventSegmenterCore, SourceSegment


@dataclass(frozen=True)
class Cut:
    """One committed segment of a source, in samples (end exclusive), with why it was cut there."""

    start: int
    end: int
    start_reason: str = "committed"
    end_reason: str = "committed"

    def to_json(self) -> list:
        return [self.start, self.end, self.start_reason, self.end_reason]

    @classmethod
    def from_json(cls, v: list) -> Cut:
        return cls(int(v[0]), int(v[1]), str(v[2]), str(v[3]))


class SampleReader:
    """Reads a stream of decoded blocks by absolute sample position, holding at most one block back."""

    def __init__(self, blocks: Iterable[np.ndarray]):
        self._blocks = iter(blocks)
        self._held = np.zeros(0, np.float32)  # samples from `pos` on, already decoded
        self.pos = 0  # absolute sample of self._held[0]

    def read(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) (fewer if the stream ends first); everything before `a` is dropped. Needs a >= pos."""
        parts, want = [], b - a
        while want > 0:
            if self._held.shape[0] == 0:
                block = next(self._blocks, None)
                if block is None:
                    break
                self._held = block
                continue
            if self.pos < a:  # before the span: drop
                drop = min(a - self.pos, self._held.shape[0])
                self._held, self.pos = self._held[drop:], self.pos + drop
                continue
            take = self._held[:want]
            parts.append(take)
            self._held, self.pos, want = self._held[take.shape[0] :], self.pos + take.shape[0], want - take.shape[0]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def rest(self) -> Iterator[np.ndarray]:
        """The remaining blocks, from `pos` on."""
        if self._held.shape[0]:
            yield self._held
            self._held = np.zeros(0, np.float32)
        yield from self._blocks


def segments_at(core: EventSegmenterCore, reader: SampleReader, cuts: list[Cut]) -> Iterator[SourceSegment]:
    """Yield the segments `cuts` name, in order; the evidence is computed over runs of cuts one window long."""
    hop = int(round(core.cfg.hop_s * core.sr))
    i = 0
    while i < len(cuts):
        g0, j = cuts[i].start, i + 1
        while j < len(cuts) and cuts[j].end - g0 <= core.window:
            j += 1
        x = reader.read(g0, cuts[j - 1].end)
        if x.shape[0] == 0:
            return
        ev = compute_evidence(x, core.sr, core.cfg.hop_s, core.models)
        lv = levels(ev, core.cfg)
        for c in cuts[i:j]:
            a, b = c.start - g0, min(c.end - g0, x.shape[0])
            if b > a:
                yield core.finish_span(x, g0, a, b, [c.start_reason, c.end_reason], ev, lv, hop)
        i = j
