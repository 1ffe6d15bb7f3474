"""CaptionMerger: the unified caption of each segment (`<key>.txt`) from its fields and branch captions."""

from __future__ import annotations

from schemas.config import JobConfig
from stages.base import RowStage
from stages.rows import Row

_MERGERS: dict[tuple[str, str | None], object] = {}


class CaptionMerger(RowStage):
    """Sets caption, short_caption, caption_source/model/prompt_id/rejections on every segment row.

    The merger is built lazily inside the task (an HTTP client does not travel between processes); an LLM
    merger sends the batch's requests `caption.max_in_flight` at a time, so a slow endpoint costs latency,
    not a stalled pipeline. Its reply cache lives under `output`.
    """

    name = "caption"
    after = ("speech", "music", "general")  # it merges their captions and fields

    def __init__(self, cfg: JobConfig | dict, num_threads: int = 1, output: str | None = None):
        super().__init__(cfg, num_threads)
        self.output = output
        self._merger = None

    @classmethod
    def task_batch_rows(cls, cfg: JobConfig) -> int:
        """An LLM merger sends a call's rows `max_in_flight` at a time: a call of fewer rows leaves the endpoint
        idle. The template needs one row per call (the first caption leaves as soon as its segment arrives)."""
        return cfg.caption.max_in_flight if cfg.caption.merger == "llm" else super().task_batch_rows(cfg)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_merger": None}  # a client and a thread pool do not travel

    @property
    def merger(self):
        """One merger per worker process and config: its HTTP connections, thread pool and detected
        structured-output dialect outlive the batch (Ray reuses task workers)."""
        if self._merger is None:
            ident = (self.cfg.caption.model_dump_json(), self.output)
            if ident not in _MERGERS:
                from annotators.llm import build_caption_merger

                _MERGERS[ident] = build_caption_merger(self.cfg.caption, self.output)
            self._merger = _MERGERS[ident]
        return self._merger

    def process_batch(self, rows: list[Row]) -> list[Row]:
        llm_model = self.cfg.caption.model if self.cfg.caption.merger == "llm" else None
        for r, res in zip(rows, self.merger.caption_many([r.segment for r in rows]), strict=True):
            res.apply_to(r.segment, llm_model=llm_model)
        return rows
