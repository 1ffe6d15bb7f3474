"""Caption mergers: one unified caption per segment from its branch captions and annotations."""

from __future__ import annotations

from annotators.llm.merger import CaptionResult, LLMCaptionMerger, TemplateMerger
from schemas.config import CaptionConfig

__all__ = ["CaptionResult", "LLMCaptionMerger", "TemplateMerger", "build_caption_merger"]


def build_caption_merger(cfg: CaptionConfig, output: str | None = None) -> TemplateMerger | LLMCaptionMerger:
    """The merger `caption.merger` names; `output` holds the LLM reply cache (none without it)."""
    if cfg.merger == "llm":
        return LLMCaptionMerger(cfg, output)
    return TemplateMerger()
