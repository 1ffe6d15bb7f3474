"""Model scores as another machine might give them: small noise on every evidence curve of the segmenter.

`install()` wraps the segmenter's `compute_evidence`; `sitecustomize/` calls it in every process of a job
(Ray workers inherit PYTHONPATH) when EVENTCAP_TEST_PERTURB is set, so no production code knows about it.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def perturb(ev, rng: np.random.Generator, db: float = 2.0, prob: float = 0.08):
    """The same audio scored a little differently: energy +-`db`, VAD and class shares +-`prob`."""
    jitter = lambda a, s: (a + rng.uniform(-s, s, a.shape)).astype(np.float32)  # noqa: E731
    clip = lambda a: np.clip(jitter(a, prob), 0, 1).astype(np.float32)  # noqa: E731
    return dataclasses.replace(ev, energy_db=jitter(ev.energy_db, db), vad=clip(ev.vad), speech=clip(ev.speech),
                               singing=clip(ev.singing), music=clip(ev.music), other=clip(ev.other),
                               novelty=clip(ev.novelty))


def install(seed: int = 22) -> None:
    from annotators.segmentation import segmenter

    original = segmenter.compute_evidence
    rng = np.random.default_rng(seed)
    segmenter.compute_evidence = lambda *a, **k: perturb(original(*a, **k), rng)
