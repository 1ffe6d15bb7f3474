"""Sound events with onset/offset from YAMNet frame posteriors, refined on the energy envelope. No Ray here.

1. Each class's posteriors (frame i covers [i*hop, i*hop + window)) are smoothed with a short triangular
   kernel and thresholded with hysteresis: an event is a run of frames whose smoothed posterior stays above
   `off` and whose raw posterior reaches `on` (smoothing shapes the extent; a sound that fills a single
   window, which smoothing would halve, is still found).
2. A run of frames a..b gives coarse times: a sound is first detected in the first window it covers by
   about half, so its onset lies in (a*hop, a*hop + window/2] and its offset in [b*hop + window/2, b*hop + window);
   the coarse estimates are the middles, a*hop + window/4 and b*hop + 3*window/4 (±0.24 s).
3. Refinement: the mel bands where the detecting windows stand `min_band_snr_db` over the segment's background
   (20th percentile per band) carry it; their summed energy at 10 ms frames is thresholded at `level` of the
   way (in dB) from the background to the event's peak (and above the background's usual peaks), and the
   first/last crossing near the coarse edges become the onset/offset. Where that envelope stays under the threshold for `split_gap_s`, or drops `split_depth_db` under it for 50 ms (repeated hits), the event splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

N_FFT = 512
HOP = 160  # 10 ms at 16 kHz
N_MELS = 64
EVENT_RANGE_DB = 35.0  # an event's edges lie within this of its peak
MIN_DEEP_GAP_S = 0.05  # a pause this long where the sound stops (split_depth_db under its threshold) splits


@dataclass
class Event:
    cls: int
    start_s: float
    end_s: float
    score: float  # the class's highest posterior over the event's frames
    mean: float = 0.0  # its mean posterior over them (breaks ties between the model's quantised steps)
    isolated: bool = False  # cut from its neighbours where the sound stopped: merged with them only on overlap


def smooth(scores: np.ndarray, width: int) -> np.ndarray:
    """Triangular moving average along time of (T, C) posteriors (width 1 = unchanged)."""
    if width <= 1 or scores.shape[0] < 2:
        return scores
    k = np.bartlett(width + 2)[1:-1]
    k /= k.sum()
    from scipy.ndimage import convolve1d

    return convolve1d(scores, k, axis=0, mode="nearest")


def hysteresis_runs(x: np.ndarray, on: float, off: float, peak: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Inclusive frame runs [a, b] where x >= off throughout and `peak` (default x) >= on somewhere."""
    peak = x if peak is None else peak
    above = x >= off
    edges = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(np.int8), [0]])))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True) if peak[a:b].max() >= on]


def coarse_events(scores: np.ndarray, classes: np.ndarray, hop_s: float, window_s: float, duration_s: float,
                  on: float, off: float, smooth_frames: int) -> list[tuple[Event, int, int]]:
    """(event with coarse times, first frame, last frame) for every hysteresis run of the given classes."""
    if scores.size == 0:
        return []
    classes = classes[scores[:, classes].max(axis=0) >= on]  # only classes that reach `on` can start events
    if classes.size == 0:
        return []
    raw = scores[:, classes]
    sm = np.maximum(smooth(raw, smooth_frames), np.minimum(raw, off))  # a lone frame over `off` stays a run
    out = []
    for j, c in enumerate(classes):
        for a, b in hysteresis_runs(sm[:, j], on, off, peak=raw[:, j]):
            start = min(a * hop_s + window_s / 4, duration_s)
            end = min(b * hop_s + 3 * window_s / 4, duration_s)
            if a == 0:
                start = 0.0  # nothing before the segment: it may have started with it
            if end <= start:
                end = min(duration_s, start + hop_s)
            run = raw[a : b + 1, j]
            out.append((Event(int(c), start, end, float(run.max()), float(run.mean())), a, b))
    return out


class BandEnvelope:
    """Mel-band power of a segment at 10 ms frames and its per-band background level."""

    def __init__(self, audio: np.ndarray, sr: int):
        power = np.abs(librosa.stft(np.asarray(audio, np.float32), n_fft=N_FFT, hop_length=HOP)) ** 2
        fb = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS, fmin=30.0, fmax=sr / 2)
        self.mel = fb @ power + 1e-12  # (N_MELS, F); frame j is centred at j * HOP / sr
        self.fps = sr / HOP
        k = int(0.2 * (self.mel.shape[1] - 1))
        self.background = np.partition(self.mel, k, axis=1)[:, k]  # (N_MELS,) 20th percentile per band
        self.frame_power = power.sum(axis=0) / (N_FFT * N_FFT / 2)  # proportional to mean-square power

    def frames(self, t0: float, t1: float) -> slice:
        n = self.mel.shape[1]
        return slice(int(np.clip(np.floor(t0 * self.fps), 0, n)), int(np.clip(np.ceil(t1 * self.fps), 0, n)))


