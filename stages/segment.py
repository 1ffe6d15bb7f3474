"""EventSegmenter: decode each source in windows and cut it into event-preserving segments (Ray actor)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np

from annotators.segmentation import EventSegmenterCore, EvidenceModels
from pipeline.decode import IngestError, SourceInfo, decode_stream
from schemas.annotation import ModelInfo, SegmentAnnotation
from schemas.config import JobConfig
from schemas.keys import segment_key
from stages.rows import (
    add_stats,
    audio_bytes,
    evidence_bytes,
    merge_stats,
    quarantine,
    row,
    to_batch,
    to_rows,
)

STAGE = "segment"


class EventSegmenter:
    """Actor stage: source rows -> segment rows (audio + evidence + SegmentAnnotation skeleton).

    Loads Silero VAD and YAMNet once per actor. Yields a batch every `flush_every` segments, so a long
    source streams through without its segments piling up in one block. Keys an earlier run committed for a
    source come with that source's row (`committed_keys`, see pipeline/ledger.py) and are dropped here, before
    any expensive stage. A source segmented to the end closes with a `source_done` row (its segment count).
    """

    flush_every = 16

    def __init__(self, cfg: dict, num_threads: int = 1):
        from annotators.general.yamnet import YamNet
        from annotators.speech.vad import SileroVad

        self.cfg = JobConfig.model_validate(cfg)
        seg_cfg = self.cfg.segmenter
        vad = SileroVad(num_threads) if seg_cfg.use_vad else None
        yam = YamNet(num_threads=num_threads) if seg_cfg.use_yamnet else None
        self.core = EventSegmenterCore(seg_cfg, EvidenceModels(vad, yam), self.cfg.ingest.sample_rate,
                                       self.cfg.ingest.window_s)
        self.models = {}
        if vad is not None:
            self.models["vad"] = ModelInfo(name=vad.name, version=vad.version)
        if yam is not None:
            self.models["sound_classes"] = ModelInfo(name=yam.name, version=yam.version)
        self.seg_hash = self.cfg.segmentation_hash()
        self.config_hash = self.cfg.config_hash()

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        pending: list[dict] = []
        for r in to_rows(batch):
            if r["kind"] != "source":
                pending.append(r)
                continue
            src = json.loads(r["payload"])
            skip = frozenset(src.pop("committed_keys", None) or ())
            for n, new in enumerate(self._segment_source(SourceInfo(**src), skip)):
                if n == 0:  # the source's own stats (ingest) travel on with its first output row
                    new["stats"] = json.dumps(merge_stats(json.loads(r["stats"]), json.loads(new["stats"])))
                pending.append(new)
                if len(pending) >= self.flush_every:
                    yield to_batch(pending)
                    pending = []
        if pending:
            yield to_batch(pending)

    def _segment_source(self, src: SourceInfo, skip_keys: frozenset[str]) -> Iterator[dict]:
        sr = self.cfg.ingest.sample_rate
        total = 0

        def counted(blocks):
            nonlocal total
            for b in blocks:
                total += b.shape[0]
                yield b

        emitted = skipped = 0
        try:
            resumed = time.perf_counter()  # time spent here, not while the consumer holds the generator
            for s in self.core.segments(counted(decode_stream(src, sr))):
                if total < self.cfg.ingest.min_source_s * sr:
                    break  # the whole source is shorter (it fits one window, so `total` is final): below
                key = segment_key(src.sha256, s.start_sample, s.end_sample, self.seg_hash)
                if key in skip_keys:
                    skipped += 1
                    continue
                ann = SegmentAnnotation(
                    key=key, source_uri=src.uri, source_sha256=src.sha256, sample_rate=sr,
                    start_sample=s.start_sample, end_sample=s.end_sample, start_s=s.start_sample / sr,
                    end_s=s.end_sample / sr, duration_s=(s.end_sample - s.start_sample) / sr,
                    cut_reasons=s.cut_reasons, routes=[], speech_share=s.speech_share,
                    music_share=s.music_share, other_share=s.other_share, top_classes=s.top_classes,
                    models=dict(self.models), config_hash=self.config_hash,
                )
                new = row("segment", ann.model_dump_json(), key=key, audio=audio_bytes(s.audio),
                          evidence=evidence_bytes(s.evidence))
                add_stats(new, STAGE, time.perf_counter() - resumed)
                emitted += 1
                yield new
                resumed = time.perf_counter()
        except IngestError as e:
            yield quarantine(src.uri, "decode", e.error, e.message + f" (after {total / sr:.1f} s of audio)",
                             sha256=src.sha256)
            return
        except Exception as e:  # noqa: BLE001 - bad input never crashes the job
            yield quarantine(src.uri, STAGE, type(e).__name__, str(e), sha256=src.sha256)
            return
        if total < self.cfg.ingest.min_source_s * sr:
            yield quarantine(src.uri, STAGE, "TooShort",
                             f"{total / sr:.3f} s of audio, under ingest.min_source_s={self.cfg.ingest.min_source_s}",
                             sha256=src.sha256)
        elif emitted == 0 and skipped == 0:
            yield quarantine(src.uri, STAGE, "AllSilence", f"no audible content in {total / sr:.1f} s of audio",
                             sha256=src.sha256)
        yield row("source_done", json.dumps({"source_uri": src.uri, "source_sha256": src.sha256,
                                             "segments": emitted + skipped}))
