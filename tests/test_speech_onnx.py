"""The speech actor's ONNX exports of PESTO and Resemblyzer give the torch models' answers on real recordings
(the two-speaker sample inside the pyannote.audio wheel, ALSA's recorded voice prompts), and a speech actor on
CPU never imports torch (issue 20: ~480 MiB of PSS)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from annotators.common import SAMPLE_RATE
from schemas.speech_config import DiarizationConfig

ROOT = Path(__file__).parent.parent
ALSA = Path("/usr/share/sounds/alsa")


def _real_speech() -> dict[str, np.ndarray]:
    import librosa
    import pyannote.audio

    out = {"pyannote_sample": sf.read(Path(pyannote.audio.__file__).parent / "sample" / "sample.wav",
                                      dtype="float32")[0]}
    for name in ("Front_Center", "Rear_Left"):
        x, sr = sf.read(ALSA / f"{name}.wav", dtype="float32", always_2d=True)
        out[name] = librosa.resample(x.mean(axis=1), orig_sr=sr, target_sr=SAMPLE_RATE)
    return out


@pytest.fixture(scope="module")
def speech():
    return _real_speech()


def test_pitch_onnx_gives_pestos_answers(speech):
    import pesto
    import torch

    from annotators.speech.paraling import PITCH_STEP_MS, PitchTracker

    onnx = PitchTracker("pesto", "cpu", PITCH_STEP_MS)
    assert onnx._onnx is not None
    model = pesto.load_model("mir-1k_g7", step_size=PITCH_STEP_MS, sampling_rate=SAMPLE_RATE).eval()
    for name, x in speech.items():
        f0, conf, hop = onnx.f0(x)
        with torch.inference_mode():
            f0_t, conf_t = (t.numpy() for t in model(torch.from_numpy(x), sr=SAMPLE_RATE, convert_to_freq=True)[:2])
        assert f0.shape == f0_t.shape and hop == PITCH_STEP_MS / 1000, name
        voiced = conf_t > 0.5
        assert voiced.sum() > 20, name  # real voiced speech in every recording
        cents = 1200 * np.abs(np.log2(f0[voiced] / f0_t[voiced]))
        print(f"\n{name}: {voiced.sum()} voiced frames, max |ONNX - torch| {cents.max():.4f} cents, "
              f"confidence {np.abs(conf - conf_t).max():.2e}")
        assert cents.max() < 0.1 and np.abs(conf - conf_t).max() < 1e-3, name


def test_speaker_embeddings_and_turns_onnx_give_resemblyzers_answers(speech):
    from resemblyzer import VoiceEncoder

    from annotators.common.vad import SileroVad
    from annotators.speech.diarize import ResemblyzerDiarizer

    cfg = DiarizationConfig()
    fast = ResemblyzerDiarizer(cfg)
    assert fast.onnx is not None
    ref = ResemblyzerDiarizer(cfg)
    ref.onnx, ref.encoder = None, VoiceEncoder(device="cpu", verbose=False)  # the torch encoder, on CPU
    x = speech["pyannote_sample"]
    centers = np.arange(1.0, x.shape[0] / SAMPLE_RATE - 1.0, 0.5)
    a, b = fast.embed_windows(x, centers), ref.embed_windows(x, centers)
    cos = np.sum(a * b, axis=1)
    print(f"\n{len(centers)} windows: min cosine(ONNX, torch) {cos.min():.6f}, max |diff| {np.abs(a - b).max():.2e}")
    assert cos.min() > 0.9999
    vad = SileroVad().speech_prob(x)
    assert fast.diarize(x, vad, 0.032) == ref.diarize(x, vad, 0.032)  # the same turns, to the millisecond


def test_speech_actor_on_cpu_never_imports_torch(speech, tmp_path):
    x = speech["pyannote_sample"][: 12 * SAMPLE_RATE]
    sf.write(tmp_path / "s.wav", x, SAMPLE_RATE)
    code = f"""
import json, sys
import soundfile as sf
from annotators.base import BranchInput
from annotators.speech.annotator import SpeechAnnotator
x, _ = sf.read({str(tmp_path / "s.wav")!r}, dtype="float32")
a = SpeechAnnotator(num_threads=1)
out = a.annotate([BranchInput(audio=x, sample_rate=16000, segment=None, evidence=None)])[0]
print(json.dumps({{"torch": "torch" in sys.modules, "words": len(out.words), "pitch": out.f0_median_hz,
                  "speakers": out.n_speakers}}))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["torch"] is False
    assert got["words"] > 5 and got["pitch"] and 70 < got["pitch"] < 400  # it did the work
