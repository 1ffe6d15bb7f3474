"""The speech branch's extras, bounded vs full resolution: time and answers, side by side in one run.

    python -m bench.extras [--n 12]

On flite speech segments of 8-30 s (one voice, or dialogues of two; tests/synth_speech.py) with the Silero VAD
curve the segmenter would hand over: pitch (PESTO over the VAD speech spans at 20 ms vs every frame at 10 ms)
and DNSMOS (one 9 s window, the one with the most speech, vs every window). Prints seconds of each and the
differences of the answers: F0 median / 5th / 95th percentile in cents, voice register agreement, DNSMOS
SIG/BAK/OVRL in MOS points. Writes bench/results/extras.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent


def segments(n: int) -> list[np.ndarray]:
    from bench.corpus import LINES
    from tests import synth_speech as ss

    v = ss.FLITE_VOICES
    out = []
    for i in range(n):
        k = 2 + (i % 5)  # 2..6 sentences: 6-30 s
        one = i % 3 == 0
        lines = [(v[i % 4] if one or j % 2 == 0 else v[(i + 1) % 4], LINES[(i + j) % len(LINES)]) for j in range(k)]
        out.append(ss.flite_scene(lines, [0.5] * k, seed=i).audio)
    return out


class Timed:
    """Calls `fn`, adding its seconds to `times[key]`."""

    def __init__(self, fn, times: dict[str, float], key: str):
        self.fn, self.times, self.key = fn, times, key
        self.name = getattr(fn, "name", key)

    def __call__(self, *a, **k):
        t = time.perf_counter()
        try:
            return self.fn(*a, **k)
        finally:
            self.times[self.key] += time.perf_counter() - t


def cents(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(abs(1200 * np.log2(a / b)), 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "extras.json"))
    args = ap.parse_args()
    import torch

    from annotators.common.vad import SileroVad
    from annotators.speech.paraling import Paralinguistics
    from bench.procmem import loadavg
    from schemas.speech_config import ParalinguisticsConfig

    torch.set_num_threads(1)
    audios = segments(args.n)
    vad = SileroVad(1)
    vads = [vad.speech_prob(a) for a in audios]
    hop = 0.032
    cfg = ParalinguisticsConfig()
    runs = {}
    load0 = loadavg()
    for name, bounded in (("full", False), ("bounded", True)):
        para = Paralinguistics(cfg, threads=1, bounded=bounded)
        times = {"pitch": 0.0, "dnsmos": 0.0}
        para.pitch.f0 = Timed(para.pitch.f0, times, "pitch")
        para.dnsmos = Timed(para.dnsmos, times, "dnsmos")
        para.measure(audios[0], vads[0], hop, ["warm"])  # warm-up
        times.update(pitch=0.0, dnsmos=0.0)
        res = [para.measure(a, v, hop, ["x"]) for a, v in zip(audios, vads, strict=True)]
        runs[name] = {"times_s": {k: round(x, 2) for k, x in times.items()}, "results": res}
    full, bnd = runs["full"]["results"], runs["bounded"]["results"]
    diff = {
        "f0_median_cents": [cents(a.get("f0_median_hz"), b.get("f0_median_hz")) for a, b in zip(full, bnd, strict=True)],
        "f0_p5_cents": [cents(a.get("f0_min_hz"), b.get("f0_min_hz")) for a, b in zip(full, bnd, strict=True)],
        "f0_p95_cents": [cents(a.get("f0_max_hz"), b.get("f0_max_hz")) for a, b in zip(full, bnd, strict=True)],
        "register_agree": sum(a.get("voice_register") == b.get("voice_register") for a, b in zip(full, bnd, strict=True)),
        "dnsmos_ovrl_abs": [round(abs(a["dnsmos_ovrl"] - b["dnsmos_ovrl"]), 3) for a, b in zip(full, bnd, strict=True)],
        "dnsmos_sig_abs": [round(abs(a["dnsmos_sig"] - b["dnsmos_sig"]), 3) for a, b in zip(full, bnd, strict=True)],
        "dnsmos_bak_abs": [round(abs(a["dnsmos_bak"] - b["dnsmos_bak"]), 3) for a, b in zip(full, bnd, strict=True)],
    }
    audio_s = round(sum(a.shape[0] for a in audios) / 16000, 1)
    out = {"segments": len(audios), "audio_s": audio_s, "load": [load0, loadavg()],
           "times_s": {k: runs[k]["times_s"] for k in runs}, "differences": diff}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{len(audios)} segments, {audio_s} s of speech; load {load0} -> {loadavg()}")
    for k in ("pitch", "dnsmos"):
        f, b = runs["full"]["times_s"][k], runs["bounded"]["times_s"][k]
        print(f"{k:8s} full {f:6.2f} s  bounded {b:6.2f} s  ({f / max(b, 1e-9):.1f}x less)")
    for k, v in diff.items():
        if isinstance(v, list):
            vals = [x for x in v if x is not None]
            print(f"  {k:18s} median {np.median(vals):7.2f}  max {max(vals):7.2f}  (n={len(vals)})")
        else:
            print(f"  {k:18s} {v}/{len(audios)}")


if __name__ == "__main__":
    main()
