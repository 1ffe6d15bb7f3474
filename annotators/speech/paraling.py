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

Bounded cost per segment (issue 20; measured effect in bench/README.md): pitch runs on the VAD speech spans
only (padded, joined into one call) at a 20 ms hop, and DNSMOS scores at most `DNSMOS_MAX_WINDOWS` windows,
the ones holding the most speech, in one batched ONNX call. `Paralinguistics(..., bounded=False)` restores
full resolution (every frame at 10 ms, every window) for comparison.
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

PITCH_STEP_MS = 20.0  # bounded: F0 statistics are medians/percentiles; 10 ms adds frames, not information
PITCH_FULL_STEP_MS = 10.0
SPAN_PAD_S = 0.1  # speech spans are padded so pitch sees each voiced onset whole
DNSMOS_MAX_WINDOWS = 1  # bounded: one 9 s window per segment (segments are <= 30 s)
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


def speech_spans(vad_prob: np.ndarray, hop_s: float, threshold: float, n_samples: int,
                 pad_s: float = SPAN_PAD_S) -> list[tuple[int, int]]:
    """[start, end) sample spans of VAD speech, padded by pad_s and merged where they touch."""
    on = np.asarray(vad_prob) >= threshold
    if not on.any():
        return []
    edges = np.flatnonzero(np.diff(np.r_[0, on.astype(np.int8), 0]))
    pad, hop = int(pad_s * SAMPLE_RATE), int(round(hop_s * SAMPLE_RATE))
    spans: list[list[int]] = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        s, e = max(0, a * hop - pad), min(n_samples, b * hop + pad)
        if spans and s <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([s, e])
    return [(s, e) for s, e in spans if e > s]


