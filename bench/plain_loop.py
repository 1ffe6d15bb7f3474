"""The annotate job's annotators called in a plain sequential Python loop: no Ray, one process, one core's worth.

    python -m bench.plain_loop FILE... [--set KEY=VALUE ...]    prints one JSON line

Per source: probe -> decode + segment (EventSegmenterCore) -> route -> speech, music, general annotators (in
batches of each branch's batch_size, in the job's order) -> template caption merger. Prints the wall time of
the whole process, the load time of each stage's models, each stage's time alone, and a per-model profile of
every annotator (the wrapped methods' own time). The pipeline should beat this loop by the share of the
second core it puts to work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from contextlib import contextmanager

T_START = time.perf_counter()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

# The methods timed in the per-model profile: (stage, dotted attribute path on the annotator, label).
# A path missing in this version of an annotator is skipped, so a refactor cannot break the bench.
PROFILE = [
    ("segment", "models.vad.speech_prob", "VAD (silero)"),
    ("segment", "models.yamnet.scores", "YAMNet"),
    ("speech", "asr.transcribe", "ASR (faster-whisper)"),
    ("speech", "_vad", "VAD (silero, no evidence)"),
    ("speech", "diarizer.diarize", "diarization (all)"),
    ("speech", "diarizer.embed_windows", "speaker embeddings"),
    ("speech", "diarizer.cluster", "speaker clustering"),
    ("speech", "para.pitch.f0", "pitch (pesto)"),
    ("speech", "para.dnsmos.__call__", "DNSMOS"),
    ("speech", "para.measure", "paralinguistics (all)"),
    ("music", "_notes.transcribe", "notes (basic-pitch)"),
    ("music", "_yamnet_model.scores", "YAMNet (no evidence)"),
    ("general", "_yamnet_model.scores", "YAMNet (no evidence)"),
]


class Profiler:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def timed(self, key: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - t
            self.calls[key] += 1

    def wrap(self, obj, path: str, key: str) -> bool:
        *head, name = path.split(".")
        for h in head:
            obj = getattr(obj, h, None)
            if obj is None:
                return False
        if name == "__call__":  # instance call: wrap via a subclass-free shim on the owner
            owner_cls = type(obj)
            orig = owner_cls.__call__
            prof = self

            def call(self_, *a, **k):
                with prof.timed(key):
                    return orig(self_, *a, **k)

            owner_cls.__call__ = call
            return True
        fn = getattr(obj, name, None)
        if fn is None or not callable(fn):
            return False

        def wrapped(*a, **k):
            with self.timed(key):
                return fn(*a, **k)

        setattr(obj, name, wrapped)
        return True


def _general_builder():
    import annotators.general as g

    return g.build_general_audio_annotator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()

    import numpy as np

    from annotators.base import BranchInput
    from annotators.segmentation import EventSegmenterCore, EvidenceModels
    from pipeline.decode import decode_stream, probe
    from schemas.annotation import SegmentAnnotation
    from schemas.config import load_config
    from stages.router import routes_for

    cfg = load_config(None, args.set)
    prof = Profiler()
    import_s = time.perf_counter() - T_START

    # ---------------------------------------------------------------- model loads
    load: dict[str, float] = {}
    t = time.perf_counter()
    from annotators.common.vad import SileroVad
    from annotators.common.yamnet import YamNet

    seg_cfg = cfg.segmenter
    vad = SileroVad(1) if seg_cfg.use_vad else None
    yam = YamNet(num_threads=1) if seg_cfg.use_yamnet else None
    core = EventSegmenterCore(seg_cfg, EvidenceModels(vad, yam), cfg.ingest.sample_rate, cfg.ingest.window_s)
    load["segment"] = time.perf_counter() - t
    from annotators.music import build_music_annotator
    from annotators.speech import build_speech_annotator

    branches = []  # (route, field, caption field, annotator, batch size)
    for route, build, sub, field, cap in [
        ("speech", build_speech_annotator, cfg.speech, "speech", "speech_caption"),
        ("music", build_music_annotator, cfg.music, "music", "music_caption"),
        ("general", _general_builder(), cfg.general, None, None),
    ]:
        t = time.perf_counter()
        ann = build(sub)
        load[route] = time.perf_counter() - t
        if ann is None:
            continue
        if field is None:  # the general branch's field is being renamed (sound -> general)
            field = "general" if "general" in SegmentAnnotation.model_fields else "sound"
            cap = f"{field}_caption"
        branches.append((route, field, cap, ann, sub.resources.batch_size))
    from annotators.llm import build_caption_merger

    merger = build_caption_merger(cfg.caption, None)
    hooked = []
    for stage, path, key in PROFILE:
        target = core if stage == "segment" else next((b[3] for b in branches if b[0] == stage), None)
        if target is not None and prof.wrap(target, path, f"{stage}: {key}"):
            hooked.append(f"{stage}: {key}")

    # ---------------------------------------------------------------- the loop
    stage_s: dict[str, float] = defaultdict(float)
    audio_s, n_segments, first_segment_s = 0.0, 0, None
    routes_count: dict[str, int] = defaultdict(int)
    for path in args.files:
        t = time.perf_counter()
        src = probe(path, cfg.ingest.max_file_bytes)
        stage_s["probe"] += time.perf_counter() - t
        segs, items = [], []
        t = time.perf_counter()
        for s in core.segments(decode_stream(src, cfg.ingest.sample_rate)):
            seg = SegmentAnnotation(key=f"{src.sha256[:8]}-{s.start_sample}", source_uri=src.uri,
                                    source_sha256=src.sha256, sample_rate=16000, start_sample=s.start_sample,
                                    end_sample=s.end_sample, start_s=s.start_sample / 16000,
                                    end_s=s.end_sample / 16000, duration_s=(s.end_sample - s.start_sample) / 16000,
                                    cut_reasons=s.cut_reasons, routes=[], speech_share=s.speech_share,
                                    music_share=s.music_share, general_share=s.general_share,
                                    top_classes=s.top_classes, config_hash=cfg.config_hash())
            segs.append(seg)
            items.append(BranchInput(np.asarray(s.audio, dtype=np.float32), 16000, seg, s.evidence))
        stage_s["segment"] += time.perf_counter() - t
        t = time.perf_counter()
        for seg in segs:
            seg.routes = routes_for(seg.speech_share, seg.music_share, seg.general_share, cfg.router,
                                    seg.top_classes)
            for r in seg.routes:
                routes_count[r] += 1
        stage_s["route"] += time.perf_counter() - t
        for route, field, cap, ann, bs in branches:
            todo = [it for it in items if route in it.segment.routes]
            t = time.perf_counter()
            for k in range(0, len(todo), bs):
                chunk = todo[k : k + bs]
                for it, res in zip(chunk, ann.annotate(chunk), strict=True):
                    setattr(it.segment, field, res)
                    setattr(it.segment, cap, res.caption or None)
            stage_s[route] += time.perf_counter() - t
        t = time.perf_counter()
        merger.caption_many(segs)
        stage_s["caption"] += time.perf_counter() - t
        for seg in segs:
            seg.model_dump_json()  # what the pipeline serializes per row
        if first_segment_s is None and segs:
            first_segment_s = time.perf_counter() - T_START
        audio_s += sum(s.duration_s for s in segs)
        n_segments += len(segs)
    wall = time.perf_counter() - T_START
    out = {"wall_s": round(wall, 2), "audio_s": round(audio_s, 2), "segments": n_segments,
           "import_s": round(import_s, 2), "load_s": {k: round(v, 2) for k, v in load.items()},
           "stage_s": {k: round(v, 2) for k, v in stage_s.items()},
           "models_s": {k: round(v, 2) for k, v in sorted(prof.seconds.items())},
           "models_calls": dict(prof.calls), "profiled": hooked, "routes": dict(routes_count),
           "first_file_done_s": round(first_segment_s or 0.0, 2)}
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
