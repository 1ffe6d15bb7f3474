"""ONNX exports of the speech branch's two torch models, so that the speech actor never imports torch on CPU.

    PESTO `mir-1k_g7` (pitch)      audio (n,) float32 16 kHz  ->  f0_hz (t,), confidence (t,)   t = n / hop + 1
    Resemblyzer GE2E encoder       mels (b, frames, 40)       ->  embeddings (b, 256), L2-normalised

Torch alone (`import torch`) is ~480 MiB of PSS in a process, the largest single item of the speech actor
(issue 20). Each model is exported once per machine, in a child process (the only one that imports torch),
from the weights its pip package ships, into `$EVENTCAP_CACHE/onnx/` (default `~/.cache/eventcap/onnx/`)
under a name carrying the package version and the export settings; written to a temporary name, checked
against torch on a test signal, then renamed, so concurrent actors and a killed export leave nothing half
made. `eventcap doctor` builds both (so `make demo` and `make test` do); an actor on a node without them
builds what it lacks on first use.

The exports give the torch models' answers (checked at export: pitch within 0.01 Hz, confidence and
embeddings within 1e-4; tests/test_speech_onnx.py compares both on real recordings). On a GPU the torch models are
used as before.

    python -m annotators.speech.onnx_models [pesto] [voice_encoder]    build into the cache, print the paths
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from importlib.metadata import version
from pathlib import Path

import numpy as np

from annotators.common import SAMPLE_RATE
from annotators.common.onnx import cpu_session
from annotators.speech.models import cache_dir

PESTO_MODEL = "mir-1k_g7"
MEL_CHANNELS, MEL_WINDOW_MS, MEL_STEP_MS = 40, 25, 10  # resemblyzer/hparams.py


def onnx_dir() -> Path:
    return cache_dir() / "onnx"


def pesto_path(step_ms: float) -> Path:
    return onnx_dir() / f"pesto-{version('pesto-pitch')}-{PESTO_MODEL}-{step_ms:g}ms-{SAMPLE_RATE}.onnx"


def voice_encoder_path() -> Path:
    return onnx_dir() / f"resemblyzer-{version('resemblyzer')}-ge2e.onnx"


def ensure(path: Path, what: str, *args: str) -> Path:
    """`path`, exported first in a child process (`python -m annotators.speech.onnx_models`) if missing."""
    if not path.exists():
        cmd = [sys.executable, "-m", "annotators.speech.onnx_models", what, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
        if res.returncode != 0 or not path.exists():
            raise RuntimeError(f"could not export {what} to ONNX ({res.returncode}): {res.stderr[-2000:]}")
    return path


# ------------------------------------------------------------------ runtime (no torch)
class PestoOnnx:
    """PESTO pitch on ONNX Runtime: the same frames, f0 and confidence as `pesto.load_model(...)(x, sr)`."""

    def __init__(self, step_ms: float, num_threads: int = 1):
        self.session = cpu_session(ensure(pesto_path(step_ms), "pesto", f"--step-ms={step_ms:g}"), num_threads)

    def __call__(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f0, conf = self.session.run(None, {"audio": np.ascontiguousarray(audio, dtype=np.float32)})
        return f0, conf


class VoiceEncoderOnnx:
    """Resemblyzer's GE2E speaker encoder on ONNX Runtime, with its mel front end in numpy/librosa."""

    def __init__(self, num_threads: int = 1):
        self.session = cpu_session(ensure(voice_encoder_path(), "voice_encoder"), num_threads)

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        """(b, frames, 40) float32 -> (b, 256)."""
        return self.session.run(None, {"mels": np.ascontiguousarray(mels, dtype=np.float32)})[0]


