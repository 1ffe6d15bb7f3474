"""`make bench`: issue 20's suite, every figure printed and written under bench/results/.

    python -m bench.suite [--size 1.0]      (~12 min on 2 idle cores; --size 0.3 iterates in ~3-4 min)

Runs bench/annotate.py (pipeline vs faster-whisper alone vs the plain loop, stages, per-model profile,
steady state, first segment, peak PSS), bench/scaling.py (1x/4x/16x), bench/shards.py (webdataset vs tarfile)
and bench/extras.py (bounded vs full pitch and DNSMOS). The per-branch benches stay under `make bench-branches`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=float, default=1.0, help="share of the corpus (annotate), scales the others")
    args = ap.parse_args()
    small = args.size < 1
    steps = [
        ["bench.annotate", "--size", str(args.size)],
        ["bench.scaling", "--unit-s", "10" if small else "20"],
        ["bench.shards"],
        ["bench.extras", "--n", "4" if small else "8"],
    ]
    t0, failed = time.time(), []
    for cmd in steps:
        print(f"== {cmd[0]}", flush=True)
        if subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT).returncode:
            failed.append(cmd[0])
    print(f"== bench suite: {time.time() - t0:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
