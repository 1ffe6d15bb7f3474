"""Caption mergers: one unified caption per segment from its branch captions and annotations."""

from __future__ import annotations

from annotators.llm.template import TemplateCaptionMerger
from schemas.config import CaptionConfig


def build_caption_merger(cfg: CaptionConfig) -> TemplateCaptionMerger:
    return TemplateCaptionMerger()
