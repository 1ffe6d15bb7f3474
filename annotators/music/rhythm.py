"""Tempo, beats and a time-signature guess from an onset-strength envelope. No Ray here.

librosa's autocorrelation tempogram (log-normal prior around 120 BPM) proposes a tempo; a metrical-level
check then corrects octave errors: double the tempo when the off-beats halfway between the proposed beats
are nearly as strong as the beats (a fast pulse the prior halved), halve it when every other beat is much
weaker (a subdivision the prior took for the beat). Beats come from librosa's dynamic-programming tracker
at that tempo; the tempo is then refined from the tracked beats (sub-frame precision).
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from annotators.music.tempo import OnsetFeatures, choose_metrical_level


@dataclass
class Rhythm:
    tempo_bpm: float | None
    tempo_confidence: float | None
    beats_s: list[float]
    time_signature: str | None
    onset_density: float | None  # onsets per second


def _comb(env: np.ndarray, period: float, phase: float) -> float:
    """Mean onset strength at phase + k*period frames (max within +-2 frames of each position)."""
    pos = np.round(np.arange(phase, env.size, period)).astype(int)
    pos = pos[pos < env.size]
    if pos.size == 0:
        return 0.0
    idx = np.clip(pos[:, None] + np.arange(-2, 3)[None, :], 0, env.size - 1)
    return float(env[idx].max(axis=1).mean())


def _best_phase(env: np.ndarray, period: float) -> tuple[float, float]:
    """The phase (frames) whose comb of period `period` falls best on the envelope's peaks, and its strength.

    The phase is chosen on a smoothed envelope at the exact comb positions (the +-2-frame maximum of `_comb`
    makes five neighbouring phases tie, and the first of them sits at the edge of the peaks)."""
    smooth = np.convolve(env, np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0, mode="same")
    phases = np.arange(0.0, period, 1.0)
    scores = []
    for ph in phases:
        pos = np.round(np.arange(ph, smooth.size, period)).astype(int)
        pos = pos[pos < smooth.size]
        scores.append(float(smooth[pos].mean()) if pos.size else 0.0)
    phase = float(phases[int(np.argmax(scores))])
    return phase, _comb(env, period, phase)


def _offbeat_ratio(env: np.ndarray, period: float) -> float:
    """Strength of the positions halfway between the beats of the best `period` comb, relative to the beats
    (both above the envelope's mean): ~1 for an even pulse at period/2, ~0 when nothing falls between."""
    base = float(env.mean())
    phase, on = _best_phase(env, period)
    off = _comb(env, period, phase + period / 2)
    return (off - base) / max(on - base, 1e-9)


def _autocorr_at(env: np.ndarray, lag: float) -> float:
    """Normalised autocorrelation of the mean-removed envelope at `lag` frames (max over +-2 frames)."""
    x = env - env.mean()
    denom = float(np.dot(x, x))
    if denom <= 0:
        return 0.0
    best = 0.0
    for lg in range(max(1, int(round(lag)) - 2), int(round(lag)) + 3):
        if lg < x.size:
            best = max(best, float(np.dot(x[:-lg], x[lg:])) / denom)
    return best


def _global_tempo(env: np.ndarray, fps: float, prior_bpm: float, min_bpm: float, max_bpm: float,
                  std_octaves: float = 1.0) -> float:
    """librosa.feature.tempo's estimate (autocorrelation weighted by a log-normal prior around `prior_bpm`),
    from one autocorrelation of the whole envelope instead of a tempogram frame by frame (~20x cheaper)."""
    x = env - env.mean()
    n = x.size
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:n]
    ac /= np.maximum(n - np.arange(n), 1)  # unbiased: each lag averages over its overlap
    ac /= max(float(ac[0]), 1e-12)
    max_lag = min(n - 1, int(fps * 60.0 / min_bpm))
    lags = np.arange(1, max_lag + 1)
    bpms = 60.0 * fps / lags
    logprior = -0.5 * ((np.log2(bpms) - np.log2(prior_bpm)) / std_octaves) ** 2
    score = np.log1p(1e6 * np.maximum(ac[lags], 0)) + logprior
    score[bpms > max_bpm] = -np.inf
    k = int(np.argmax(score))
    lag = float(lags[k])
    if 0 < k < lags.size - 1 and np.isfinite(score[k - 1]) and np.isfinite(score[k + 1]):
        a, b, c = ac[lags[k] - 1], ac[lags[k]], ac[lags[k] + 1]  # parabolic peak interpolation
        denom = a - 2 * b + c
        if denom < 0:
            lag += float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
    return 60.0 * fps / lag


