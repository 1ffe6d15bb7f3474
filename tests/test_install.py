"""The installation is what the lock says: every imported package declared and pinned, `eventcap doctor`
passes on this tree and names what breaks, progress bars follow the terminal."""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tomllib
from contextlib import redirect_stdout
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTCAP = [sys.executable, "-m", "jobs.cli"]
LOCAL = {"pipeline", "stages", "annotators", "schemas", "jobs", "trainer", "bench", "tests"}
# imported only inside `try: ... except ImportError` as optional backends, never installed by default
OPTIONAL = {"essentia", "peft"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0])


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _declared() -> set[str]:
    proj = _pyproject()
    reqs = list(proj["project"]["dependencies"])
    for extra in proj["project"].get("optional-dependencies", {}).values():
        reqs += extra
    reqs += proj["tool"]["eventcap"]["no-deps"]
    return {_req_name(r) for r in reqs}


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            assert ver, f"lock line without an exact version: {line!r}"
            pins[_norm(name)] = ver
    return pins


def _imported_modules() -> dict[str, str]:
    """Top-level module -> first file importing it, over every .py file of the project."""
    found: dict[str, str] = {}
    for top in sorted(LOCAL):
        for path in sorted((ROOT / top).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for n in names:
                    found.setdefault(n.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared_and_locked():
    dists = packages_distributions()
    declared, lock = _declared(), _lock()
    problems = []
    for mod, where in sorted(_imported_modules().items()):
        if mod in LOCAL or mod in sys.stdlib_module_names or mod in OPTIONAL or mod == "__future__":
            continue
        names = {_norm(d) for d in dists.get(mod, [])}
        if not names:
            problems.append(f"{mod} (imported in {where}): no installed distribution provides it")
            continue
        if not names & declared:
            problems.append(f"{mod} (imported in {where}): {sorted(names)} not declared in pyproject.toml")
        if not names & set(lock):
            problems.append(f"{mod} (imported in {where}): {sorted(names)} not pinned in requirements.lock")
    assert not problems, "\n".join(problems)


def test_lock_pins_every_declared_package_exactly():
    lock = _lock()
    missing = sorted(d for d in _declared() if d not in lock)
    assert not missing, f"declared but not in requirements.lock: {missing}"
    for name in ("torch", "torchaudio", "resemblyzer", "basic-pitch", "llama-cpp-python", "pip", "setuptools"):
        assert name in lock, name
    assert lock["torch"].split("+")[0] == lock["torchaudio"].split("+")[0]


def test_installed_environment_equals_the_lock():
    """`pip freeze` of the venv is the lock, apart from the project itself (what `make install` guarantees)."""
    import sysconfig
    from importlib.metadata import distributions

    # what pip sees in the venv's site-packages (not whatever another test put on sys.path)
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {_norm(d.metadata["Name"]): d.version for d in distributions(path=site)}
    lock = _lock()
    off = {n: (installed.get(n), lock.get(n)) for n in set(installed) | set(lock)
           if installed.get(n) != lock.get(n) and n != "eventcap"}
    assert not off, f"(installed, lock) differ: {dict(sorted(off.items()))}"


@pytest.mark.slow
def test_doctor_passes_on_this_installation():
    r = subprocess.run(EVENTCAP + ["doctor"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    for item in ("torch+torchaudio", "model: YAMNet", "model: whisper base", "model: whisper tiny.en",
                 "model: resemblyzer", "model: DNSMOS", "model: pesto", "model: basic-pitch", "tool: ffmpeg",
                 "gpu", "ray address"):
        assert re.search(rf"^ok\s+{re.escape(item)}\s", r.stdout, re.M), (item, r.stdout)


def test_doctor_names_a_broken_model_and_exits_1(tmp_path):
    from jobs import doctor

    env = {"EVENTCAP_YAMNET_MODEL": str(tmp_path / "missing" / "YamNet_w8a8.onnx.zip")}
    selected = [c for c in doctor.checks() if c.name in ("model: YAMNet", "tool: sox")]
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        buf = io.StringIO()
        with redirect_stdout(buf):
            results = doctor.run_checks(selected)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    by_name = {r.check.name: r for r in results}
    assert not by_name["model: YAMNet"].ok and "missing" in by_name["model: YAMNet"].detail
    assert by_name["tool: sox"].ok


@pytest.mark.slow
def test_doctor_cli_exit_code_when_broken(tmp_path):
    """The real command, an item broken through the environment: exit 1, the item named with its fix."""
    env = dict(os.environ, EVENTCAP_YAMNET_MODEL=str(tmp_path / "nope.onnx"))
    r = subprocess.run(EVENTCAP + ["doctor", "--quiet"], cwd=ROOT, capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"^FAIL model: YAMNet\s+FileNotFoundError: YAMNet model not found", r.stdout, re.M), r.stdout
    assert "fix: check EVENTCAP_YAMNET_MODEL" in r.stdout
    assert "1 required item(s) failing: model: YAMNet" in r.stdout


def test_progress_bars_follow_the_terminal(monkeypatch):
    from jobs.cli import _progress, build_parser

    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert _progress(None) is False
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert _progress(None) is True
    args = build_parser().parse_args(["annotate", "x", "--output", "o", "--no-progress"])
    assert _progress(args.progress) is False
    args = build_parser().parse_args(["annotate", "x", "--output", "o", "--progress"])
    assert _progress(args.progress) is True
