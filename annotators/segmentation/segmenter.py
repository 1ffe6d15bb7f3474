"""EventSegmenterCore: stream a source's decoded blocks through windows and emit finished segments.

Memory stays flat: at most one window (`ingest.window_s`) plus a carried tail is held at a time. A window's
last `margin` seconds are not committed; they are segmented again with the next window's audio so a cut
near a window edge is chosen with context on both sides.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from annotators.base import SegmentEvidence
from annotators.common import yamnet as ym
from annotators.common.vad import FRAME as VAD_FRAME
from annotators.common.vad import HOP_S as VAD_HOP_S
from annotators.segmentation.cuts import Levels, Segment, choose_segments, levels
from annotators.segmentation.evidence import EvidenceModels, FrameEvidence, compute_evidence, yamnet_to_grid
from schemas.annotation import Tag
from schemas.config import SegmenterConfig


@dataclass
class SourceSegment:
    """One segment of a source: where it is, why it was cut there, its audio and the evidence over it."""

    start_sample: int
    end_sample: int
    cut_reasons: list[str]
    audio: np.ndarray  # (end - start,) float32
    speech_share: float
    music_share: float
    general_share: float
    top_classes: list[Tag]
    evidence: SegmentEvidence


class EventSegmenterCore:
    def __init__(self, cfg: SegmenterConfig, models: EvidenceModels, sample_rate: int = 16000,
                 window_s: float = 600.0):
        self.cfg = cfg
        self.models = models
        self.sr = sample_rate
        self.window = int(window_s * sample_rate)
        self.margin = int((cfg.max_segment_s + cfg.split_silence_s + 5.0) * sample_rate)
        self.labels = ym.class_names() if models.yamnet is not None else []

    def segments(self, blocks: Iterator[np.ndarray]) -> Iterator[SourceSegment]:
        """Consume decoded blocks (16 kHz mono float32) and yield segments in source order."""
        buf: list[np.ndarray] = []
        buf_len = 0
        buf_start = 0  # absolute sample of buf[0]
        carry_reason = "source_start"
        blocks = iter(blocks)
        final = False
        while not final:
            while buf_len < self.window:
                block = next(blocks, None)
                if block is None:
                    final = True
                    break
                buf.append(block)
                buf_len += block.shape[0]
            if buf_len == 0:
                return
            x = np.concatenate(buf)
            buf = []  # drop the blocks: only the window array stays alive
            ev = compute_evidence(x, self.sr, self.cfg.hop_s, self.models)
            segs = choose_segments(ev, self.cfg, at_source_end=final, start_reason=carry_reason)
            hop = int(round(self.cfg.hop_s * self.sr))
            lv = levels(ev, self.cfg)
            if final:
                commit = segs
            else:
                commit = [s for s in segs if s.end_frame * hop <= buf_len - self.margin]
            for s in commit:
                yield self._finish(x, buf_start, s, ev, lv, hop)
            if final:
                return
            if commit:
                keep_from = min(commit[-1].end_frame * hop, buf_len)
                carry_reason = commit[-1].end_reason
            else:
                pending = [s.start_frame * hop for s in segs]
                keep_from = min([buf_len - self.margin] + pending)
                carry_reason = "pause"
            tail = x[keep_from:].copy()  # a copy, so the window array itself can be freed
            del x
            buf, buf_len, buf_start = [tail], tail.shape[0], buf_start + keep_from

    def _finish(self, x: np.ndarray, buf_start: int, s: Segment, ev: FrameEvidence, lv: Levels,
                hop: int) -> SourceSegment:
        a, b = s.start_frame * hop, min(s.end_frame * hop, x.shape[0])
        fa, fb = s.start_frame, max(s.end_frame, s.start_frame + 1)
        active = ~lv.silent[fa:fb]
        if not active.any():
            active = np.ones(fb - fa, bool)
        vad = ev.vad[fa:fb]
        speechy = np.maximum(ev.speech[fa:fb], ev.singing[fa:fb])
        thr = self.cfg.vad_threshold
        is_speech = ((vad >= thr) & (speechy >= 0.1)) | (speechy >= 0.6)
        if self.models.yamnet is None:  # VAD is the only speech evidence
            is_speech = vad >= thr
        is_music = ev.music[fa:fb] >= 0.3
        is_other = (ev.other[fa:fb] >= 0.3) & ~is_speech & ~is_music
        if self.models.yamnet is None:
            is_other = ~is_speech
        share = lambda m: round(float(m[active].mean()), 4)  # noqa: E731

        start_s, dur_s = a / self.sr, (b - a) / self.sr
        if ev.yamnet_scores is not None:
            n_frames = max(1, 1 + int((dur_s - ym.WINDOW_S) // ym.HOP_S))
            centres = start_s + ym.WINDOW_S / 2 + ym.HOP_S * np.arange(n_frames)
            seg_scores = yamnet_to_grid(ev.yamnet_scores, centres).astype(np.float32)
            mean = seg_scores.mean(axis=0)
            top = [Tag(label=self.labels[i], score=round(float(mean[i]), 4))
                   for i in np.argsort(-mean)[:5] if mean[i] >= 0.05]
        else:
            seg_scores, top = np.zeros((0, ym.N_CLASSES), np.float32), []
        va, vb = a // VAD_FRAME, -(-b // VAD_FRAME)
        evidence = SegmentEvidence(ym.HOP_S, ym.WINDOW_S, seg_scores, VAD_HOP_S, ev.vad_raw[va:vb].copy())
        return SourceSegment(
            start_sample=buf_start + a, end_sample=buf_start + b, cut_reasons=[s.start_reason, s.end_reason],
            audio=x[a:b].copy(), speech_share=share(is_speech), music_share=share(is_music),
            general_share=share(is_other), top_classes=top, evidence=evidence,
        )
