"""Tempo from several onset features and a metrical-level choice. No Ray here.

One onset envelope and an autocorrelation peak under a tempo prior confuse the beat with other levels of the
metre: a shuffle's swung eighths or a 16th-note hi-hat pattern pull the estimate to 2/3 or 4/3 of the beat
(not an octave: no doubling or halving repairs it). Following the multi-feature idea (Zapata, Davies and
Gómez 2014, essentia's RhythmExtractor2013 "multifeature"; written here from the idea, not its code):

1. four onset features of the same STFT: log mel flux (all bands), low-band flux (kick, bass), high-band
   flux (hi-hats, shakers, slaps) and the rise of the frame energy;
2. each feature proposes a tempo (autocorrelation under the log-normal prior);
3. every proposal and its non-octave relatives (x 2/3, 3/2, 3/4, 4/3) is scored on all features at once:
   how far a comb at the beat period, on its best phase, stands above the envelope (z-score), plus the same at
   twice the period (the half bar), where a true beat also lines up;
4. the best-scoring candidate is the metrical level, unless it is within 10 % of the first proposal's score;
   octave choice stays with the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RELATIVES = (1.0, 2.0 / 3.0, 3.0 / 2.0, 3.0 / 4.0, 4.0 / 3.0)
KEEP_MARGIN = 0.1  # another metrical level must score this much (relative) over the first proposal


@dataclass
class OnsetFeatures:
    fps: float
    envs: dict[str, np.ndarray]  # name -> (F,) onset strength, frame 0 = time 0

    def combined(self) -> np.ndarray:
        """The z-normalised features summed (each weighs the same whatever its scale)."""
        return np.sum([_z(e) for e in self.envs.values()], axis=0)


def _z(x: np.ndarray) -> np.ndarray:
    s = float(x.std())
    return (x - x.mean()) / s if s > 1e-12 else np.zeros_like(x)


def _flux(db: np.ndarray) -> np.ndarray:
    """Half-wave rectified frame-to-frame rise of (bands, F) levels in dB, summed over bands; (F,)."""
    if db.ndim == 1:
        db = db[None, :]
    d = np.diff(db, axis=1, prepend=db[:, :1])
    return np.maximum(d, 0.0).sum(axis=0)


def onset_features(mel_db: np.ndarray, mel_freqs: np.ndarray, full_db: np.ndarray, fps: float,
                   mel_env: np.ndarray, low_hz: float = 200.0, high_hz: float = 2000.0) -> OnsetFeatures:
    """The four onset features from a (N_MELS, F) mel spectrogram in dB and the frame level (dB).

    `mel_env` is the existing all-band flux (librosa's onset strength, already aligned on the onsets); the
    band fluxes are delayed by the same alignment lag implicitly, as they are computed on the same frames.
    """
    low = mel_freqs <= low_hz
    high = mel_freqs >= high_hz
    envs = {"mel": mel_env}
    if low.any():
        envs["low"] = _flux(mel_db[low])
    if high.any():
        envs["high"] = _flux(mel_db[high])
    envs["energy"] = _flux(np.convolve(full_db, np.ones(3) / 3, mode="same"))
    n = min(e.size for e in envs.values())
    return OnsetFeatures(fps, {k: v[:n].astype(np.float64) for k, v in envs.items()})


def comb_contrast(env: np.ndarray, period: float) -> float:
    """How far a comb of `period` frames on its best phase stands above the envelope, in envelope std units.

    The comb takes the max within +-2 frames of each position; positions past the end are not counted."""
    if period < 2 or period >= env.size / 2:
        return 0.0
    z = _z(env)
    smooth = np.convolve(z, np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0, mode="same")
    best = -np.inf
    for ph in np.arange(0.0, period, 1.0):
        pos = np.round(np.arange(ph, z.size - 2, period)).astype(int)
        if pos.size < 2:
            continue
        idx = np.clip(pos[:, None] + np.arange(-2, 3)[None, :], 0, z.size - 1)
        best = max(best, float(0.5 * z[idx].max(axis=1).mean() + 0.5 * smooth[pos].mean()))
    return best if np.isfinite(best) else 0.0


def metrical_score(feats: OnsetFeatures, bpm: float) -> float:
    """Beat-level plus half-bar-level comb contrast of the tempo, summed over the features."""
    period = 60.0 * feats.fps / bpm
    return sum(comb_contrast(e, period) + 0.5 * comb_contrast(e, 2 * period) for e in feats.envs.values())


def choose_metrical_level(feats: OnsetFeatures, proposals: list[float], min_bpm: float,
                          max_bpm: float) -> tuple[float, dict[float, float]]:
    """The best of the proposals and their non-octave relatives (within [min_bpm/2, max_bpm*2]), and all scores."""
    cands: list[float] = []
    for t in proposals:
        for r in RELATIVES:
            c = t * r
            if min_bpm / 2 <= c <= max_bpm * 2 and all(abs(c / o - 1) > 0.03 for o in cands):
                cands.append(c)
    scores = {c: metrical_score(feats, c) for c in cands}
    best = max(scores, key=scores.get)
    # the first proposal (the all-band autocorrelation) stands unless another level scores clearly higher:
    # identical clicks score the same at every multiple of their period
    first = cands[0]
    if scores[best] <= scores[first] + KEEP_MARGIN * abs(scores[first]):
        best = first
    return best, scores