def refine_event(ev: Event, a: int, b: int, env: BandEnvelope, hop_s: float, window_s: float, duration_s: float,
                 level: float, min_band_snr_db: float, split_gap_s: float, min_event_s: float,
                 split_depth_db: float = 12.0) -> list[Event]:
    """The event's onset/offset moved to its band-energy edges; split where that energy pauses."""
    core = env.frames(a * hop_s, b * hop_s + window_s)  # every window that detected it: a short sound may sit anywhere
    if core.stop - core.start < 1:
        return [ev]
    profile = env.mel[:, core].mean(axis=1)
    ratio_db = 10 * np.log10(profile / env.background)
    bands = ratio_db >= min_band_snr_db
    if not bands.any():
        return [ev]  # nothing stands out of the background: keep the coarse times
    e = 10 * np.log10(env.mel[bands].sum(axis=0))
    bg = 10 * np.log10(env.background[bands].sum())
    peak = float(np.convolve(e[core], np.ones(3) / 3, mode="same").max())  # a short sound may fill little of the core
    if peak - bg < 3.0:
        return [ev]
    # a sound can run on past the windows that fired (or start before them): search a window either side
    search = env.frames(max(0.0, a * hop_s - window_s), min(duration_s, b * hop_s + 2 * window_s))
    # the background fluctuates: stay above its usual peaks too (95th percentile of the frames within 10 dB of
    # the background level, wherever they are: other loud events in the segment do not count)
    quiet = e[e < bg + 10.0]
    noise_hi = float(np.percentile(quiet, 95)) + 1.0 if quiet.size >= 0.5 * env.fps else bg
    # over digital silence the background is no level at all: the edges stay within the event's own range
    thr = min(max(bg + level * (peak - bg), noise_hi, peak - EVENT_RANGE_DB), peak - 3.0)

    above = e[search] >= thr
    if not above.any():
        return [ev]
    # runs of above-threshold frames, ignoring blips shorter than 30 ms and joining gaps shorter than split_gap_s
    idx = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(np.int8), [0]])))
    runs = [(s, t) for s, t in zip(idx[::2], idx[1::2], strict=True) if t - s >= max(1, int(0.03 * env.fps))]
    if not runs:
        return [ev]
    gap = int(round(split_gap_s * env.fps))
    min_deep = max(1, int(round(MIN_DEEP_GAP_S * env.fps)))
    level = e[search]
    merged = [[*runs[0], False]]
    for s, t in runs[1:]:
        g0 = merged[-1][1]
        # a short gap joins the pieces, unless the sound stops there (falls far under the threshold): repeated
        # hits (ticks, knocks, footsteps) stay separate events
        deep = s - g0 >= min_deep and float(level[g0:s].max()) < thr - split_depth_db
        if s - g0 < gap and not deep:
            merged[-1][1] = t
        else:
            merged[-1][2] = merged[-1][2] or deep
            merged.append([s, t, deep])
    # keep the pieces (long enough) that overlap the middle halves of the detecting windows, where the sound
    # must mostly be; failing that, those that overlap the windows at all
    pieces = [((search.start + s) / env.fps, min(duration_s, (search.start + t) / env.fps), iso)
              for s, t, iso in merged]
    pieces = [(p, q, iso) for p, q, iso in pieces if q - p >= min_event_s]
    for lo, hi in ((ev.start_s, ev.end_s), (a * hop_s, b * hop_s + window_s)):
        out = [Event(ev.cls, round(p, 3), round(q, 3), ev.score, ev.mean, iso) for p, q, iso in pieces
               if q > lo and p < hi]
        if out:
            return out
    return [ev]


def sound_extent(env: BandEnvelope, range_db: float = 35.0) -> tuple[float, float]:
    """(start, end) in s of the frames within `range_db` of the segment's loudest 10 ms frame and above its
    background (the frame power's 10th percentile, +6 dB)."""
    p = 10 * np.log10(env.frame_power + 1e-20)
    floor = float(np.percentile(p, 10)) + 6.0
    on = np.flatnonzero((p >= p.max() - range_db) & (p >= floor))
    if on.size == 0:
        return 0.0, 0.0
    return float(on[0] / env.fps), float((on[-1] + 1) / env.fps)


def merge_same_class(events: list[Event], gap_s: float) -> list[Event]:
    """Merge events of one class that overlap or lie closer than gap_s (score: the max)."""
    out: list[Event] = []
    for ev in sorted(events, key=lambda e: (e.cls, e.start_s)):
        last = out[-1] if out else None
        near = gap_s if not (last is not None and (last.isolated or ev.isolated)) else 0.0
        if last is not None and last.cls == ev.cls and ev.start_s - last.end_s < near:
            last.end_s = max(last.end_s, ev.end_s)
            last.score = max(last.score, ev.score)
            last.mean = max(last.mean, ev.mean)
        else:
            out.append(Event(ev.cls, ev.start_s, ev.end_s, ev.score, ev.mean, ev.isolated))
    return out


def foreground_snr_db(events: list[Event], env: BandEnvelope) -> float | None:
    """Mean power inside the events over the background's (dB; capped, see `levels.snr_db`). The background is the median frame power
    outside the events (robust to the events' edges leaking into it), or with under 0.2 s outside them the
    10th percentile of frame power."""
    if not events:
        return None
    p = env.frame_power
    fg = np.zeros(p.size, bool)
    for ev in events:
        fg[env.frames(ev.start_s, ev.end_s)] = True
    if not fg.any():
        return None
    bg_power = float(np.median(p[~fg])) if (~fg).sum() >= 0.2 * env.fps else float(np.percentile(p, 10))
    from annotators.common.levels import snr_db

    return snr_db(float(p[fg].mean()), bg_power)
