"""CaptionMerger: the unified caption of each segment (`<key>.txt`) from its fields and branch captions."""

from __future__ import annotations

import numpy as np

from schemas.config import JobConfig
from stages.rows import add_stats, quarantine, segment_of, timed, to_batch, to_rows

_MERGERS: dict[tuple[str, str | None], object] = {}


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

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_merger": None}  # a client and a thread pool do not travel

    @property
    def merger(self):
        """One merger per worker process and config: its HTTP connections, thread pool and detected
        structured-output dialect outlive the batch (Ray reuses task workers)."""
        if self._merger is None:
            ident = (self.cfg.model_dump_json(), self.output)
            if ident not in _MERGERS:
                from annotators.llm import build_caption_merger

                _MERGERS[ident] = build_caption_merger(self.cfg, self.output)
            self._merger = _MERGERS[ident]
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
