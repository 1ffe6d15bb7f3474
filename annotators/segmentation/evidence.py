"""Frame evidence for segmentation: energy, VAD speech probability, YAMNet class groups, spectral novelty.

All curves share one frame grid: frame t is centred on t * hop_s seconds from the start of the audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotators.common import yamnet as ym
from annotators.common.vad import HOP_S as VAD_HOP_S


@dataclass
class EvidenceModels:
    """The models evidence needs, loaded once per actor. Either may be None (config switches it off)."""

    vad: object | None  # annotators.common.vad.SileroVad
    yamnet: ym.YamNet | None


@dataclass
class FrameEvidence:
    hop_s: float
    energy_db: np.ndarray  # (T,) frame level in dBFS
    vad: np.ndarray  # (T,) speech probability (zeros when VAD is off)
    speech: np.ndarray  # (T,) YAMNet speech-group score, interpolated to the frame grid
    singing: np.ndarray  # (T,)
    music: np.ndarray  # (T,)
    other: np.ndarray  # (T,)
    novelty: np.ndarray  # (T,) spectral novelty in [0, 1]
    yamnet_scores: np.ndarray | None  # (J, 521) raw YAMNet frames over the whole audio (0.48 s hop)
    vad_raw: np.ndarray  # (K,) VAD probabilities per 32 ms frame

    @property
    def n(self) -> int:
        return self.energy_db.shape[0]

    def dominant_class(self, vad_threshold: float) -> np.ndarray:
        """(T,) int: 0 speech, 1 music, 2 other, per frame."""
        sp = np.maximum(self.speech, np.where(self.vad >= vad_threshold, 0.6, 0.0))
        return np.argmax(np.stack([sp, self.music, self.other]), axis=0)


def frame_energy_db(x: np.ndarray, hop: int) -> np.ndarray:
    """(n,) -> (ceil(n / hop),) RMS level in dBFS over a 2-hop window centred on each frame."""
    n_frames = max(1, -(-x.shape[0] // hop))
    blocks = np.zeros(n_frames + 1, np.float64)  # blocks[k + 1] = energy of samples [k*hop, (k+1)*hop)
    for lo in range(0, x.shape[0], 1 << 20):  # in pieces: no full-length temporaries
        piece = x[lo : lo + (1 << 20)]
        k0 = lo // hop
        sq = np.square(piece, dtype=np.float32)
        full = sq.shape[0] // hop
        blocks[k0 + 1 : k0 + 1 + full] = sq[: full * hop].reshape(full, hop).sum(1)
        if sq.shape[0] % hop:
            blocks[k0 + 1 + full] = sq[full * hop :].sum()
    # frame t covers [t*hop - hop, t*hop + hop): blocks t-1 and t
    power = (blocks[:-1] + blocks[1:]) / (2 * hop)
    return (10 * np.log10(power + 1e-10)).astype(np.float32)


def spectral_novelty(x: np.ndarray, sr: int, hop: int, n_frames: int, context_s: float = 0.5) -> np.ndarray:
    """Cosine distance between the mean log-mel spectra before and after each frame, scaled to [0, 1].

    Both passes go `chunk` frames at a time (the STFT pieces are cut from `x` with their zero padding, never
    a padded copy of the whole window), so a 600 s window at the default hop needs ~15 MB beyond its log-mel
    (30 000 x 48) instead of ~130 MB; every value is the same as computed whole."""
    import librosa

    if x.shape[0] < 2048:
        return np.zeros(n_frames, np.float32)
    n_fft, chunk = 1024, 1500  # frames per STFT piece: keeps the spectrogram's memory per window small
    pieces = []
    for f0 in range(0, n_frames, chunk):
        a = f0 * hop - n_fft // 2  # the piece's first sample in `x` (the whole was padded by n_fft // 2)
        b = a + (chunk - 1) * hop + n_fft
        seg = x[max(a, 0):min(b, x.shape[0])]
        if a < 0 or b > x.shape[0]:
            seg = np.pad(seg, (max(-a, 0), max(b - x.shape[0], 0)))
        mel = librosa.feature.melspectrogram(y=seg, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=48, center=False)
        pieces.append(np.log1p(mel * 100.0).T.astype(np.float32))  # (frames, 48)
    logmel = np.concatenate(pieces)[:n_frames]
    del pieces
    w = max(1, int(round(context_s * sr / hop)))
    c = np.concatenate([np.zeros((1, logmel.shape[1])), np.cumsum(logmel, axis=0)])  # (n_frames + 1, 48) f64
    nov = np.empty(n_frames, np.float64)
    for t0 in range(0, n_frames, chunk):
        t = np.arange(t0, min(t0 + chunk, n_frames))
        lo, hi = np.clip(t - w, 0, n_frames), np.clip(t + w, 0, n_frames)
        before = (c[t] - c[lo]) / np.maximum(t - lo, 1)[:, None]
        after = (c[hi] - c[t]) / np.maximum(hi - t, 1)[:, None]
        num = (before * after).sum(1)
        den = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1) + 1e-9
        part = 1.0 - num / den
        part[(t - lo) < w // 2] = 0.0
        part[(hi - t) < w // 2] = 0.0
        nov[t0:t0 + len(t)] = part
    # Absolute scale: a chord change or a new sound measures ~0.15-0.25; a sustained sound stays under 0.02.
    return np.clip(nov / 0.2, 0, 1).astype(np.float32)


def yamnet_to_grid(scores: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Interpolate (J, C) YAMNet frames (centres at 0.48 + j * 0.48 s) onto arbitrary times -> (len(times), C)."""
    centres = ym.HOP_S * np.arange(scores.shape[0]) + ym.WINDOW_S / 2
    pos = np.clip((times - centres[0]) / ym.HOP_S, 0, scores.shape[0] - 1)
    j0 = np.floor(pos).astype(int)
    j1 = np.minimum(j0 + 1, scores.shape[0] - 1)
    frac = (pos - j0)[:, None].astype(np.float32)
    return scores[j0] * (1 - frac) + scores[j1] * frac


