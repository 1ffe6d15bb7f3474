"""Speaker turns on real audio (the two-speaker sample inside the pyannote.audio wheel) and the pyannote
pipeline loading path, exercised with a pipeline checkpoint built here (random weights: the test checks
the loading and calling code, not the output quality)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

from schemas.speech_config import DiarizationConfig  # noqa: E402

DER_BOUND = 0.25  # measured 0.174 (resemblyzer + spectral, no collar, overlap counted)


def _sample_dir() -> Path:
    import pyannote.audio

    return Path(pyannote.audio.__file__).parent / "sample"


def test_der_on_pyannote_sample():
    import soundfile as sf
    from pyannote.core import Annotation, Segment
    from pyannote.database.util import load_rttm
    from pyannote.metrics.diarization import DiarizationErrorRate

    from annotators.common.vad import SileroVad
    from annotators.speech.diarize import ResemblyzerDiarizer

    audio, sr = sf.read(_sample_dir() / "sample.wav", dtype="float32")
    assert sr == 16000
    ref = load_rttm(str(_sample_dir() / "sample.rttm"))["sample"]
    turns = ResemblyzerDiarizer(DiarizationConfig()).diarize(audio, SileroVad().speech_prob(audio), 0.032)
    hyp = Annotation(uri="sample")
    for spk, a, b in turns:
        hyp[Segment(a, b)] = spk
    der = DiarizationErrorRate()(ref, hyp)
    print(f"\nDER on the pyannote sample: {der:.3f} ({len(hyp.labels())} speakers found, reference 2)")
    assert len(hyp.labels()) == 2
    assert der <= DER_BOUND


def _build_local_pipeline(out: Path) -> Path:
    """A pyannote SpeakerDiarization pipeline directory with locally built (untrained) checkpoints."""
    import lightning
    import torch
    import yaml
    from pyannote.audio import __version__ as pyannote_version
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import XVectorSincNet
    from pyannote.audio.models.segmentation import PyanNet

    def save(model, path):
        torch.save({
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": lightning.__version__,
            "pyannote.audio": {
                "versions": {"pyannote.audio": pyannote_version},
                "architecture": {"module": type(model).__module__, "class": type(model).__name__},
                "specifications": model.specifications,
            },
        }, path)

    torch.manual_seed(0)
    seg = PyanNet(sincnet={"stride": 10}, lstm={"hidden_size": 16, "num_layers": 1, "bidirectional": True,
                                                "monolithic": True, "dropout": 0.0},
                  linear={"hidden_size": 16, "num_layers": 1})
    seg.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME, duration=5.0, min_duration=5.0,
        warm_up=(0.0, 0.0), classes=["speaker#1", "speaker#2", "speaker#3"], powerset_max_classes=2,
        permutation_invariant=True)
    seg.build()
    save(seg, out / "segmentation.ckpt")
    emb = XVectorSincNet(dimension=64)
    emb.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=3.0)
    save(emb, out / "embedding.ckpt")
    rng = np.random.default_rng(0)
    (out / "plda").mkdir()
    np.savez(out / "plda" / "xvec_transform.npz", mean1=np.zeros(64), mean2=np.zeros(32),
             lda=np.linalg.qr(rng.normal(size=(64, 32)))[0])
    np.savez(out / "plda" / "plda.npz", mu=np.zeros(32), tr=np.eye(32), psi=np.linspace(2.0, 0.5, 32))
    cfg = {
        "pipeline": {"name": "pyannote.audio.pipelines.SpeakerDiarization",
                     "params": {"segmentation": str(out / "segmentation.ckpt"),
                                "embedding": str(out / "embedding.ckpt"), "plda": str(out / "plda"),
                                "clustering": "AgglomerativeClustering", "segmentation_step": 0.5}},
        "params": {"segmentation": {"min_duration_off": 0.0},
                   "clustering": {"method": "centroid", "min_cluster_size": 2, "threshold": 0.7}},
    }
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    return out


@pytest.mark.timeout(240)
def test_pyannote_pipeline_from_local_checkpoint(tmp_path):
    import soundfile as sf

    from annotators.speech.diarize import PyannoteDiarizer, build_diarizer

    path = _build_local_pipeline(tmp_path)
    d = build_diarizer(DiarizationConfig(backend="pyannote", pipeline=str(path), device="cpu"))
    assert isinstance(d, PyannoteDiarizer) and d.version.startswith("4.")
    audio, _ = sf.read(_sample_dir() / "sample.wav", dtype="float32")
    turns = d.diarize(audio[: 6 * 16000])
    # Untrained weights: the output is arbitrary but must be well-formed turns inside the audio.
    for spk, a, b in turns:
        assert spk.startswith("SPEAKER_") and 0 <= a <= b <= 6.0 + 1e-3
    # A hub name without a token is refused before any download is tried.
    with pytest.raises(ValueError):
        PyannoteDiarizer(DiarizationConfig(backend="pyannote", pipeline="pyannote/speaker-diarization-community-1",
                                           token_env="EVENTCAP_TEST_NO_SUCH_TOKEN"))
