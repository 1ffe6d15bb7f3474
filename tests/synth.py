"""Test audio with known truth: TTS sentences, piano-like chords, noise bursts, drum clicks, laid out in time."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


@dataclass
class Event:
    kind: str  # speech | music | noise | clicks | tone
    start_s: float
    end_s: float
    text: str = ""


def tts(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """espeak-ng speech at 16 kHz, trimmed to its voiced extent (so the event's truth is exact)."""
    import soxr

    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True,
                       capture_output=True)
        x, sr = sf.read(wav, dtype="float32")
    x = soxr.resample(x, sr, SR).astype(np.float32)
    x = 0.5 * x / (np.abs(x).max() + 1e-9)
    return trim(x)


def trim(x: np.ndarray, db: float = -45.0) -> np.ndarray:
    frame = 160
    n = len(x) // frame
    level = 10 * np.log10((x[: n * frame].reshape(n, frame) ** 2).mean(1) + 1e-12)
    on = np.flatnonzero(level > db)
    if on.size == 0:
        return x[:0]
    return x[on[0] * frame : (on[-1] + 1) * frame]


def chord(freqs: list[float], dur: float, amp: float = 0.25) -> np.ndarray:
    """A piano-like chord: harmonics with a fast attack and exponential decay."""
    t = np.arange(int(dur * SR)) / SR
    env = np.minimum(t / 0.01, 1.0) * np.exp(-t * 1.5)
    y = sum(sum(np.sin(2 * np.pi * f * h * t) / h**1.5 for h in range(1, 5)) for f in freqs)
    y = y * env
    y[-int(0.02 * SR):] *= np.linspace(1, 0, int(0.02 * SR))
    return (amp * y / np.abs(y).max()).astype(np.float32)


def chords(progression: list[list[float]], each_s: float) -> np.ndarray:
    return np.concatenate([chord(c, each_s) for c in progression])


def noise_burst(dur: float, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(int(dur * SR)).astype(np.float32) * amp
    ramp = int(0.005 * SR)
    y[:ramp] *= np.linspace(0, 1, ramp)
    y[-ramp:] *= np.linspace(1, 0, ramp)
    return y


def clicks(bpm: float, dur: float, amp: float = 0.6) -> np.ndarray:
    """A drum-like click track: short decaying noise+tone hits at a known tempo."""
    y = np.zeros(int(dur * SR), np.float32)
    hit_len = int(0.06 * SR)
    t = np.arange(hit_len) / SR
    rng = np.random.default_rng(1)
    hit = (np.sin(2 * np.pi * 180 * t) + 0.5 * rng.standard_normal(hit_len)) * np.exp(-t * 60)
    for k in range(int(dur * bpm / 60)):
        s = int(k * 60 / bpm * SR)
        e = min(s + hit_len, len(y))
        y[s:e] += (amp * hit[: e - s]).astype(np.float32)
    return y


def layout(parts: list[tuple[str, np.ndarray, float, str]], lead_s: float = 0.5, tail_s: float = 0.5,
           noise_floor: float = 0.0) -> tuple[np.ndarray, list[Event]]:
    """Concatenate (kind, audio, gap_after_s, text) parts; return the mix and each part's true extent."""
    out = [np.zeros(int(lead_s * SR), np.float32)]
    events = []
    pos = int(lead_s * SR)
    for kind, audio, gap, text in parts:
        on = np.flatnonzero(np.abs(audio) > 1e-3)  # the event is where the part is audible
        events.append(Event(kind, (pos + on[0]) / SR, (pos + on[-1] + 1) / SR, text))
        out += [audio, np.zeros(int(gap * SR), np.float32)]
        pos += len(audio) + int(gap * SR)
    out.append(np.zeros(int(tail_s * SR), np.float32))
    y = np.concatenate(out)
    if noise_floor > 0:
        y = y + np.random.default_rng(7).standard_normal(len(y)).astype(np.float32) * noise_floor
    return y.astype(np.float32), events


def write(path: Path, audio: np.ndarray, sr: int = SR, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, **kw)
    return path


def encode(src: Path, dst: Path, *args: str) -> Path:
    """Re-encode with ffmpeg (mp3, ogg, opus, m4a, other rates and channel counts)."""
    assert shutil.which("ffmpeg"), "ffmpeg is installed by `make install`"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(src), *args, str(dst)], check=True)
    return dst


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "We will meet at the station at seven in the morning.",
    "Audio segmentation must never cut a word in half.",
    "The weather today is cold and windy with some rain.",
    "She sells sea shells by the sea shore every summer.",
]
C_MAJOR = [[261.63, 329.63, 392.00], [349.23, 440.00, 523.25], [392.00, 493.88, 587.33], [261.63, 329.63, 392.00]]
A_MINOR = [[220.00, 261.63, 329.63], [293.66, 349.23, 440.00], [329.63, 415.30, 493.88], [220.00, 261.63, 329.63]]
