"""A corpus of hostile inputs, each with the outcome the annotate job must give it.

`build_hostile_corpus(root)` writes the files under `root/in` and returns (inputs, expected): the job's input
arguments (the directory and a URI list) and, per source URI, either "annotated" or the quarantine error class
whose message must name the problem.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from tests import synth as S

ANNOTATED = "annotated"


def _wav_header(channels: int, rate: int, bits: int, data_bytes: int, fmt_tag: int = 1) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_bytes))


def _content(seconds: float, seed: int = 1) -> np.ndarray:
    """Something the segmenter keeps: noise bursts with pauses (a different seed gives different content)."""
    parts = [("noise", S.noise_burst(1.2, seed=seed), 0.5, ""), ("noise", S.noise_burst(0.9, seed=seed + 7), 0.4, "")]
    x, _ = S.layout(parts)
    reps = int(np.ceil(seconds * S.SR / len(x)))
    return np.tile(x, reps)[: int(seconds * S.SR)]


def write_noise_flac(path: Path, seconds: float, seed: int = 0, rms: float = 0.01, block_s: float = 60.0) -> Path:
    """White noise (16 kHz mono FLAC, `rms` full scale) written a block at a time: never whole in memory."""
    rng = np.random.default_rng(seed)
    n, block = int(seconds * S.SR), int(block_s * S.SR)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", samplerate=S.SR, channels=1, format="FLAC", subtype="PCM_16") as f:
        for lo in range(0, n, block):
            f.write(rms * rng.standard_normal(min(block, n - lo), dtype=np.float32))
    return path


def build_hostile_corpus(root: Path) -> tuple[list[str], dict[str, str]]:
    d = root / "in"
    d.mkdir(parents=True)
    exp: dict[str, str] = {}

    def put(name: str, outcome: str) -> Path:
        exp[str(d / name)] = outcome
        return d / name

    # --- broken containers
    full = d / ".full.flac"  # hidden: not listed itself
    S.write(full, _content(4.0, seed=3))
    data = full.read_bytes()
    put("truncated.flac", "DecodeError").write_bytes(data[: len(data) // 2])
    pcm = (_content(1.0, seed=4) * 20000).astype("<i2").tobytes()
    put("claims_10h.wav", ANNOTATED).write_bytes(_wav_header(1, 16000, 16, 10 * 3600 * 16000 * 2) + pcm)
    put("zero_bytes.wav", "EmptyFile").write_bytes(b"")
    put("random_bytes.mp3", "NotAudio").write_bytes(np.random.default_rng(0).bytes(20000))
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + np.random.default_rng(1).bytes(3000)
    put("picture.png.wav", "NotAudio").write_bytes(png)
    put("unknown_codec.wav", "NotAudio").write_bytes(_wav_header(1, 16000, 16, len(pcm), fmt_tag=0x7777) + pcm)
    # --- hostile samples
    nan = np.full(3 * S.SR, np.nan, np.float32)
    sf.write(put("all_nan.wav", "NonFiniteSamples"), nan, S.SR, subtype="FLOAT")
    sf.write(put("all_inf.wav", "NonFiniteSamples"), np.full(3 * S.SR, np.inf, np.float32), S.SR, subtype="FLOAT")
    S.write(put("digital_silence.wav", "AllSilence"), np.zeros(4 * S.SR, np.float32))
    t = np.arange(3 * S.SR) / S.SR
    S.write(put("clipped_square.wav", ANNOTATED), np.sign(np.sin(2 * np.pi * 220 * t)).astype(np.float32) * 1.0)
    sr8 = 192000
    x8 = np.repeat(_content(2.5, seed=5)[:, None], 8, axis=1)
    x8 = np.stack([np.interp(np.arange(int(2.5 * sr8)) * S.SR / sr8, np.arange(len(x8)), x8[:, 0])] * 8, 1)
    sf.write(put("eight_ch_192k.wav", ANNOTATED), x8.astype(np.float32), sr8, subtype="PCM_24")
    tel = _content(3.0, seed=6)[::2]
    S.write(put("telephone_8k.wav", ANNOTATED), tel, 8000)
    S.write(put("tiny_0.05s.wav", "TooShort"), S.noise_burst(0.05))
    # --- names
    S.write(put("name with spaces.wav", ANNOTATED), _content(2.5, seed=8))
    S.write(put("ünïcödé 名前.flac", ANNOTATED), _content(2.5, seed=9))
    S.write(put("quote's \"double\".wav", ANNOTATED), _content(2.5, seed=10))
    S.write(put("new\nline.wav", ANNOTATED), _content(2.5, seed=11))
    # --- duplicates: same bytes under two names (one sample of audio, two sources)
    S.write(put("dup_a.wav", ANNOTATED), _content(2.5, seed=12))
    (d / "sub").mkdir()
    put("sub/dup_b.wav", ANNOTATED).write_bytes((d / "dup_a.wav").read_bytes())
    # --- links
    os.symlink(d / "loop", d / "loop")  # a link to itself
    os.symlink("..", d / "sub" / "back_up")  # a directory loop (not followed: no file appears twice)
    outside = root / "outside.wav"
    S.write(outside, _content(2.5, seed=13))
    os.symlink(outside, d / "escape.wav")  # out of the input tree
    exp[str(d / "loop")] = "BrokenSymlink"
    exp[str(d / "sub" / "back_up")] = "SymlinkedDirectory"
    exp[str(d / "escape.wav")] = "SymlinkOutsideInput"
    # --- a URI list: duplicates, blank lines, a comment, a `../` path, a missing file
    lst = root / "uris.txt"
    lines = ["", str(d / "dup_a.wav"), "   ", str(d / "dup_a.wav"), "# a comment",
             str(d / "sub" / ".." / "clipped_square.wav"), "", str(d / "missing.wav"), ""]
    lst.write_text("\n".join(lines))
    exp[str(d / "missing.wav")] = "NotFound"
    return [str(d), str(lst)], exp
