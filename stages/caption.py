"""CaptionMerger: the unified caption of each segment (`<key>.txt`) from its fields and branch captions."""

from __future__ import annotations

import numpy as np

from schemas.config import JobConfig
from stages.rows import add_stats, quarantine, segment_of, timed, to_batch, to_rows


class CaptionMerger:
    """Task stage: sets caption, short_caption, caption_source/model/prompt_id/rejections on every segment row.

    The merger is built lazily inside the task (an HTTP client does not travel between processes); an LLM
    merger sends the batch's requests `caption.max_in_flight` at a time, so a slow endpoint costs latency,
    not a stalled pipeline. Its reply cache lives under `output`.
    """

    def __init__(self, cfg: JobConfig, output: str | None = None):
        self.cfg = cfg.caption
        self.output = output
        self._merger = None

    @property
    def merger(self):
        if self._merger is None:
            from annotators.llm import build_caption_merger

            self._merger = build_caption_merger(self.cfg, self.output)
        return self._merger

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = to_rows(batch)
        todo = [(i, segment_of(r)) for i, r in enumerate(rows) if r["kind"] == "segment"]
        if not todo:
            return to_batch(rows)
        with timed() as t:
            try:
                results = self.merger.caption_many([seg for _, seg in todo])
            except Exception as e:  # noqa: BLE001 - a merger bug quarantines the batch's segments, not the job
                for i, seg in todo:
                    rows[i] = quarantine(seg.source_uri, "caption", type(e).__name__, str(e),
                                         sha256=seg.source_sha256, key=seg.key, stats=rows[i]["stats"])
                return to_batch(rows)
        per_row = t() / len(todo)
        for (i, seg), res in zip(todo, results, strict=True):
            res.apply_to(seg, llm_model=self.cfg.model if self.cfg.merger == "llm" else None)
            rows[i]["payload"] = seg.model_dump_json()
            add_stats(rows[i], "caption", per_row)
        return to_batch(rows)
