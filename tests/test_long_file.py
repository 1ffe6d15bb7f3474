"""A 12-minute source is segmented with flat memory: peak RSS does not grow with the file's length."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import mixtures as M
from tests import synth as S

PROBE = r"""
import json, resource, sys, tracemalloc
from annotators.common.yamnet import YamNet
from annotators.segmentation import EventSegmenterCore, EvidenceModels
from annotators.common.vad import SileroVad
from schemas.config import SegmenterConfig
from pipeline.decode import decode_stream, probe

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

core = EventSegmenterCore(SegmenterConfig(), EvidenceModels(SileroVad(), YamNet()), window_s=120.0)
out = {}
tracemalloc.start()  # numpy reports its buffers to tracemalloc: the audio arrays are all counted
for name in sys.argv[1:]:
    tracemalloc.reset_peak()
    src = probe(name, 1 << 40)
    n, last_end, dur = 0, 0, 0.0
    for s in core.segments(decode_stream(src)):
        assert s.start_sample >= last_end
        n, last_end, dur = n + 1, s.end_sample, dur + s.audio.shape[0] / 16000
    out[name] = {"segments": n, "peak_mb": peak_mb(), "audio_s": dur, "last_end_s": last_end / 16000,
                 "traced_peak_mb": tracemalloc.get_traced_memory()[1] / 2**20}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_twelve_minute_file_has_bounded_memory(tmp_path):
    x, _ = M.mixed()  # ~72 s of speech, chords, noise and clicks
    reps = int(np.ceil(12 * 60 / (len(x) / S.SR)))  # 6 segmenter windows of 120 s
    short = S.write(tmp_path / "short.flac", np.tile(x, 4))  # ~5 min: already several windows
    long_path = tmp_path / "long.flac"
    import soundfile as sf

    with sf.SoundFile(long_path, "w", S.SR, 1, format="FLAC") as f:  # written in pieces, never whole
        for _ in range(reps):
            f.write(x)
    full_mb = reps * len(x) * 4 / 2**20
    assert reps * len(x) / S.SR >= 12 * 60
    res = subprocess.run([sys.executable, "-c", PROBE, str(short), str(long_path)], capture_output=True,
                         text=True, cwd=Path(__file__).parent.parent, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    s, lg = out[str(short)], out[str(long_path)]
    growth = lg["peak_mb"] - s["peak_mb"]
    print(f"peak RSS: 5 min {s['peak_mb']:.0f} MB, 12 min {lg['peak_mb']:.0f} MB (growth {growth:.1f} MB); "
          f"peak array memory: 5 min {s['traced_peak_mb']:.1f} MB, 12 min {lg['traced_peak_mb']:.1f} MB; "
          f"the whole file as float32 would be {full_mb:.0f} MB")
    # 2.5x the audio needs no more array memory, and never the whole file at once
    assert lg["traced_peak_mb"] < 1.15 * s["traced_peak_mb"], (lg, s)
    # RSS: holding the file would add >= full_mb; what is left is allocator noise
    assert growth < full_mb, (growth, full_mb)
    assert lg["segments"] >= 5 * reps  # every repetition of the mixture is segmented, across windows
    assert lg["last_end_s"] > reps * len(x) / S.SR - 2.0
