"""The contract between the pipeline and a branch annotator. No Ray here.

A branch annotator loads its models once (constructor) and annotates a batch of segments:
`annotate(items) -> list[result]`, one result per item, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from schemas.annotation import ModelInfo, SegmentAnnotation


@dataclass
class SegmentEvidence:
    """What the segmenter already computed over a segment, passed along so no model runs twice.

    Times are relative to the segment start.
    """

    yamnet_hop_s: float  # 0.48
    yamnet_window_s: float  # 0.96; frame i covers [i*hop, i*hop + window)
    yamnet_scores: np.ndarray  # (T, 521) float32 AudioSet posteriors
    vad_hop_s: float
    vad_prob: np.ndarray  # (T2,) float32 speech probability per VAD frame


@dataclass
class BranchInput:
    audio: np.ndarray  # (n,) float32 mono in [-1, 1]
    sample_rate: int  # 16000
    segment: SegmentAnnotation  # routes, shares and the results of branches that ran before this one
    evidence: SegmentEvidence | None


class BranchAnnotator(Protocol):
    """What `stages/branches.py` expects of a speech, music or general-audio annotator."""

    def models(self) -> dict[str, ModelInfo]: ...

    def annotate(self, items: list[BranchInput]) -> list: ...
