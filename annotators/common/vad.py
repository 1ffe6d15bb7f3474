"""Silero VAD (ONNX, shipped in the `silero-vad` package): speech probability per 32 ms frame. No Ray."""

from __future__ import annotations

import numpy as np

from annotators.common import SAMPLE_RATE

FRAME = 512  # samples per VAD frame at 16 kHz
HOP_S = FRAME / SAMPLE_RATE  # 0.032


class SileroVad:
    """Speech probability per 32 ms frame; load once per process/actor."""

    name = "silero-vad"

    def __init__(self, num_threads: int = 1):
        import torch
        from silero_vad import load_silero_vad

        torch.set_num_threads(max(1, num_threads))
        self._model = load_silero_vad(onnx=True)
        from importlib.metadata import version

        self.version = version("silero-vad")

    def speech_prob(self, audio: np.ndarray, chunk_s: float = 60.0) -> np.ndarray:
        """(n,) float32 16 kHz -> (ceil(n / 512),) float32 speech probability; frame i starts at i * 0.032 s."""
        import torch

        audio = np.asarray(audio, dtype=np.float32)
        if audio.size == 0:
            return np.zeros(0, np.float32)
        out = []
        step = int(chunk_s * SAMPLE_RATE) // FRAME * FRAME
        # The model is stateful; process long audio in chunks to keep memory flat, carrying the state.
        self._model.reset_states()
        for s in range(0, audio.shape[0], step):
            chunk = torch.from_numpy(audio[s : s + step])
            if chunk.shape[0] % FRAME:
                chunk = torch.nn.functional.pad(chunk, (0, FRAME - chunk.shape[0] % FRAME))
            probs = []
            for i in range(0, chunk.shape[0], FRAME):
                probs.append(self._model(chunk[i : i + FRAME], SAMPLE_RATE))
            out.append(torch.cat(probs).reshape(-1).numpy())
        return np.concatenate(out).astype(np.float32)
