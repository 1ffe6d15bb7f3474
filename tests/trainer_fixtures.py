"""Small WebDataset shards in the annotate job's format (and the SFT job's), built with `tarfile`.

Annotate sample = <key>.flac (16 kHz mono) + <key>.json (a validated SegmentAnnotation) + <key>.txt
(the unified caption). The audio is a tone, a two-tone sequence or noise, and the caption says which;
every other sample carries a fake speech transcript with word times.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from schemas.annotation import SegmentAnnotation, SpeechAnnotation, Word

SR = 16_000
SOUNDS = [
    ("tone", 440.0, "A steady 440 Hz sine tone."),
    ("tone", 880.0, "A high 880 Hz beep, clean and constant."),
    ("two", 330.0, "Two tones in a row: a low one, then a higher one."),
    ("noise", 0.0, "Broadband white noise, like a hiss."),
    ("tone", 220.0, "A low hum at 220 Hz."),
    ("chirp", 200.0, "A rising chirp sweeping upward."),
]
WORDS = ["hello", "there", "this", "is", "a", "test", "of", "timed", "words"]


def synth(kind: str, freq: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(duration_s * SR)) / SR
    if kind == "tone":
        x = np.sin(2 * np.pi * freq * t)
    elif kind == "two":
        x = np.where(t < duration_s / 2, np.sin(2 * np.pi * freq * t), np.sin(4 * np.pi * freq * t))
    elif kind == "chirp":
        x = np.sin(2 * np.pi * (freq + 400 * t / duration_s) * t)
    else:
        x = rng.standard_normal(t.size)
    return (0.3 * x).astype(np.float32)


def flac_bytes(audio: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format="FLAC")
    return buf.getvalue()


def annotation(key: str, duration_s: float, caption: str, words: list[tuple[str, float, float]]) -> dict:
    speech = None
    if words:
        speech = SpeechAnnotation(
            transcript=" ".join(w for w, _, _ in words), language="en",
            words=[Word(word=w, start_s=s, end_s=e, probability=0.9) for w, s, e in words])
    n = int(duration_s * SR)
    ann = SegmentAnnotation(
        key=key, source_uri=f"file:///fixture/{key}.wav", source_sha256=hashlib.sha256(key.encode()).hexdigest(),
        sample_rate=SR, start_sample=0, end_sample=n, start_s=0.0, end_s=duration_s, duration_s=duration_s,
        cut_reasons=["source_start", "source_end"], routes=["speech"] if words else ["general"],
        speech_share=1.0 if words else 0.0, music_share=0.0, general_share=0.0 if words else 1.0,
        speech=speech, caption=caption, config_hash="fixture")
    return ann.model_dump(mode="json")


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_annotate_shards(out: Path, n_shards: int = 2, per_shard: int = 4, seed: int = 0,
                         durations: tuple[float, ...] = (1.0, 1.6, 2.3, 3.1)) -> list[Path]:
    """Write OUT/shards/shard-NNNNNN.tar; return their paths. Keys are unique hex strings."""
    rng = np.random.default_rng(seed)
    shard_dir = Path(out) / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    i = 0
    for s in range(n_shards):
        path = shard_dir / f"shard-{s:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for _ in range(per_shard):
                kind, freq, caption = SOUNDS[i % len(SOUNDS)]
                dur = durations[i % len(durations)]
                key = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:16]
                words = []
                if i % 2 == 1:  # a fake transcript, 0.3 s per word
                    n_words = max(1, int(dur / 0.35))
                    words = [(WORDS[(i + j) % len(WORDS)], round(0.05 + 0.35 * j, 2), round(0.3 + 0.35 * j, 2))
                             for j in range(n_words)]
                add_member(tar, f"{key}.flac", flac_bytes(synth(kind, freq, dur, rng)))
                add_member(tar, f"{key}.json", json.dumps(annotation(key, dur, caption, words)).encode())
                add_member(tar, f"{key}.txt", caption.encode())
                i += 1
        paths.append(path)
    return paths


def make_sft_shard(path: Path, n: int = 4, with_audio: bool = True, seed: int = 1) -> Path:
    """An SFT conversation shard: <key>.json {audio_key, audio_shard, messages, task} (+ <key>.flac)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            kind, freq, caption = SOUNDS[i % len(SOUNDS)]
            key = hashlib.sha256(f"sft:{seed}:{i}".encode()).hexdigest()[:16]
            conv = {"audio_key": key, "audio_shard": "shard-000000.tar", "task": "audio_qa",
                    "messages": [{"role": "user", "content": "What kind of sound is this?"},
                                 {"role": "assistant", "content": caption}]}
            add_member(tar, f"{key}.json", json.dumps(conv).encode())
            if with_audio:
                add_member(tar, f"{key}.flac", flac_bytes(synth(kind, freq, 1.2, rng)))
    return path
