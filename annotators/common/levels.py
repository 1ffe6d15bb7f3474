"""Level measurements shared by the speech, music and general-audio branches. No Ray here."""

from __future__ import annotations

import numpy as np

_SILENCE_DB = -100.0


def loudness_lufs(audio: np.ndarray, sr: int) -> float | None:
    """Integrated loudness (ITU-R BS.1770-4, gated) in LUFS via pyloudnorm; the one definition behind every
    `loudness_lufs` field. None for silence and for audio shorter than one 0.4 s gating block: BS.1770 has no
    value there, and zero-padding to a block would read low by the padding's share."""
    import pyloudnorm

    x = np.asarray(audio, dtype=np.float64)
    if x.size < int(0.4 * sr) or not np.any(x):
        return None
    value = pyloudnorm.Meter(sr).integrated_loudness(x)
    return round(float(value), 2) if np.isfinite(value) else None


def frame_power(audio: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Mean-square power of frames of `frame` samples every `hop` samples (centred, zero-padded)."""
    x = np.asarray(audio, dtype=np.float64)
    pad = frame // 2
    x = np.pad(x, (pad, pad))
    n = 1 + max(0, (x.size - frame) // hop)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(n) * hop
    return (csum[starts + frame] - csum[starts]) / frame


def power_db(p: np.ndarray | float) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(p, 10 ** (_SILENCE_DB / 10)))


def dynamic_range_db(audio: np.ndarray, sr: int, frame_s: float = 0.4, hop_s: float = 0.1,
                     floor_db: float = -70.0) -> float | None:
    """Loudness range in dB: 95th minus 10th percentile of 0.4 s frame levels (frames above `floor_db`)."""
    p = power_db(frame_power(audio, int(frame_s * sr), int(hop_s * sr)))
    p = p[p > floor_db]
    if p.size < 3:
        return None
    return round(float(np.percentile(p, 95) - np.percentile(p, 10)), 2)


# An SNR is only measurable while the background is: digital silence has no level to compare against, and a
# background under 16-bit quantisation noise cannot be told from it. The background is floored at one 16-bit
# step (-90.3 dBFS mean square) and the ratio capped at MAX_SNR_DB: a reported 60 means "60 dB or more".
MAX_SNR_DB = 60.0
_BACKGROUND_FLOOR = (1.0 / 32768.0) ** 2


def snr_db(signal_power: float, background_power: float, max_db: float = MAX_SNR_DB) -> float:
    """10 log10(signal / background) with the background floored at a 16-bit step and the result capped."""
    ratio = max(float(signal_power), 1e-20) / max(float(background_power), _BACKGROUND_FLOOR)
    return round(float(min(10.0 * np.log10(ratio), max_db)), 2)
