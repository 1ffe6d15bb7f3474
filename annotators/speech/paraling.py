"""Paralinguistic measurements of one speech segment. No Ray.

- pitch: F0 median/min/max over voiced frames inside VAD speech (PESTO, or librosa pYIN); min/max are the
  5th/95th percentiles so a few octave errors do not set the range. `voice_register` (low/mid/high) is a
  pitch band, named as what it is: it says nothing about gender.
- speaking rate: words and syllables per second of VAD speech (pauses excluded). Syllables are vowel groups
  of the transcript (Latin-script languages; None otherwise).
- loudness: integrated LUFS (ITU-R BS.1770, pyloudnorm).
- SNR: speech-frame power over non-speech-frame power (VAD), or over the quietest 10 % of frames when the
  segment has little non-speech; the noise floor is clamped at -100 dBFS (digital silence).
- DNSMOS P.835 (SIG/BAK/OVRL) from the ONNX models shipped in `speechmos`, 9 s windows.
- gender / age / emotion: pluggable `AttributeClassifier`s named in the config; without one the field stays
  null with model 'none'.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Protocol

import numpy as np

from annotators.common import SAMPLE_RATE
from annotators.common.levels import loudness_lufs
from schemas.annotation import AttributePrediction
from schemas.speech_config import ParalinguisticsConfig

_VOWELS = re.compile(r"[aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿœ]+", re.IGNORECASE)
_LATIN_WORD = re.compile(r"^[A-Za-zÀ-ÿŒœ'’\-]+$")


class AttributeClassifier(Protocol):
    """What a gender/age/emotion model plugs in as: `name`, and a prediction for one segment."""

    name: str

    def predict(self, audio: np.ndarray, sample_rate: int) -> AttributePrediction: ...


def load_classifier(spec: str | None) -> AttributeClassifier | None:
    """'package.module:ClassName' -> an instance (constructed with no arguments), or None."""
    if not spec:
        return None
    mod, _, cls = spec.partition(":")
    if not cls:
        raise ValueError(f"classifier {spec!r}: expected 'package.module:ClassName'")
    return getattr(importlib.import_module(mod), cls)()


def count_syllables(words: list[str]) -> int | None:
    """Vowel-group syllable count; None when a word is not in Latin script (the heuristic does not apply)."""
    n = 0
    for w in words:
        w = w.strip().strip(".,;:!?¿¡\"“”()[]")
        if not w:
            continue
        if not _LATIN_WORD.match(w):
            if any(ch.isdigit() for ch in w):
                continue
            return None
        groups = _VOWELS.findall(w)
        k = len(groups)
        if k > 1 and w.lower().endswith("e") and not w.lower().endswith(("le", "ee")) and groups[-1].lower() == "e":
            k -= 1  # English silent e ("make"); harmless elsewhere only for the rare final 'e' after a consonant
        n += max(1, k)
    return n


def snr_db(audio: np.ndarray, vad_prob: np.ndarray, hop_s: float, threshold: float = 0.5) -> float | None:
    hop = int(round(hop_s * SAMPLE_RATE))
    n = min(audio.shape[0] // hop, vad_prob.shape[0])
    if n < 4:
        return None
    p = (audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(1)
    on = vad_prob[:n] >= threshold
    if on.sum() < 2:
        return None
    noise = p[~on].mean() if (~on).sum() >= max(3, n // 10) else np.percentile(p, 10)
    from annotators.common.levels import snr_db as capped_snr_db

    return capped_snr_db(max(p[on].mean() - noise, 1e-12), noise)


class PitchTracker:
    def __init__(self, method: str, device: str = "cpu"):
        self.method = method
        self.device = device
        if method == "pesto":
            import pesto

            self._model = pesto.load_model("mir-1k_g7", step_size=10.0, sampling_rate=SAMPLE_RATE).to(device).eval()
            self.name = f"pesto mir-1k_g7 {pesto.__version__}"
        else:
            import librosa

            self.name = f"librosa pyin {librosa.__version__}"

    def f0(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(f0_hz, confidence, hop_s) per frame."""
        if self.method == "pesto":
            import torch

            with torch.inference_mode():
                x = torch.from_numpy(audio.astype(np.float32)).to(self.device)
                f0, conf, _vol = self._model(x, sr=SAMPLE_RATE, convert_to_freq=True)[:3]
            return f0.reshape(-1).cpu().numpy(), conf.reshape(-1).cpu().numpy(), 0.01
        import librosa

        f0, _voiced, prob = librosa.pyin(audio, fmin=60, fmax=500, sr=SAMPLE_RATE, frame_length=1024, hop_length=320)
        return np.nan_to_num(f0), prob, 0.02


