"""The test mixtures: known events laid out with known gaps (and overlaps of classes), built once."""

from __future__ import annotations

import numpy as np

from tests import synth as S
from tests.synth import Event


def _split_music(events: list[Event], each_s: float) -> list[Event]:
    """A chord progression is a sequence of chord events (a cut may fall between chords, never inside)."""
    out = []
    for e in events:
        if e.kind == "music":
            n = int(round((e.end_s - e.start_s) / each_s))
            out += [Event("chord", e.start_s + k * each_s, e.start_s + (k + 1) * each_s) for k in range(n)]
        else:
            out.append(e)
    return out


def mixed(noise_floor: float = 0.0) -> tuple[np.ndarray, list[Event]]:
    """Speech, chords, noise bursts, clicks and a 36 s chord progression (longer than max_segment_s)."""
    parts = [
        ("speech", S.tts(S.SENTENCES[0]), 0.25, S.SENTENCES[0]),
        ("speech", S.tts(S.SENTENCES[1], voice="en-gb"), 1.6, S.SENTENCES[1]),
        ("music", S.chords(S.C_MAJOR * 2, 1.0), 0.3, ""),
        ("noise", S.noise_burst(1.0), 2.0, ""),
        ("clicks", S.clicks(120, 6), 0.4, ""),
        ("speech", S.tts(S.SENTENCES[2]), 0.15, S.SENTENCES[2]),
        ("speech", S.tts(S.SENTENCES[3]), 0.6, S.SENTENCES[3]),
        ("noise", S.noise_burst(0.5, seed=3), 3.0, ""),
        ("music", S.chords(S.A_MINOR * 9, 1.0), 0.5, ""),
    ]
    x, events = S.layout(parts, noise_floor=noise_floor)
    return x, _split_music(events, 1.0)


def monologue(n: int = 12) -> tuple[np.ndarray, list[Event]]:
    """Sentences separated by short pauses (0.2-0.5 s), about 40 s in all: must be cut, only between sentences."""
    rng = np.random.default_rng(0)
    parts = [("speech", S.tts(S.SENTENCES[i % len(S.SENTENCES)], speed=150 + 10 * (i % 3)),
              float(rng.uniform(0.2, 0.5)), S.SENTENCES[i % len(S.SENTENCES)]) for i in range(n)]
    return S.layout(parts)
