"""EventSegmenter: decode each source in windows and cut it into event-preserving segments (Ray actor)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from annotators.segmentation import EventSegmenterCore, EvidenceModels
from pipeline.cutlist import CommittedCuts, CutListStore
from pipeline.decode import IngestError, SourceInfo, decode_stream
from schemas.annotation import ModelInfo, SegmentAnnotation
from schemas.config import JobConfig
from schemas.errors import ErrorClass, QuarantineError
from schemas.keys import segment_key
from stages.base import RowStage
from stages.rows import Row, RowKind, segment_row


class EventSegmenter(RowStage):
    """source rows -> segment rows (audio + evidence + SegmentAnnotation skeleton) or a quarantine row.

    Loads Silero VAD and YAMNet once per actor. Yields a batch every `flush_every` segments, so a long
    source streams through without its segments piling up in one block. Keys an earlier run committed for a
    source come with that source's row (`committed_keys`, see pipeline/ledger.py) and are dropped here, before
    any expensive stage. A source segmented to its end closes with a source_done row (its segment count).
    """

    name = "segment"
    handles = frozenset({RowKind.SOURCE})
    after = ("ingest",)
    runs_as = "actor"
    config_section = "segmenter"
    flush_every = 8  # small blocks: the first segments reach the branches while the source is still cut
    release_heap = True  # a window's decoded audio and evidence curves (~140 MiB at 600 s) go back between flushes

    def __init__(self, cfg: JobConfig | dict, num_threads: int = 1, output: str | None = None):
        from annotators.common.vad import SileroVad
        from annotators.common.yamnet import YamNet

        super().__init__(cfg, num_threads)
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
        # issue 22: a source is cut once; later runs reuse its committed cuts (pipeline/cutlist.py)
        self.cuts = CommittedCuts(self.core, CutListStore(output), self.seg_hash) if output else None

    def process(self, row: Row) -> Iterator[Row]:
        fields = dict(row.data)
        skip_keys = frozenset(fields.pop("committed_keys", None) or ())
        src = SourceInfo(**fields)
        sr = self.cfg.ingest.sample_rate
        min_samples = self.cfg.ingest.min_source_s * sr
        total = emitted = skipped = 0

        def counted(blocks):
            nonlocal total
            for b in blocks:
                total += b.shape[0]
                yield b

        try:
            blocks = counted(decode_stream(src, sr))
            for s in self.cuts.segments(src.sha256, blocks) if self.cuts else self.core.segments(blocks):
                if total < min_samples:
                    break  # the whole source is shorter (it fits one window, so `total` is final): below
                key = segment_key(src.sha256, s.start_sample, s.end_sample, self.seg_hash)
                if key in skip_keys:
                    skipped += 1
                    continue
                emitted += 1
                yield segment_row(SegmentAnnotation(
                    key=key, source_uri=src.uri, source_sha256=src.sha256, sample_rate=sr,
                    start_sample=s.start_sample, end_sample=s.end_sample, start_s=s.start_sample / sr,
                    end_s=s.end_sample / sr, duration_s=(s.end_sample - s.start_sample) / sr,
                    cut_reasons=s.cut_reasons, routes=[], speech_share=s.speech_share,
                    music_share=s.music_share, general_share=s.general_share, top_classes=s.top_classes,
                    models=dict(self.models), config_hash=self.config_hash,
                ), s.audio, s.evidence)
        except IngestError as e:
            raise QuarantineError(e.error, e.message + f" (after {total / sr:.1f} s of audio)", stage="decode") from e
        if total < min_samples:
            raise QuarantineError(ErrorClass.TOO_SHORT, f"{total / sr:.3f} s of audio, under "
                                                        f"ingest.min_source_s={self.cfg.ingest.min_source_s}")
        if emitted == 0 and skipped == 0:
            raise QuarantineError(ErrorClass.ALL_SILENCE, f"no audible content in {total / sr:.1f} s of audio")
        yield Row(RowKind.SOURCE_DONE, json.dumps({"source_uri": src.uri, "source_sha256": src.sha256,
                                                    "segments": emitted + skipped}))
