"""Signal features of a music segment, from one STFT. No Ray here."""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from annotators.music.tempo import OnsetFeatures, onset_features

N_FFT = 1024
HOP = 160  # 10 ms at 16 kHz: 100 onset frames per second
N_MELS = 64
LOW_BAND_HZ = 200.0  # kick drum and bass: the bands that mark downbeats


@dataclass
class SpectralFeatures:
    fps: float
    onset_env: np.ndarray  # (F,) onset strength, all bands
    low_db: np.ndarray  # (F,) level of the bands under LOW_BAND_HZ, dB
    full_db: np.ndarray  # (F,) level of all bands, dB
    centroid_hz: float | None  # spectral centroid (magnitude-weighted, pooled over frames)
    onsets: OnsetFeatures | None = None  # several onset features of the same STFT, for the tempo


PAD_FRAMES = 10  # silence prepended so that an onset at the very start has a frame before it to differ from


def spectral_features(audio: np.ndarray, sr: int) -> SpectralFeatures:
    padded = np.concatenate([np.zeros(PAD_FRAMES * HOP, np.float32), np.asarray(audio, np.float32)])
    power = np.abs(librosa.stft(padded, n_fft=N_FFT, hop_length=HOP)) ** 2  # (1 + N_FFT/2, PAD_FRAMES + F)
    mel_fb = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS, fmin=30.0, fmax=sr / 2)
    mel_db = librosa.power_to_db(mel_fb @ power, ref=1.0, top_db=80.0)  # (N_MELS, F)
    env = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=HOP, center=False)  # S is already centred
    # the log-flux of a centred frame jumps when an onset enters its window, ~N_FFT/4 before the frame's
    # centre: delay the envelope by that much so that peaks sit on the onsets (measured: -20 ms otherwise)
    lag = int(round(N_FFT / 4 / HOP))
    env = np.concatenate([np.zeros(lag, env.dtype), env[:-lag]]) if lag else env
    env, mel_db, power = env[PAD_FRAMES:], mel_db[:, PAD_FRAMES:], power[:, PAD_FRAMES:]  # frame 0 = time 0
    mel_freqs = librosa.mel_frequencies(n_mels=N_MELS, fmin=30.0, fmax=sr / 2)
    low = mel_freqs <= LOW_BAND_HZ
    low_power = (mel_fb[low] @ power).sum(axis=0) if low.any() else power.sum(axis=0)
    low_db = 10.0 * np.log10(np.maximum(low_power, 1e-10))
    energy = power.sum(axis=0)
    full_db = 10.0 * np.log10(np.maximum(energy, 1e-10))
    mag = np.sqrt(power)
    if energy.sum() > 0:
        freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
        # magnitude-weighted as librosa's spectral_centroid, pooled over frames (loud frames count more)
        centroid = float((freqs @ mag).sum() / mag.sum())
    else:
        centroid = None
    onsets = onset_features(mel_db, mel_freqs, full_db, sr / HOP, env)
    return SpectralFeatures(sr / HOP, env, low_db, full_db, centroid, onsets)
