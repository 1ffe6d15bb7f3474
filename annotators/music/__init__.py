"""Music branch: tempo and beats, key, loudness, tags, music caption."""

from __future__ import annotations

from annotators.base import BranchAnnotator
from schemas.music_config import MusicConfig


def build_music_annotator(cfg: MusicConfig, num_threads: int = 1) -> BranchAnnotator | None:
    """The music annotator for this config, or None to pass rows through unannotated."""
    if not cfg.enabled:
        return None
    from annotators.music.annotator import MusicAnnotator

    return MusicAnnotator(cfg, num_threads)
