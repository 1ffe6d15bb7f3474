"""Small SFT shards in the `eventcap sft` layout (issue 17), written by the tests themselves.

A sample is <key>.json (+ <key>.flac when the audio is embedded): {sample_id, task, key, prompt, answer,
thinking, prompt_id, seed, messages, audio_ref, and the task's structured reference fields}: "transcript"
for asr, "words" [{word, start_s, end_s}] for asr_ts, "events" for event_localisation, "tempo_bpm" / "key" /
"tags" for music_qa, "n_speakers" for speaker_ts. Samples without their own audio point at an
annotate-style shard through audio_ref "shard-000000.tar/KEY".
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np

from schemas.timemarkers import format_timestamped_words
from tests.trainer_fixtures import add_member, flac_bytes

SR = 16_000


def tone(freq: float, seconds: float, second_freq: float | None = None) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = np.sin(2 * np.pi * freq * t)
    if second_freq:
        x = np.where(t < seconds / 2, x, np.sin(2 * np.pi * second_freq * t))
    return (0.3 * x).astype(np.float32)


def sft_sample(key: str, task: str, prompt: str, answer: str, **fields) -> dict:
    return {"sample_id": f"{key}:{task}", "task": task, "key": key, "prompt": prompt, "answer": answer,
            "thinking": None, "prompt_id": 0, "seed": 0, "audio_ref": f"shard-000000.tar/{key}",
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            **fields}


def words_sample(key: str, words: list[tuple[str, float, float]], task: str = "asr_ts") -> dict:
    w = [{"word": x, "start_s": s, "end_s": e} for x, s, e in words]
    if task == "asr_ts":
        return sft_sample(key, task, "Transcribe with word timestamps.", format_timestamped_words(w), words=w)
    text = " ".join(x for x, _, _ in words)
    return sft_sample(key, task, "Transcribe the speech.", text, transcript=text)


# (key, audio, sample) for the overfit set: caption, asr and asr_ts, two each, each on its own audio
def overfit_set() -> list[tuple[str, np.ndarray, dict]]:
    items = [
        ("cap440", tone(440, 1.2), sft_sample("cap440", "caption", "Describe the audio.", "A steady 440 Hz tone.")),
        ("cap880", tone(880, 1.6), sft_sample("cap880", "caption", "Describe the audio.", "A high beep.")),
        ("asr330", tone(330, 1.4, 660), words_sample("asr330", [("hello", 0.1, 0.5), ("there", 0.6, 1.1)], "asr")),
        ("asr550", tone(550, 1.0), words_sample("asr550", [("good", 0.05, 0.4), ("day", 0.5, 0.9)], "asr")),
        ("ts220", tone(220, 2.1), words_sample("ts220", [("one", 0.2, 0.6), ("two", 0.9, 1.3), ("three", 1.5, 2.0)])),
        ("ts770", tone(770, 1.5, 990), words_sample("ts770", [("yes", 0.12, 0.5), ("sir", 0.7, 1.24)])),
    ]
    return items


def unseen_set() -> list[tuple[str, np.ndarray, dict]]:
    return [
        ("capnew", tone(600, 1.3), sft_sample("capnew", "caption", "Describe the audio.", "A 600 Hz tone.")),
        ("asrnew", tone(300, 1.2), words_sample("asrnew", [("good", 0.1, 0.4), ("night", 0.5, 1.0)], "asr")),
        ("tsnew", tone(700, 1.7), words_sample("tsnew", [("yes", 0.2, 0.6), ("two", 0.8, 1.5)])),
    ]


def write_sft_shard(path: Path, items: list[tuple[str, np.ndarray, dict]], embed_audio: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, audio, sample in items:
            add_member(tar, f"{key}.json", json.dumps(sample).encode())
            if embed_audio:
                add_member(tar, f"{key}.flac", flac_bytes(audio))
    return path


def write_audio_shard(path: Path, items: list[tuple[str, np.ndarray, dict]]) -> Path:
    """An annotate-style shard holding only the audio (<key>.flac) that audio_ref points at."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, audio, _ in items:
            add_member(tar, f"{key}.flac", flac_bytes(audio))
    return path
