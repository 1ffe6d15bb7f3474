"""Memory savings that must not change an answer (issues 20 and 22).

Each bounded computation is checked bit for bit against the whole computation it replaces, and the heap release
against what the process gives back to the system.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import annotators.common.yamnet as ym
from annotators.segmentation.evidence import frame_energy_db, grid_groups, spectral_novelty, yamnet_to_grid
from pipeline.resources import WORKER_MALLOC_ENV, release_free_heap
from schemas.config import JobConfig
from tests import synth

SR = 16000


def novelty_whole(x: np.ndarray, sr: int, hop: int, n_frames: int, context_s: float = 0.5) -> np.ndarray:
    """The novelty curve computed on the whole window at once: one padded copy, one pass over all frames."""
    import librosa

    if x.shape[0] < 2048:
        return np.zeros(n_frames, np.float32)
    n_fft, chunk = 1024, 1500
    xp = np.pad(x, (n_fft // 2, n_fft // 2 + hop * chunk))
    pieces = []
    for f0 in range(0, n_frames, chunk):
        seg = xp[f0 * hop: (f0 + chunk - 1) * hop + n_fft]
        mel = librosa.feature.melspectrogram(y=seg, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=48, center=False)
        pieces.append(np.log1p(mel * 100.0).T.astype(np.float32))
    logmel = np.concatenate(pieces)[:n_frames]
    w = max(1, int(round(context_s * sr / hop)))
    c = np.concatenate([np.zeros((1, logmel.shape[1])), np.cumsum(logmel, axis=0)])
    t = np.arange(n_frames)
    lo, hi = np.clip(t - w, 0, n_frames), np.clip(t + w, 0, n_frames)
    before = (c[t] - c[lo]) / np.maximum(t - lo, 1)[:, None]
    after = (c[hi] - c[t]) / np.maximum(hi - t, 1)[:, None]
    nov = 1.0 - (before * after).sum(1) / (np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1) + 1e-9)
    nov[(t - lo) < w // 2] = 0.0
    nov[(hi - t) < w // 2] = 0.0
    return np.clip(nov / 0.2, 0, 1).astype(np.float32)


@pytest.mark.parametrize("n", [2048, 5000, 320 * 1500 + 1, 320 * 3000 + 4321])
@pytest.mark.parametrize("hop", [320, 1600])
def test_chunked_novelty_is_the_whole_computation(n, hop):
    """Chord changes and noise bursts (the novelty curve's events) across several STFT pieces and frame chunks,
    including the pieces at both ends where the zero padding is cut in."""
    x = np.concatenate([synth.chords([[220, 277, 330], [196, 247, 294], [262, 330, 392]], 7.0),
                        synth.noise_burst(3.0, seed=3), synth.chords([[147, 185, 220]], 8.0)]).astype(np.float32)
    x = np.resize(x, n).astype(np.float32)
    frames = frame_energy_db(x, hop).shape[0]
    got, want = spectral_novelty(x, SR, hop, frames), novelty_whole(x, SR, hop, frames)
    assert got.dtype == want.dtype == np.float32 and np.array_equal(got, want)
    if n > 320 * 3000:
        assert got.max() > 0.5, "the chord changes are events"


def test_yamnet_groups_on_the_frame_grid_in_chunks_are_the_whole_grid():
    rng = np.random.default_rng(0)
    scores = rng.random((1250, ym.N_CLASSES), dtype=np.float32)  # 600 s of YAMNet frames
    times = np.arange(30000) * 0.02  # the default 20 ms grid of a 600 s window
    got, want = grid_groups(scores, times), ym.group_scores(yamnet_to_grid(scores, times))
    assert got.keys() == want.keys()
    for g in want:
        assert np.array_equal(got[g], want[g]), g
    assert grid_groups(scores, times[:0])["speech"].shape == (0,)


def test_asr_encoder_in_small_batches_gives_the_same_words_times_and_scores():
    """The embedded base model on three spoken windows: the encoder one window per call against all three in one
    call; the decoding batch is the same. Every word, time, probability and score must be equal."""
    from annotators.speech.asr import WhisperAsr
    from schemas.speech_config import AsrConfig

    audios = [synth.tts(t) for t in ("the quick brown fox jumps over the lazy dog",
                                     "please call stella and ask her to bring these things",
                                     "a tempo of one hundred and twenty beats per minute")]
    asr = WhisperAsr(AsrConfig(batch_size=3, encode_batch_size=3), 2)

    def run() -> list:
        return [(r.text, r.language, r.avg_logprob, r.no_speech_prob,
                 [(w.word, w.start_s, w.end_s, w.probability) for w in r.words]) for r in asr.transcribe(audios)]

    whole = run()
    asr.cfg = AsrConfig(batch_size=3, encode_batch_size=1)
    assert run() == whole
    assert all(len(r[4]) >= 5 for r in whole), whole


def test_encode_batch_size_is_placement_not_in_the_config_hash():
    base = JobConfig()
    other = JobConfig.model_validate({"speech": {"asr": {"encode_batch_size": 8}}})
    assert other.speech.asr.encode_batch_size == 8 and base.speech.asr.encode_batch_size == 2
    assert other.config_hash() == base.config_hash()
    assert JobConfig.model_validate({"speech": {"asr": {"batch_size": 4}}}).config_hash() != base.config_hash()


def rss_anon_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon")) / 1024


def test_release_free_heap_gives_freed_memory_back():
    """200 MiB in 100 KiB blocks (under glibc's mmap threshold: heap), every 20th kept so free cannot shrink the
    heap from the top: the freed ~190 MiB stays resident until the trim."""
    blocks = [bytearray(100 * 1024) for _ in range(2048)]
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    kept = blocks[::20]
    before = rss_anon_mib()
    del blocks, b
    after_free = rss_anon_mib()
    release_free_heap()
    after_trim = rss_anon_mib()
    assert before - after_free < 60, "glibc keeps what was freed inside the heap"
    assert after_free - after_trim > 120, (before, after_free, after_trim)
    assert all(k[::4096] == b"\x01" * len(k[::4096]) for k in kept), "the live blocks are untouched by the trim"


def test_heavy_actors_release_their_heap_after_each_output(monkeypatch):
    from stages import base
    from stages.branches import GeneralAudioStage, MusicStage, SpeechStage
    from stages.router import Router
    from stages.segment import EventSegmenter

    assert all(s.release_heap for s in (EventSegmenter, SpeechStage, MusicStage, GeneralAudioStage))
    assert not Router.release_heap  # a light task: Ray's own block conversion comes after the call
    assert WORKER_MALLOC_ENV["MIMALLOC_PURGE_DELAY"] == "0"  # pyarrow's pool returns freed blocks at once

    calls = []
    monkeypatch.setattr(base, "release_free_heap", lambda: calls.append(1))

    class Twice(base.RowStage):
        name = "twice"
        handles = frozenset({base.RowKind.SOURCE})
        flush_every = 2
        release_heap = True

        def process(self, row):
            return [base.Row(base.RowKind.SOURCE, row.payload, key=f"{row.key}-{i}") for i in range(3)]

    rows = [base.Row(base.RowKind.SOURCE, "{}", key=k).to_dict() for k in ("a", "b")]
    out = list(Twice(JobConfig())(base.to_batch(rows)))
    assert [k for o in out for k in o["key"]] == ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]
    assert len(calls) == len(out), "once after each output batch"


LOCAL_RAY_PROBE = r"""
import glob, json, os, sys, time
import ray
from pipeline.run import init_ray

os.environ.pop("MALLOC_ARENA_MAX", None); os.environ.pop("MIMALLOC_PURGE_DELAY", None)
os.environ.pop("RAY_ADDRESS", None)
init_ray("local")
logs = ray._private.worker._global_node.get_logs_dir_path() + "/python-core-worker-*.log"
deadline = time.time() + 60
n_cpus = int(ray.cluster_resources().get("CPU", 1))
while len(glob.glob(logs)) < n_cpus and time.time() < deadline:  # the workers Ray starts with the node (num_cpus)
    time.sleep(0.2)
before = len(glob.glob(logs))

@ray.remote(num_cpus=0.1)
def probe():
    return {k: os.environ.get(k) for k in ("MALLOC_ARENA_MAX", "MIMALLOC_PURGE_DELAY")}

print(json.dumps({"env": ray.get(probe.remote()), "before": before, "after": len(glob.glob(logs)),
                  "runtime_env": ray.get_runtime_context().runtime_env}))
"""


@pytest.mark.slow  # a local Ray: ~10 s
def test_a_local_ray_gives_the_malloc_settings_to_the_workers_it_started_with():
    """Through the environment, not a runtime_env: a job with a runtime_env of its own cannot use the workers
    Ray starts with the node, so they sat idle (~140 MiB each) while the first task waited for a new process."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "-c", LOCAL_RAY_PROBE], cwd=root, capture_output=True, text=True,
                       timeout=180, env={**env, "RAY_AUTH_MODE": "disabled"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["env"] == WORKER_MALLOC_ENV, got
    assert "env_vars" not in (got["runtime_env"] or {}), got
    assert got["before"] >= 1 and got["after"] == got["before"], got  # the first task ran in one of those workers
