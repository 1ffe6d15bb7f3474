"""Compare the installed packages with a lock file of exact pins; exit 3 and name every difference.

`python -m jobs.lockcheck requirements.lock` runs first in every submitted job, so a job fails in a second
with a readable list instead of hours later with an import error or a silently different model version.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

SELF = "eventcap"


@dataclass(frozen=True)
class Mismatch:
    name: str
    locked: str
    installed: str | None  # None: not installed


def read_pins(text: str) -> dict[str, str]:
    """{canonical name: version} of the `name==version` lines that apply to this platform."""
    pins: dict[str, str] = {}
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            req = Requirement(line.split(" --hash", 1)[0])
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        exact = [s.version for s in req.specifier if s.operator in ("==", "===")]
        if exact and canonicalize_name(req.name) != SELF:
            pins[canonicalize_name(req.name)] = exact[0]
    return pins


def check(pins: dict[str, str]) -> list[Mismatch]:
    out = []
    for name, version in sorted(pins.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            out.append(Mismatch(name, version, None))
            continue
        if have != version and have.split("+")[0] != version.split("+")[0]:
            out.append(Mismatch(name, version, have))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m jobs.lockcheck LOCKFILE", file=sys.stderr)
        return 2
    pins = read_pins(Path(argv[0]).read_text())
    bad = check(pins)
    if not bad:
        print(f"lock check: {len(pins)} pinned packages match {argv[0]}", file=sys.stderr)
        return 0
    print(f"lock check failed: {len(bad)} of {len(pins)} packages differ from {argv[0]} "
          "(set the nodes up from the lock: see ray_cluster.yaml):", file=sys.stderr)
    for m in bad:
        print(f"  {m.name}: locked {m.locked}, installed {m.installed or 'nothing'}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
