"""The fixed benchmark corpus of issue 20: ~11 minutes of mixed audio written as FLAC source files, cached.

    from bench.corpus import build_corpus
    c = build_corpus()              # Corpus: files (Path), audio_s, kinds per file
    c.unit()                        # every third file: the "1x" of the 1x/3x marginal-throughput pair

What it holds (all generated here or read from the Debian packages bench/realset.py uses, never from the
reserved ones): the real-recording set (effects, drum loops and music, the ALSA voice prompts, effect
scenes; bench/realset.py) and flite TTS dialogues of four voices (tests/synth_speech.py), so speech takes a
share close to a podcast-and-effects web crawl. Clips of one kind are joined into source files of 30-60 s
with 0.4 s of silence between them, as a crawl's files would hold several takes. `scale=k` returns a corpus
of k times the files, each copy with a gain 1 - 0.002*i so its bytes (and keys) differ: the job annotates
identical bytes only once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
GAP_S = 0.4
FILE_S = 45.0
LINES = ["The quick brown fox jumps over the lazy dog.", "Please call Stella and ask her to bring these things.",
         "It was a bright cold day in April, and the clocks were striking thirteen.",
         "We will meet at the station at seven in the morning.", "The birch canoe slid on the smooth planks.",
         "Glue the sheet to the dark blue background.", "Rice is often served in round bowls.",
         "The juice of lemons makes fine punch.", "Four hours of steady work faced us.",
         "A large size in stockings is hard to sell."]
N_DIALOGUES = 14
MUSIC_S = 230.0  # of the real set's 395 s of music: keeps speech at ~40 % of the corpus
VERSION = "1"  # bump when the recipe changes: the cache directory follows it


@dataclass
class Corpus:
    files: list[Path]
    audio_s: float
    kinds: dict[str, str]  # file name -> kind

    def unit(self) -> Corpus:
        files = self.files[::3]
        return Corpus(files, _seconds(files), {f.name: self.kinds[f.name] for f in files})

    def fraction(self, size: float) -> Corpus:
        """A share of each kind's files (at least one of each), for --size < 1 runs."""
        if size >= 1:
            return self
        by_kind: dict[str, list[Path]] = {}
        for f in self.files:
            by_kind.setdefault(self.kinds[f.name], []).append(f)
        files = sorted(f for fs in by_kind.values() for f in fs[: max(1, round(len(fs) * size))])
        return Corpus(files, _seconds(files), {f.name: self.kinds[f.name] for f in files})


def _seconds(files: list[Path]) -> float:
    return round(sum(sf.info(str(f)).duration for f in files), 2)


def cache_root() -> Path:
    return Path(os.environ.get("EVENTCAP_CACHE", Path.home() / ".cache" / "eventcap")) / "bench-corpus"


def _dialogues() -> list[np.ndarray]:
    from tests import synth_speech as ss

    voices = ss.FLITE_VOICES
    out = []
    for i in range(N_DIALOGUES):
        lines = [(voices[(i + j) % 4 if j % 2 else i % 4], LINES[(3 * i + j) % len(LINES)]) for j in range(4)]
        out.append(ss.flite_scene(lines, [0.6, 0.5, 0.8, 0.4], seed=i).audio)
    return out


def _first_seconds(clips: list[np.ndarray], seconds: float) -> list[np.ndarray]:
    out, n = [], 0
    for c in clips:
        if n >= seconds * SR:
            break
        out.append(c)
        n += c.shape[0]
    return out


def _group(kind: str, clips: list[np.ndarray]) -> list[tuple[str, np.ndarray]]:
    gap = np.zeros(int(GAP_S * SR), np.float32)
    out, cur, n = [], [], 0
    for c in clips:
        cur += [c.astype(np.float32), gap]
        n += c.shape[0]
        if n >= FILE_S * SR:
            out.append((kind, np.concatenate(cur)))
            cur, n = [], 0
    if cur:
        out.append((kind, np.concatenate(cur)))
    return out


def _write_base(d: Path) -> dict[str, str]:
    from bench.realset import load_realset

    rs = load_realset()
    groups = (_group("speech", [s.audio for s in rs.speech] + _dialogues()) + _group("music", _first_seconds([m.audio for m in rs.music], MUSIC_S))
              + _group("effects", [e.audio for e in rs.effects]) + _group("scenes", [s.audio for s in rs.scenes]))
    # interleave kinds so every third file (the unit) holds a bit of each
    by_kind: dict[str, list[np.ndarray]] = {}
    for k, a in groups:
        by_kind.setdefault(k, []).append(a)
    order: list[tuple[str, np.ndarray]] = []
    while any(by_kind.values()):
        for k in list(by_kind):
            if by_kind[k]:
                order.append((k, by_kind[k].pop(0)))
    kinds = {}
    d.mkdir(parents=True, exist_ok=True)
    for i, (k, a) in enumerate(order):
        name = f"{i:03d}-{k}.flac"
        sf.write(str(d / name), np.clip(a, -1, 1), SR, format="FLAC")
        kinds[name] = k
    return kinds


def build_corpus(scale: int = 1) -> Corpus:
    """The corpus (built once and cached); `scale` copies of it with distinct bytes."""
    tag = hashlib.sha256((VERSION + Path(__file__).read_text()).encode()).hexdigest()[:10]
    base = cache_root() / tag / "x1"
    marker = base / ".complete"
    if not marker.exists():
        kinds = _write_base(base)
        marker.write_text("\n".join(f"{k}\t{v}" for k, v in kinds.items()))
    kinds = dict(line.split("\t") for line in marker.read_text().splitlines())
    files = sorted(base / k for k in kinds)
    if scale > 1:
        d = base.parent / f"x{scale}"
        if not (d / ".complete").exists():
            d.mkdir(exist_ok=True)
            for i in range(scale):
                for f in files:
                    a, _ = sf.read(str(f), dtype="float32")
                    sf.write(str(d / f"c{i}-{f.name}"), a * (1 - 0.002 * i), SR, format="FLAC")
            (d / ".complete").write_text("")
        kinds = {f"c{i}-{k}": v for i in range(scale) for k, v in kinds.items()}
        files = sorted(d / k for k in kinds)
    return Corpus(files, _seconds(files), kinds)


if __name__ == "__main__":
    c = build_corpus()
    print(f"{len(c.files)} files, {c.audio_s:.1f} s ({c.audio_s / 60:.1f} min); unit {c.unit().audio_s:.1f} s")
    for f in c.files:
        print(f"  {f.name:28s} {sf.info(str(f)).duration:6.1f} s")