class Dnsmos:
    """DNSMOS P.835 with speechmos's ONNX files in our own sessions (thread-limited, loaded once)."""

    INPUT_S = 9.01

    def __init__(self, hop_s: float = 9.0, threads: int = 1):
        import onnxruntime as ort
        import speechmos

        d = Path(speechmos.__file__).parent / "dnsmos_models"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(str(d / "sig_bak_ovr.onnx"), opts, providers=["CPUExecutionProvider"])
        self.hop_s = hop_s
        self.name = "dnsmos-p835 (speechmos)"

    def __call__(self, audio: np.ndarray) -> tuple[float, float, float]:
        """(sig, bak, ovrl) MOS, averaged over 9 s windows (short audio is looped to 9 s, as the reference)."""
        n = int(self.INPUT_S * SAMPLE_RATE)
        a = audio.astype(np.float32)
        if not a.size:
            raise ValueError("empty audio")
        while a.shape[0] < n:
            a = np.concatenate([a, a])
        hop = int(self.hop_s * SAMPLE_RATE)
        starts = list(range(0, a.shape[0] - n + 1, hop)) or [0]
        raw = np.stack([self._sess.run(None, {"input_1": a[s : s + n][None]})[0][0] for s in starts])
        p_ovr = np.poly1d([-0.06766283, 1.11546468, 0.04602535])  # the reference's non-personalised fit
        p_sig = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
        p_bak = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
        sig, bak, ovr = p_sig(raw[:, 0]).mean(), p_bak(raw[:, 1]).mean(), p_ovr(raw[:, 2]).mean()
        return float(sig), float(bak), float(ovr)


class Paralinguistics:
    def __init__(self, cfg: ParalinguisticsConfig, device: str = "cpu", threads: int = 1):
        self.cfg = cfg
        self.pitch = PitchTracker(cfg.pitch, device) if cfg.pitch != "none" else None
        self.dnsmos = Dnsmos(cfg.dnsmos_hop_s, threads) if cfg.dnsmos else None
        self.classifiers = {
            "gender": load_classifier(cfg.gender_model),
            "age": load_classifier(cfg.age_model),
            "emotion": load_classifier(cfg.emotion_model),
        }

    def models(self) -> dict[str, str]:
        out = {}
        if self.pitch:
            out["pitch"] = self.pitch.name
        if self.dnsmos:
            out["dnsmos"] = self.dnsmos.name
        out["loudness"] = "pyloudnorm BS.1770"
        for k, c in self.classifiers.items():
            if c is not None:
                out[k] = c.name
        return out

    def measure(self, audio: np.ndarray, vad_prob: np.ndarray, hop_s: float, words: list[str],
                threshold: float = 0.5) -> dict:
        cfg = self.cfg
        out: dict = {"loudness_lufs": loudness_lufs(audio, SAMPLE_RATE), "snr_db": snr_db(audio, vad_prob, hop_s, threshold)}
        speech_s = float((vad_prob >= threshold).sum() * hop_s)
        if words and speech_s > 0:
            out["words_per_s"] = round(len(words) / speech_s, 3)
            syl = count_syllables(words)
            out["syllables_per_s"] = round(syl / speech_s, 3) if syl is not None else None
        if self.pitch is not None and speech_s > 0:
            f0, conf, fhop = self.pitch.f0(audio)
            t = np.arange(f0.shape[0]) * fhop
            vi = np.minimum((t / hop_s).astype(int), len(vad_prob) - 1)
            keep = (conf >= cfg.pitch_confidence) & (vad_prob[vi] >= threshold) & (f0 > 40) & (f0 < 1000)
            if keep.sum() >= 10:
                v = f0[keep]
                med = float(np.median(v))
                out["f0_median_hz"] = round(med, 1)
                out["f0_min_hz"] = round(float(np.percentile(v, 5)), 1)
                out["f0_max_hz"] = round(float(np.percentile(v, 95)), 1)
                out["voice_register"] = (
                    "low" if med < cfg.register_low_hz else "high" if med > cfg.register_high_hz else "mid"
                )
        if self.dnsmos is not None and speech_s >= 0.5:
            sig, bak, ovr = self.dnsmos(audio)
            out.update(dnsmos_sig=round(sig, 3), dnsmos_bak=round(bak, 3), dnsmos_ovrl=round(ovr, 3))
        for k, c in self.classifiers.items():
            out[k] = c.predict(audio, SAMPLE_RATE) if c is not None and speech_s > 0 else AttributePrediction()
        return out
