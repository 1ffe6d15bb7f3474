"""Speech with known truth for the speech-branch tests and bench: flite / espeak-ng TTS laid out in time.

Each phrase is synthesized alone and trimmed to where its samples rise above the noise floor, then placed at
a known time: the truth is where we put it, not what a model says.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000
FLITE_VOICES = ("kal", "slt", "rms", "awb")


def _read(path: Path) -> np.ndarray:
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SR:
        audio = soxr.resample(audio, sr, SR).astype(np.float32)
    return audio


def flite(text: str, voice: str = "slt") -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "x.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True, capture_output=True)
        return _read(out)


def espeak(text: str, voice: str = "en-us", speed: int = 150) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "x.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True,
                       capture_output=True)
        return _read(out)


def trim(audio: np.ndarray, rel_db: float = 40.0, frame: int = 160) -> np.ndarray:
    """Cut leading/trailing samples whose 10 ms frame energy is rel_db under the loudest frame."""
    n = audio.shape[0] // frame
    e = (audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12
    on = np.flatnonzero(10 * np.log10(e / e.max()) > -rel_db)
    if on.size == 0:
        return audio[:0]
    return audio[on[0] * frame : (on[-1] + 1) * frame]


@dataclass
class Placed:
    text: str
    speaker: str
    start_s: float
    end_s: float


@dataclass
class Scene:
    audio: np.ndarray
    phrases: list[Placed]

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.phrases)

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / SR


def layout(pieces: list[tuple[str, str, np.ndarray]], gaps_s: list[float], tail_s: float = 0.5,
           noise_db: float | None = -60.0, seed: int = 0) -> Scene:
    """Place (text, speaker, trimmed audio) pieces after the given gaps; optional faint white noise."""
    chunks, phrases, t = [], [], 0.0
    for (text, spk, a), gap in zip(pieces, gaps_s, strict=False):
        chunks.append(np.zeros(int(round(gap * SR)), np.float32))
        t += len(chunks[-1]) / SR
        a = 0.5 * a / (np.abs(a).max() + 1e-9)
        chunks.append(a.astype(np.float32))
        phrases.append(Placed(text, spk, t, t + a.shape[0] / SR))
        t = phrases[-1].end_s
    chunks.append(np.zeros(int(tail_s * SR), np.float32))
    audio = np.concatenate(chunks)
    if noise_db is not None:
        audio = audio + np.random.default_rng(seed).normal(0, 10 ** (noise_db / 20), audio.shape).astype(np.float32)
    return Scene(audio.astype(np.float32), phrases)


def flite_scene(lines: list[tuple[str, str]], gaps_s: list[float], **kw) -> Scene:
    """lines: (voice, text); each is synthesized with that flite voice and placed after its gap."""
    return layout([(text, voice, trim(flite(text, voice))) for voice, text in lines], gaps_s, **kw)


def tones(duration_s: float = 6.0, seed: int = 0) -> np.ndarray:
    """A little piece of music: a chord progression of harmonic tones with note onsets (no voice)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * SR)) / SR
    out = np.zeros_like(t)
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    step = 0.5
    for k in range(int(duration_s / step)):
        m = (t >= k * step) & (t < (k + 1) * step)
        env = np.exp(-3 * (t[m] - k * step))
        for f in chords[(k // 4) % 4]:
            f = f * (2 if rng.random() < 0.2 else 1)
            for h in range(1, 5):
                out[m] += env * np.sin(2 * np.pi * f * h * t[m]) / (h * 3)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)
