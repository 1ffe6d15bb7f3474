"""Whisper-style log-mel features: 16 kHz mono -> 128 mel bins at 100 frames/s (n_fft 400, hop 160).

`n_mel_frames` and `n_audio_frames` are the one place that says how many frames a waveform gives; the
data loader sizes its placeholder spans with them, so the span always matches the encoder output.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torchaudio

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
N_MELS = 128


def n_mel_frames(n_samples: int) -> int:
    """Mel frames of a waveform: Whisper's STFT (centred) drops its last frame -> n_samples // hop."""
    return max(1, n_samples // HOP)


def conv_out_len(n: int) -> int:
    """Length after one kernel-3, stride-2, padding-1 convolution."""
    return (n - 1) // 2 + 1


def n_audio_frames(n_samples: int) -> int:
    """Encoder frames (12.5 Hz) of a waveform: three stride-2 convolutions over the mel frames."""
    n = n_mel_frames(n_samples)
    for _ in range(3):
        n = conv_out_len(n)
    return n


class LogMel(nn.Module):
    """(B, S) waveforms + lengths -> (B, n_mels, T) normalised log-mel, zero past each sample's end."""

    def __init__(self, n_mels: int = N_MELS):
        super().__init__()
        with torch.device("cpu"):  # a fixed filterbank: built on the CPU even under a meta-device context
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=n_mels,
                power=2.0, norm="slaney", mel_scale="slaney",
            )

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel = self.mel(wav.float())[..., :-1]  # (B, n_mels, S // hop)
        n_frames = torch.clamp(lengths // HOP, min=1)  # (B,)
        valid = torch.arange(mel.shape[-1], device=mel.device)[None, :] < n_frames[:, None]  # (B, T)
        logmel = torch.clamp(mel, min=1e-10).log10()
        # Whisper's dynamic-range clamp and scaling, with the max taken over each sample's own frames
        peak = logmel.masked_fill(~valid[:, None, :], -torch.inf).amax(dim=(1, 2), keepdim=True)
        logmel = (torch.maximum(logmel, peak - 8.0) + 4.0) / 4.0
        return logmel * valid[:, None, :], n_frames
