"""Speech branch: ASR, speaker turns, paralinguistics, speech caption."""

from __future__ import annotations

from annotators.base import BranchAnnotator
from schemas.speech_config import SpeechConfig


def build_speech_annotator(cfg: SpeechConfig, num_threads: int = 1) -> BranchAnnotator | None:
    """The speech annotator for this config, or None (branch disabled) to pass rows through unannotated."""
    if not cfg.enabled:
        return None
    from annotators.speech.annotator import SpeechAnnotator

    return SpeechAnnotator(cfg, num_threads)
