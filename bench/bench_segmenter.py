"""Segmenter throughput: the EventSegmenter's evidence and cut choice vs. its models called alone.

Prints audio-seconds per second for (a) Silero VAD + YAMNet alone over the same audio and (b) the whole
segmenter (evidence + novelty + cuts), and their ratio: the segmentation logic's overhead over its models.
"""

from __future__ import annotations

import time

import numpy as np

from annotators.common.vad import SileroVad
from annotators.common.yamnet import YamNet
from annotators.segmentation import EventSegmenterCore, EvidenceModels
from schemas.config import SegmenterConfig
from tests import mixtures as M


def main() -> None:
    x, _ = M.mixed()
    x = np.tile(x, 4)  # ~5 min
    dur = len(x) / 16000
    vad, yam = SileroVad(), YamNet()
    yam.scores(x[:16000 * 5])  # warm up
    t = time.perf_counter()
    vad.speech_prob(x)
    yam.scores(x)
    models_s = time.perf_counter() - t
    core = EventSegmenterCore(SegmenterConfig(), EvidenceModels(vad, yam))
    t = time.perf_counter()
    n = sum(1 for _ in core.segments(iter([x])))
    seg_s = time.perf_counter() - t
    print(f"audio {dur:.0f} s -> {n} segments")
    print(f"models alone (VAD + YAMNet): {dur / models_s:7.1f} audio-s/s")
    print(f"EventSegmenter (all of it):  {dur / seg_s:7.1f} audio-s/s")
    print(f"ratio segmenter/models time: {seg_s / models_s:.2f}x")


if __name__ == "__main__":
    main()