def normalize_volume(wav: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """resemblyzer.audio.normalize_volume(wav, target_dbfs, increase_only=True), without importing torch."""
    rms = np.sqrt(np.mean((wav * 32767.0) ** 2))
    change = target_dbfs - 20 * np.log10(rms / 32767.0)
    return wav if change < 0 else wav * (10 ** (change / 20))


def mel_frames(wav: np.ndarray) -> np.ndarray:
    """resemblyzer.audio.wav_to_mel_spectrogram: (frames, 40) power mel, 25 ms windows, 10 ms hop."""
    import librosa

    m = librosa.feature.melspectrogram(y=wav, sr=SAMPLE_RATE, n_fft=SAMPLE_RATE * MEL_WINDOW_MS // 1000,
                                       hop_length=SAMPLE_RATE * MEL_STEP_MS // 1000, n_mels=MEL_CHANNELS)
    return m.astype(np.float32).T


# ------------------------------------------------------------------ export (imports torch; child process only)
def _write_checked(path: Path, export, check) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        export(tmp)
        check(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_pesto(step_ms: float) -> Path:
    import pesto
    import pesto.data
    import torch

    def log_magnitude(self, x, sr=None):  # Preprocessor.forward without complex tensors (no ONNX op for them)
        c = self.hcqt(x, sr=sr)  # (1, harmonics, bins, frames, 2): real, imaginary
        mag = torch.sqrt(c[..., 0] ** 2 + c[..., 1] ** 2).permute(0, 3, 1, 2)
        return mag.clamp(min=torch.finfo(torch.float32).eps).log10().mul(20)

    class F0(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, audio):  # (n,) -> (t,), (t,)
            f0, conf = self.model(audio, sr=SAMPLE_RATE, convert_to_freq=True)[:2]
            return f0, conf

    torch.set_num_threads(1)
    model = pesto.load_model(PESTO_MODEL, step_size=step_ms, sampling_rate=SAMPLE_RATE).eval()
    test, other = torch.from_numpy(_test_signal(3.0)), torch.from_numpy(_test_signal(2.3, seed=1))
    with torch.inference_mode():
        want = {len(x): [t.numpy() for t in F0(model)(x)] for x in (test, other)}
    pesto.data.Preprocessor.forward = log_magnitude

    def export(tmp: Path) -> None:
        torch.onnx.export(F0(model).eval(), (test,), str(tmp), input_names=["audio"], output_names=["f0", "conf"],
                          dynamic_axes={"audio": {0: "n"}, "f0": {0: "t"}, "conf": {0: "t"}}, opset_version=17,
                          dynamo=False)

    def check(tmp: Path) -> None:
        session = cpu_session(tmp)
        for x in (test, other):  # the traced length and another one
            (f0w, confw), (f0, conf) = want[len(x)], session.run(None, {"audio": x.numpy()})
            assert f0.shape == f0w.shape and np.abs(f0 - f0w).max() < 0.01, "pesto f0 differs"
            assert np.abs(conf - confw).max() < 1e-4, "pesto confidence differs"

    path = pesto_path(step_ms)
    _write_checked(path, export, check)
    return path


def export_voice_encoder() -> Path:
    import torch
    from resemblyzer import VoiceEncoder

    torch.set_num_threads(1)
    enc = VoiceEncoder(device="cpu", verbose=False).eval()
    mels = np.stack([mel_frames(normalize_volume(_test_signal(1.6, seed=s))) for s in (0, 1)])
    with torch.inference_mode():
        want = enc(torch.from_numpy(mels)).numpy()

    def export(tmp: Path) -> None:
        torch.onnx.export(enc, (torch.from_numpy(mels),), str(tmp), input_names=["mels"], output_names=["embeddings"],
                          dynamic_axes={"mels": {0: "b", 1: "frames"}, "embeddings": {0: "b"}}, opset_version=17,
                          dynamo=False)

    def check(tmp: Path) -> None:
        got = cpu_session(tmp).run(None, {"mels": mels})[0]
        assert np.abs(got - want).max() < 1e-4, "voice encoder embeddings differ"

    path = voice_encoder_path()
    _write_checked(path, export, check)
    return path


def _test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced-like test signal: a gliding harmonic tone in noise (exercises every pitch bin region)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f = 120 + 80 * t / seconds
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.01 * rng.standard_normal(t.shape)
    return x.astype(np.float32)


def main(argv: list[str]) -> int:
    step = next((float(a.split("=", 1)[1]) for a in argv if a.startswith("--step-ms=")), None)
    what = [a for a in argv if not a.startswith("--")] or ["pesto", "voice_encoder"]
    for w in what:
        if w == "pesto":
            from annotators.speech.paraling import PITCH_STEP_MS

            print(export_pesto(step if step is not None else PITCH_STEP_MS))
        elif w == "voice_encoder":
            print(export_voice_encoder())
        else:
            raise SystemExit(f"unknown model {w!r}: pesto or voice_encoder")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
