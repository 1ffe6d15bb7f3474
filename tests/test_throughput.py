"""Issue 20: placement by cost, one thread source, bounded extras that give the same answers, the PSS probe."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.resources import TASK_CPUS, place_all
from schemas.config import JobConfig
from schemas.resources import ActorResources

SR = 16000


def _stages(cfg: JobConfig | None = None) -> list[tuple[str, ActorResources]]:
    cfg = cfg or JobConfig()
    return [("segment", cfg.segmenter.resources), ("speech", cfg.speech.resources), ("music", cfg.music.resources),
            ("general", cfg.general.resources)]


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 8, 16, 64])
def test_cost_weighted_placement_gives_speech_the_cores_and_never_starves_tasks(cpus):
    p = place_all(_stages(), {"CPU": cpus})
    held = sum(x.num_cpus * x.pool_size for x in p.values())
    assert held <= cpus - 2 * TASK_CPUS + 1e-9, (cpus, held)
    assert all(x.num_cpus > 0 and x.num_threads >= 1 and 1 <= x.min_size <= x.pool_size for x in p.values())
    speech_cores = p["speech"].num_threads * p["speech"].pool_size
    assert all(speech_cores >= x.num_threads * x.pool_size for x in p.values())  # the bottleneck gets the most
    if cpus >= 2:
        assert speech_cores >= 2 and p["speech"].num_threads <= cpus
    if cpus >= 16:
        assert p["speech"].pool_size > 1 and sum(x.pool_size for x in p.values()) > len(p)


def test_declared_cost_moves_the_cores_and_fixed_concurrency_is_kept():
    stages = _stages()
    stages[2] = ("music", ActorResources(cost=3.0))  # a music-heavy corpus, declared in the config
    p = place_all(stages, {"CPU": 16})
    assert p["music"].num_threads * p["music"].pool_size > p["speech"].num_threads * p["speech"].pool_size
    fixed = place_all([("speech", ActorResources(concurrency=3))], {"CPU": 8})["speech"]
    assert fixed.pool_size == fixed.min_size == 3


def test_annotators_take_the_placement_thread_count():
    from annotators.general import build_general_audio_annotator
    from annotators.music import build_music_annotator

    cfg = JobConfig()
    music, general = build_music_annotator(cfg.music, 3), build_general_audio_annotator(cfg.general, 2)
    assert music.threads == 3 and general.threads == 2
    assert music._yamnet_model is None and general._yamnet_model is None  # no second YAMNet until needed


def test_speech_spans_pad_and_merge():
    from annotators.speech.paraling import speech_spans

    hop = 0.032
    vad = np.zeros(100, np.float32)
    vad[10:20] = 0.9
    vad[23:30] = 0.9  # 3 frames (96 ms) apart: merged once padded by 0.1 s
    vad[60:70] = 0.9
    spans = speech_spans(vad, hop, 0.5, 100 * 512)
    assert len(spans) == 2
    (a, b), (c, d) = spans
    assert a == 10 * 512 - 1600 and b == 30 * 512 + 1600 and c == 60 * 512 - 1600 and d == 70 * 512 + 1600


def _voice(f0: float, seconds: float, seed: int) -> np.ndarray:
    """A harmonic vowel-like tone with slow vibrato: known F0."""
    t = np.arange(int(seconds * SR)) / SR
    inst = f0 * (1 + 0.02 * np.sin(2 * np.pi * 4 * t))
    ph = 2 * np.pi * np.cumsum(inst) / SR
    x = sum(np.sin(h * ph) / h for h in range(1, 8))
    rng = np.random.default_rng(seed)
    return (0.2 * x / np.abs(x).max() + 0.002 * rng.standard_normal(t.shape)).astype(np.float32)


def test_bounded_pitch_and_dnsmos_give_the_full_answers():
    from annotators.speech.paraling import Paralinguistics
    from schemas.speech_config import ParalinguisticsConfig

    hop = 0.032
    gap = np.zeros(int(1.5 * SR), np.float32)
    audio = np.concatenate([gap, _voice(110, 4, 0), gap, _voice(120, 5, 1), gap, gap, gap, gap])  # ~19.5 s
    vad = np.zeros(int(audio.shape[0] / SR / hop), np.float32)
    for a, b in ((1.5, 5.5), (7.0, 12.0)):
        vad[int(a / hop) : int(b / hop)] = 0.95
    full = Paralinguistics(ParalinguisticsConfig(), bounded=False).measure(audio, vad, hop, ["a"])
    fast = Paralinguistics(ParalinguisticsConfig(), bounded=True).measure(audio, vad, hop, ["a"])
    assert 105 < full["f0_median_hz"] < 125 and full["voice_register"] == fast["voice_register"] == "low"
    for k in ("f0_median_hz", "f0_min_hz", "f0_max_hz"):
        assert abs(1200 * np.log2(fast[k] / full[k])) < 30, (k, full[k], fast[k])  # under a third of a semitone
    # DNSMOS: two windows in full; the bounded one scores only the first, which holds all the speech
    assert abs(fast["dnsmos_ovrl"] - full["dnsmos_ovrl"]) < 0.5


def test_process_tree_pss_counts_children():
    from bench.procmem import watch

    code = ("import subprocess, sys, numpy as np; a = np.ones(60 * 2**20 // 8); "
            "subprocess.run([sys.executable, '-c', 'import numpy as np, time; b = np.ones(60 * 2**20 // 8); "
            "time.sleep(1.5)'])")
    w = watch([sys.executable, "-c", code], interval_s=0.2)
    assert w.returncode == 0 and w.peak_processes >= 2
    assert w.peak_pss_mib > 120  # both 60 MiB arrays, in two processes of the tree


def test_onnx_only_models_load_without_torch():
    code = ("import sys\nfrom schemas.config import JobConfig\nfrom annotators.music import build_music_annotator\n"
            "from annotators.general import build_general_audio_annotator\nfrom annotators.common.vad import SileroVad\n"
            "from annotators.common.yamnet import YamNet\nimport stages.segment, stages.branches\n"
            "c = JobConfig(); build_music_annotator(c.music, 1); build_general_audio_annotator(c.general, 1)\n"
            "SileroVad(1).speech_prob(__import__('numpy').zeros(16000, 'float32')); YamNet()\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_torch_free_vad_matches_silero_wrapper():
    from silero_vad import load_silero_vad

    from annotators.common.vad import SileroVad
    from tests import synth_speech as ss

    audio = np.concatenate([np.zeros(8000, np.float32), ss.flite("Seven bright boats sail home.", "kal"),
                            np.zeros(5000, np.float32)])
    ref_model = load_silero_vad(onnx=True)
    import torch

    x = torch.from_numpy(np.pad(audio, (0, -audio.shape[0] % 512)))
    ref = np.array([float(ref_model(x[i : i + 512], SR)) for i in range(0, x.shape[0], 512)])
    ours = SileroVad().speech_prob(audio)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < 1e-5
    assert ours.max() > 0.9 and ours[:10].max() < 0.2  # speech found, silence not


def test_a_branch_the_config_turns_off_leaves_the_plan_and_the_rest_gets_its_cores():
    from pipeline.plan import steps
    from stages.base import check_order

    cfg = JobConfig.model_validate({"speech": {"enabled": False}, "general": {"enabled": False}})
    plan = steps(None, registry=object())
    check_order([s.stage for s in plan])  # the order is checked as written (music still declares speech)
    active = [s.stage.name for s in plan if s.stage.active(cfg)]
    assert active == ["ingest", "segment", "route", "music", "caption"]
    assert [s.stage.name for s in plan if s.stage.active(JobConfig())] == [
        "ingest", "segment", "route", "speech", "music", "general", "caption"]
    both = place_all([("segment", cfg.segmenter.resources), ("music", cfg.music.resources)], {"CPU": 2})
    four = place_all(_stages(), {"CPU": 2})
    assert both["music"].num_cpus > four["music"].num_cpus  # the cores of the stages that left go to the others


def test_ray_data_section_sets_the_block_size_and_bounds_the_blocks_in_flight():
    from ray.data import DataContext

    from pipeline.raydata import apply_ray_data_config

    cfg = JobConfig.model_validate({"ray_data": {"object_store_limit_mb": 300, "target_block_mb": 8}})
    ctx = DataContext()
    apply_ray_data_config(ctx, cfg.ray_data, write_buffer_mb=64)
    assert ctx.target_max_block_size == 8 * 2**20
    assert ctx.execution_options.resource_limits.object_store_memory == 300 * 2**20
    apply_ray_data_config(ctx, cfg.ray_data, write_buffer_mb=400)  # the writer's buffer must fit: 2x it
    assert ctx.execution_options.resource_limits.object_store_memory == 800 * 2**20
    assert JobConfig().config_hash() == cfg.config_hash(), "ray_data is placement: not in the config hash"