class PitchTracker:
    """f0 per frame: PESTO (on CPU its ONNX export, annotators/speech/onnx_models.py: no torch) or pYIN."""

    def __init__(self, method: str, device: str = "cpu", step_ms: float = PITCH_STEP_MS, threads: int = 1):
        self.method = method
        self.device = device
        self.step_ms = step_ms
        self._onnx = None
        if method == "pesto":
            from importlib.metadata import version

            self.name = f"pesto mir-1k_g7 {version('pesto-pitch')}"
            if device == "cpu":
                from annotators.speech.onnx_models import PestoOnnx

                self._onnx = PestoOnnx(step_ms, threads)
            else:
                import pesto

                self._model = pesto.load_model("mir-1k_g7", step_size=step_ms,
                                               sampling_rate=SAMPLE_RATE).to(device).eval()
        else:
            import librosa

            self.name = f"librosa pyin {librosa.__version__}"

    def f0(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(f0_hz, confidence, hop_s) per frame."""
        if self._onnx is not None:
            f0, conf = self._onnx(audio)
            return f0, conf, self.step_ms / 1000
        if self.method == "pesto":
            import torch

            with torch.inference_mode():
                x = torch.from_numpy(audio.astype(np.float32)).to(self.device)
                f0, conf, _vol = self._model(x, sr=SAMPLE_RATE, convert_to_freq=True)[:3]
            return f0.reshape(-1).cpu().numpy(), conf.reshape(-1).cpu().numpy(), self.step_ms / 1000
        import librosa

        f0, _voiced, prob = librosa.pyin(audio, fmin=60, fmax=500, sr=SAMPLE_RATE, frame_length=1024, hop_length=320)
        return np.nan_to_num(f0), prob, 0.02

    def f0_in_spans(self, audio: np.ndarray, spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(f0_hz, confidence, time_s in the segment) of the frames inside `spans`, from one call on the
        spans joined end to end (a frame straddling a join is dropped)."""
        x = np.concatenate([audio[s:e] for s, e in spans]).astype(np.float32)
        f0, conf, fhop = self.f0(x)
        tc = np.arange(f0.shape[0]) * fhop  # time in the joined signal
        lens = np.array([e - s for s, e in spans]) / SAMPLE_RATE
        starts_c = np.r_[0.0, np.cumsum(lens)[:-1]]
        k = np.clip(np.searchsorted(starts_c, tc, side="right") - 1, 0, len(spans) - 1)
        inside = (tc - starts_c[k] >= fhop / 2) & (starts_c[k] + lens[k] - tc >= fhop / 2)
        t = np.array([s for s, _ in spans])[k] / SAMPLE_RATE + (tc - starts_c[k])
        return f0[inside], conf[inside], t[inside]


class Dnsmos:
    """DNSMOS P.835 with speechmos's ONNX files in our own sessions (thread-limited, loaded once)."""

    INPUT_S = 9.01

    def __init__(self, hop_s: float = 9.0, threads: int = 1, max_windows: int | None = DNSMOS_MAX_WINDOWS):
        import speechmos

        from annotators.common.onnx import cpu_session

        d = Path(speechmos.__file__).parent / "dnsmos_models"
        self._sess = cpu_session(d / "sig_bak_ovr.onnx", threads)
        self.hop_s = hop_s
        self.max_windows = max_windows
        self.name = "dnsmos-p835 (speechmos)"

    def __call__(self, audio: np.ndarray, speech: np.ndarray | None = None) -> tuple[float, float, float]:
        """(sig, bak, ovrl) MOS, averaged over 9 s windows (short audio is looped to 9 s, as the reference).

        `speech`: per-sample speech mask; with `max_windows`, only that many windows are scored, those with
        the most speech."""
        n = int(self.INPUT_S * SAMPLE_RATE)
        a = audio.astype(np.float32)
        if not a.size:
            raise ValueError("empty audio")
        while a.shape[0] < n:
            a = np.concatenate([a, a])
        hop = int(self.hop_s * SAMPLE_RATE)
        starts = list(range(0, a.shape[0] - n + 1, hop)) or [0]
        if self.max_windows and len(starts) > self.max_windows:
            if speech is not None and speech.shape[0] >= a.shape[0]:
                c = np.r_[0, np.cumsum(speech[: a.shape[0]], dtype=np.int64)]
                starts = sorted(sorted(starts, key=lambda s: -(c[s + n] - c[s]))[: self.max_windows])
            else:
                starts = starts[: self.max_windows]
        raw = np.stack([self._sess.run(None, {"input_1": a[s : s + n][None]})[0][0] for s in starts])
        p_ovr = np.poly1d([-0.06766283, 1.11546468, 0.04602535])  # the reference's non-personalised fit
        p_sig = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
        p_bak = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
        sig, bak, ovr = p_sig(raw[:, 0]).mean(), p_bak(raw[:, 1]).mean(), p_ovr(raw[:, 2]).mean()
        return float(sig), float(bak), float(ovr)


class Paralinguistics:
    def __init__(self, cfg: ParalinguisticsConfig, device: str = "cpu", threads: int = 1, bounded: bool = True):
        self.cfg = cfg
        self.bounded = bounded
        step = PITCH_STEP_MS if bounded else PITCH_FULL_STEP_MS
        self.pitch = PitchTracker(cfg.pitch, device, step, threads) if cfg.pitch != "none" else None
        self.dnsmos = Dnsmos(cfg.dnsmos_hop_s, threads, DNSMOS_MAX_WINDOWS if bounded else None) if cfg.dnsmos else None
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
            if self.bounded:
                spans = speech_spans(vad_prob, hop_s, threshold, audio.shape[0])
                f0, conf, t = self.pitch.f0_in_spans(audio, spans)
            else:
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
            mask = np.repeat(vad_prob >= threshold, int(round(hop_s * SAMPLE_RATE)))
            sig, bak, ovr = self.dnsmos(audio, np.pad(mask, (0, max(0, audio.shape[0] - mask.shape[0]))))
            out.update(dnsmos_sig=round(sig, 3), dnsmos_bak=round(bak, 3), dnsmos_ovrl=round(ovr, 3))
        for k, c in self.classifiers.items():
            out[k] = c.predict(audio, SAMPLE_RATE) if c is not None and speech_s > 0 else AttributePrediction()
        return out
