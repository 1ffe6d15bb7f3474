"""General-audio branch: sound events with onset/offset, scene, sound caption."""

from __future__ import annotations

from annotators.base import BranchAnnotator
from schemas.general_config import GeneralConfig


def build_general_audio_annotator(cfg: GeneralConfig, num_threads: int = 1) -> BranchAnnotator | None:
    """The sound-event annotator for this config, or None to pass rows through unannotated."""
    if not cfg.enabled:
        return None
    from annotators.general.annotator import GeneralAudioAnnotator

    return GeneralAudioAnnotator(cfg, num_threads)
