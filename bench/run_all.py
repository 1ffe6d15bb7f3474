"""`make bench`: run every bench/bench_*.py in turn (each prints ratios measured side by side in one run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    failed = []
    for script in sorted(Path(__file__).parent.glob("bench_*.py")):
        print(f"== {script.stem}", flush=True)
        res = subprocess.run([sys.executable, "-m", f"bench.{script.stem}"], cwd=Path(__file__).parent.parent)
        if res.returncode:
            failed.append(script.stem)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