def grid_groups(scores: np.ndarray, times: np.ndarray, chunk: int = 4096) -> dict[str, np.ndarray]:
    """`ym.group_scores(yamnet_to_grid(scores, times))`, `chunk` frames at a time: the same values, without the
    (frames, 521) grid of a whole window (30 000 x 521 float32 = 62 MB at the default hop, and four temporaries
    of that size while it is built)."""
    parts = [ym.group_scores(yamnet_to_grid(scores, times[i:i + chunk]))
             for i in range(0, max(len(times), 1), chunk)]  # no times: one empty chunk, empty curves
    return {g: np.concatenate([p[g] for p in parts]) for g in parts[0]}


def compute_evidence(x: np.ndarray, sr: int, hop_s: float, models: EvidenceModels) -> FrameEvidence:
    """Every evidence curve for one stretch of audio (a window of a source)."""
    hop = int(round(hop_s * sr))
    energy = frame_energy_db(x, hop)
    n = energy.shape[0]
    times = np.arange(n) * hop_s
    if models.vad is not None:
        vad_raw = models.vad.speech_prob(x)
        idx = np.clip((times / VAD_HOP_S).astype(int), 0, max(len(vad_raw) - 1, 0))
        vad = vad_raw[idx] if len(vad_raw) else np.zeros(n, np.float32)
    else:
        vad_raw, vad = np.zeros(0, np.float32), np.zeros(n, np.float32)
    if models.yamnet is not None:
        scores = models.yamnet.scores(x)
        groups = grid_groups(scores, times)
        speech, singing, music, other = groups["speech"], groups["singing"], groups["music"], groups["other"]
    else:
        scores = None
        speech = singing = music = np.zeros(n, np.float32)
        other = np.ones(n, np.float32)
    novelty = spectral_novelty(x, sr, hop, n)
    return FrameEvidence(hop_s, energy, vad.astype(np.float32), speech, singing, music, other, novelty, scores,
                         vad_raw)
