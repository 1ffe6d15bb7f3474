"""Time per audio-hour and peak memory of `eventcap annotate` at 1x, 4x and 16x the same material.

    python -m bench.scaling [--unit-s 20] [--factors 1 4 16]

The unit is a mixed clip cut from the bench corpus (speech, music, effects: bench/corpus.py); the k-x input
is ONE source file of k copies of it, each with its gain nudged so no two windows are byte-identical. Each
run is a whole process (Ray started by the job), its process tree's summed PSS sampled every 0.5 s.
Reports wall time, time per audio-hour, the marginal cost between consecutive sizes (the slope: seconds per
audio-hour once startup is paid) and the fixed cost (intercept of the 1x-16x line). Flat means the two
marginal slopes agree within noise; bounded memory means peak PSS does not grow with the length.
`--factors 1 4 16 360` adds a 2-hour file (20 s unit), outside `make bench`'s time budget.
Writes bench/results/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.annotate import PIPELINE_SETS, ROOT, env
from bench.corpus import SR, build_corpus
from bench.procmem import loadavg, watch


def unit_clip(seconds: float) -> np.ndarray:
    """Half speech, a quarter music, a quarter effects, cut from the corpus files of each kind."""
    c = build_corpus()
    parts = []
    for kind, share in (("speech", 0.5), ("music", 0.25), ("effects", 0.25)):
        f = next(f for f in c.files if c.kinds[f.name] == kind)
        a, _ = sf.read(str(f), dtype="float32", frames=int(seconds * share * SR), start=int(2 * SR))
        parts.append(a)
    return np.concatenate(parts)


def write_repeated(path: Path, unit: np.ndarray, k: int) -> float:
    with sf.SoundFile(str(path), "w", SR, 1, format="FLAC") as f:
        for i in range(k):
            f.write(unit * (1 - 0.001 * (i % 200)))
    return k * unit.shape[0] / SR


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--unit-s", type=float, default=20.0)
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scaling.json"))
    args = ap.parse_args()
    unit = unit_clip(args.unit_s)
    work = Path(tempfile.mkdtemp(prefix="eventcap-scaling-"))
    rows = []
    try:
        for k in args.factors:
            src = work / f"x{k}.flac"
            audio_s = write_repeated(src, unit, k)
            out = work / f"out{k}"
            sets = [a for s in PIPELINE_SETS for a in ("--set", s)]
            w = watch([sys.executable, "-m", "jobs.cli", "annotate", str(src), "-o", str(out), "--no-progress", *sets],
                      first_file=str(out / "shards" / "*.keys.json"), env=env(), cwd=str(ROOT))
            if w.returncode:
                raise RuntimeError(w.stderr[-3000:])
            d = w.as_dict()
            rows.append({"factor": k, "audio_s": round(audio_s, 1), **d,
                         "s_per_audio_hour": round(w.wall_s / audio_s * 3600, 1)})
            print(f"  {k:3d}x {audio_s:7.1f} s audio  {w.wall_s:7.1f} s wall  {rows[-1]['s_per_audio_hour']:8.0f} s/audio-h"
                  f"  peak PSS {w.peak_pss_mib:6.0f} MiB  load {w.load_before}", flush=True)
            src.unlink()
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    slopes = []
    for a, b in zip(rows, rows[1:], strict=False):
        da, dt = b["audio_s"] - a["audio_s"], b["wall_s"] - a["wall_s"]
        slopes.append({"from": a["factor"], "to": b["factor"], "s_per_audio_hour": round(dt / da * 3600, 1)})
    first, last = rows[0], rows[-1]
    slope = (last["wall_s"] - first["wall_s"]) / (last["audio_s"] - first["audio_s"])
    res = {"unit_s": args.unit_s, "runs": rows, "marginal_slopes": slopes,
           "line": {"s_per_audio_hour": round(slope * 3600, 1),
                    "fixed_cost_s": round(first["wall_s"] - slope * first["audio_s"], 1)},
           "slope_ratio_last_vs_first": round(slopes[-1]["s_per_audio_hour"] / slopes[0]["s_per_audio_hour"], 3)
           if len(slopes) >= 2 else None,
           "peak_pss_mib": [r["peak_pss_mib"] for r in rows], "load_end": loadavg()}
    Path(args.out).write_text(json.dumps(res, indent=2))
    print("marginal s per audio-hour:", ", ".join(f"{s['from']}x->{s['to']}x {s['s_per_audio_hour']:.0f}" for s in slopes))
    print(f"line: {res['line']['s_per_audio_hour']:.0f} s per audio-hour + {res['line']['fixed_cost_s']} s fixed; "
          f"slope ratio (last/first) {res['slope_ratio_last_vs_first']}; peak PSS MiB {res['peak_pss_mib']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