def _refine_tempo(beats: np.ndarray) -> float | None:
    """Tempo from the tracked beats: least-squares slope over the beats that keep the median spacing."""
    if beats.size < 4:
        return None
    ibi = np.diff(beats)
    med = float(np.median(ibi))
    if med <= 0:
        return None
    ok = np.abs(ibi - med) < 0.15 * med
    if ok.sum() >= 3 and ok.all():
        slope = np.polyfit(np.arange(beats.size), beats, 1)[0]
        return 60.0 / float(slope)
    return 60.0 / float(np.mean(ibi[ok])) if ok.any() else 60.0 / med


def _meter_from_bass(low_db: np.ndarray, full_db: np.ndarray, beat_frames: np.ndarray, min_bars: int,
                     min_contrast_db: float, max_low_deficit_db: float = 20.0) -> int | None:
    """3, or 2/4 (duple), when the low-band level at the beats (kick drum, bass notes) peaks every 3 beats, or
    every 2 or 4, on one consistent phase with at least `min_contrast_db` over the other beats; else None.

    low_db / full_db: per-frame level (dB) of the bands under LOW_BAND_HZ / of all bands. Without bass content
    (low bands `max_low_deficit_db` under the full band at the beats) there is nothing to read: None.
    """
    if beat_frames.size < 2 * min_bars:
        return None

    def at_beats(level: np.ndarray) -> np.ndarray:
        return np.array([level[max(0, f - 2) : f + 8].max() if f < level.size else level[-1] for f in beat_frames])

    a = at_beats(low_db)
    if float(np.median(a)) < float(np.median(at_beats(full_db))) - max_low_deficit_db:
        return None
    best: tuple[float, int] = (0.0, 0)
    for meter in (2, 3, 4):
        for ph in range(meter):
            bars = a[ph : ph + meter * ((a.size - ph) // meter)].reshape(-1, meter)
            if bars.shape[0] < min_bars:
                continue
            # the downbeat against the loudest other beat (in 4, beat 3 may be as strong as beat 1)
            others = bars[:, 1:] if meter != 4 else bars[:, [1, 3]]
            contrast = float(np.median(bars[:, 0] - others.max(axis=1)))
            consistent = float(np.mean(bars[:, 0] >= others.max(axis=1)))
            if consistent >= 0.75 and contrast > best[0]:
                best = (contrast, meter)
    return best[1] if best[0] >= min_contrast_db else None


def _meter_from_harmony(chroma: np.ndarray, chroma_fps: float, beats_s: np.ndarray, min_bars: int,
                        min_change: float = 0.05) -> int | None:
    """3 or 4 when the harmony (beat-synchronous chroma) changes on one phase every 3 or every 4 beats: chords
    change on the bar line. None when the changes show no such period."""
    if chroma is None or beats_s.size < 3 * min_bars + 1:
        return None
    t = np.arange(chroma.shape[1]) / chroma_fps
    edges = np.searchsorted(t, beats_s)
    sync = [chroma[:, a:b].mean(axis=1) if b > a else chroma[:, min(a, chroma.shape[1] - 1)]
            for a, b in zip(edges[:-1], edges[1:], strict=True)]
    sync = np.array(sync)  # (beats - 1, 12): the chroma of each beat interval
    norm = np.linalg.norm(sync, axis=1) + 1e-12
    cos = np.sum(sync[1:] * sync[:-1], axis=1) / (norm[1:] * norm[:-1])
    change = np.concatenate([[0.0], 1.0 - cos])  # change[k]: harmony change entering beat interval k
    best: tuple[float, int] = (0.0, 0)
    for meter in (3, 4):
        for ph in range(meter):
            bars = change[ph + meter if ph == 0 else ph :]
            bars = bars[: meter * (bars.size // meter)].reshape(-1, meter)
            if bars.shape[0] < min_bars:
                continue
            down, rest = float(bars[:, 0].mean()), float(bars[:, 1:].mean())
            score = down - rest
            if down >= min_change and down >= 2.0 * rest and score > best[0]:
                best = (score, meter)
    return best[1] or None


def analyse_rhythm(
    env: np.ndarray,
    low_db: np.ndarray,
    full_db: np.ndarray,
    fps: float,
    duration_s: float,
    *,
    prior_bpm: float = 120.0,
    min_bpm: float = 50.0,
    max_bpm: float = 200.0,
    octave_ratio: float = 0.5,
    min_confidence: float = 0.1,
    min_bars_for_meter: int = 3,
    meter_contrast_db: float = 3.0,
    chroma: np.ndarray | None = None,
    chroma_fps: float = 0.0,
    onset_feats: OnsetFeatures | None = None,
) -> Rhythm:
    """Tempo, beats, meter and onset density from an onset envelope at `fps` frames per second.

    env: onset strength (all bands); low_db / full_db: level (dB) of the low bands, whose peaks mark
    downbeats, and of all bands; chroma (12, n) at chroma_fps frames per second, whose changes mark bar lines.
    The meter is read from the bass accents first, from the chord changes when the bass shows none.
    With `onset_feats` (several onset features), each feature proposes a tempo and the metrical level is chosen
    across all of them (`annotators/music/tempo.py`); the octave check below then runs as before.
    """
    hop = 1.0 / fps
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=int(round(fps)), hop_length=1, units="frames")
    density = float(len(onsets)) / duration_s if duration_s > 0 else None
    if duration_s < 2.0 or env.size < 8 or float(env.max()) <= 1e-6 or len(onsets) < 3:
        return Rhythm(None, None, [], None, density)

    sr_eq, hop_eq = int(round(fps * 100)), 100  # librosa wants (sr, hop_length); only their ratio matters
    t0 = _global_tempo(env, fps, prior_bpm, min_bpm, max_bpm * 1.5)
    if onset_feats is not None and len(onset_feats.envs) > 1:
        proposals = [t0] + [_global_tempo(e, fps, prior_bpm, min_bpm, max_bpm * 1.5)
                            for e in onset_feats.envs.values() if float(e.max()) > 1e-9]
        t0, _ = choose_metrical_level(onset_feats, proposals, min_bpm, max_bpm)
    tempo = t0
    period = 60.0 * fps / t0
    ac_here = _autocorr_at(env, period)
    if _offbeat_ratio(env, period) >= octave_ratio:
        # an even pulse halfway between the beats: the beat is twice as fast
        if 2 * t0 <= max_bpm and _autocorr_at(env, period / 2) >= 0.5 * ac_here:
            tempo = 2 * t0
    elif (2 * period < env.size / 2 and t0 / 2 >= min_bpm and _offbeat_ratio(env, 2 * period) < octave_ratio
          and _autocorr_at(env, 2 * period) >= 0.5 * ac_here):
        tempo = t0 / 2  # every other beat is weak (and the pattern repeats there): the beat is a subdivision
    while tempo > max_bpm and tempo / 2 >= min_bpm:
        tempo /= 2
    while tempo < min_bpm and tempo * 2 <= max_bpm:
        tempo *= 2

    # librosa's tracker does not place a beat on the first frames nor reliably on the last onset: give it a
    # second of silence on either side, then keep the beats that fall inside the segment
    pad = int(round(fps))
    _, beat_frames = librosa.beat.beat_track(onset_envelope=np.pad(env, (pad, pad)), sr=sr_eq, hop_length=hop_eq,
                                             bpm=tempo, units="frames", trim=True)
    beat_frames = np.asarray(beat_frames, dtype=int) - pad
    beat_frames = beat_frames[(beat_frames >= 0) & (beat_frames < env.size)]
    beats = beat_frames * hop
    refined = _refine_tempo(beats)
    if refined is not None and abs(refined / tempo - 1) < 0.08:
        tempo = refined
    conf = float(np.clip(_autocorr_at(env, 60.0 * fps / tempo), 0.0, 1.0))
    if conf < min_confidence:
        return Rhythm(None, conf, [], None, density)
    meter = _meter_from_bass(low_db, full_db, beat_frames, min_bars_for_meter, meter_contrast_db)
    if meter is None and chroma is not None:
        meter = _meter_from_harmony(chroma, chroma_fps, beats, min_bars_for_meter)
    signature = None if meter is None else ("3/4" if meter == 3 else "4/4")
    return Rhythm(float(tempo), conf, [round(float(b), 3) for b in beats], signature, density)
