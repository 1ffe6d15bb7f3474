"""CaptionMerger: the unified caption of each segment (`<key>.txt`) from its branch captions."""

from __future__ import annotations

import numpy as np

from annotators.llm import build_caption_merger
from schemas.annotation import ModelInfo
from schemas.config import JobConfig
from stages.rows import add_stats, quarantine, segment_of, timed, to_batch, to_rows


class CaptionMerger:
    """Task stage: sets `caption` and `caption_model` on every segment row."""

    def __init__(self, cfg: JobConfig):
        self.merger = build_caption_merger(cfg.caption)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = to_rows(batch)
        for i, r in enumerate(rows):
            if r["kind"] != "segment":
                continue
            seg = segment_of(r)
            with timed() as t:
                try:
                    seg.caption = self.merger.merge(seg)
                except Exception as e:  # noqa: BLE001
                    rows[i] = quarantine(seg.source_uri, "caption", type(e).__name__, str(e),
                                         sha256=seg.source_sha256, key=seg.key, stats=r["stats"])
                    continue
            seg.caption_model = self.merger.name
            seg.models["caption"] = ModelInfo(name=self.merger.name, version=self.merger.version)
            r["payload"] = seg.model_dump_json()
            add_stats(r, "caption", t())
        return to_batch(rows)
