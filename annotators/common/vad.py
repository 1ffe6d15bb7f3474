"""Silero VAD (ONNX, shipped in the `silero-vad` package): speech probability per 32 ms frame. No Ray."""

from __future__ import annotations

import numpy as np

from annotators.common import SAMPLE_RATE

FRAME = 512  # samples per VAD frame at 16 kHz
HOP_S = FRAME / SAMPLE_RATE  # 0.032


CONTEXT = 64  # samples of the previous frame the model sees before each frame (as silero_vad's OnnxWrapper)


class SileroVad:
    """Speech probability per 32 ms frame; load once per process/actor.

    Runs the package's ONNX file in our own onnxruntime session with numpy state, exactly as silero_vad's
    OnnxWrapper does, so a process that runs only ONNX models never imports torch (~100 MB less per actor).
    """

    name = "silero-vad"

    def __init__(self, num_threads: int = 1):
        """`num_threads` is accepted for the common signature; one frame per call runs fastest on one thread."""
        from importlib.metadata import version
        from importlib.util import find_spec
        from pathlib import Path

        from annotators.common.onnx import cpu_session

        # find_spec locates the package without running its __init__ (which imports torch)
        path = str(Path(find_spec("silero_vad").origin).parent / "data" / "silero_vad.onnx")
        self._session = cpu_session(path, num_threads=1)
        self.version = version("silero-vad")

    def speech_prob(self, audio: np.ndarray) -> np.ndarray:
        """(n,) float32 16 kHz -> (ceil(n / 512),) float32 speech probability; frame i starts at i * 0.032 s."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.size == 0:
            return np.zeros(0, np.float32)
        n = -(-audio.shape[0] // FRAME)
        x = np.zeros(n * FRAME + CONTEXT, np.float32)
        x[CONTEXT : CONTEXT + audio.shape[0]] = audio
        state = np.zeros((2, 1, 128), np.float32)
        sr = np.array(SAMPLE_RATE, dtype=np.int64)
        out = np.empty(n, np.float32)
        run = self._session.run
        for i in range(n):  # stateful: one frame after the other, each with the 64 samples before it
            p, state = run(None, {"input": x[None, i * FRAME : (i + 1) * FRAME + CONTEXT], "state": state, "sr": sr})
            out[i] = p[0, 0]
        return out
