"""Music tags from YAMNet's AudioSet posteriors, restricted to the music ontology. No Ray here.

AudioSet's music subtree in YAMNet's 521 classes: the singing classes (24–32), musical instruments (133–210),
genres (211–260), music roles and moods (261–276). A tag's score is the class posterior averaged over the
segment's frames; vocals use the mean of the top quarter of frames, so a sung line in part of the segment
counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotators.common.yamnet import N_CLASSES

VOCAL_INDICES = tuple(range(24, 33)) + (249, 250)  # Singing … Humming, Vocal music, A capella
INSTRUMENT_INDICES = tuple(range(134, 211))  # Plucked string instrument … Scratching
# Parents that only say "some instrument of this family": listed only when no specific child is.
GENERIC_INSTRUMENTS = (134, 147, 156, 174, 180, 184, 190)
GENRE_INDICES = tuple(i for i in range(211, 261) if i not in (213, 249, 250))  # minus Beatboxing, vocal classes
MOOD_INDICES = tuple(range(261, 277))  # Song, Background music … Scary music
TAG_INDICES = VOCAL_INDICES + (213,) + INSTRUMENT_INDICES + GENRE_INDICES + MOOD_INDICES


@dataclass
class MusicTags:
    tags: list[tuple[str, float]]  # (label, score), best first
    genres: list[str]
    instruments: list[str]
    vocals: bool
    vocal_score: float


def music_tags(scores: np.ndarray, labels: list[str], *, tag_threshold: float, max_tags: int,
               genre_threshold: float, instrument_threshold: float, vocal_threshold: float,
               max_genres: int = 3, max_instruments: int = 5) -> MusicTags:
    """Tags, genres, instruments and vocals from (T, 521) YAMNet posteriors of one segment."""
    if scores.ndim != 2 or scores.shape[1] != N_CLASSES or scores.shape[0] == 0:
        return MusicTags([], [], [], False, 0.0)
    mean = scores.mean(axis=0)
    tags = sorted(((labels[i], float(mean[i])) for i in TAG_INDICES if mean[i] >= tag_threshold),
                  key=lambda t: -t[1])[:max_tags]
    genres = [labels[i] for i in sorted(GENRE_INDICES, key=lambda i: -mean[i])
              if mean[i] >= genre_threshold][:max_genres]
    specific = [i for i in INSTRUMENT_INDICES if i not in GENERIC_INSTRUMENTS and mean[i] >= instrument_threshold]
    chosen = specific or [i for i in GENERIC_INSTRUMENTS if mean[i] >= instrument_threshold]
    instruments = [labels[i] for i in sorted(chosen, key=lambda i: -mean[i])][:max_instruments]
    vocal_frames = scores[:, list(VOCAL_INDICES)].max(axis=1)
    k = max(1, int(np.ceil(vocal_frames.size / 4)))
    vocal_score = float(np.sort(vocal_frames)[-k:].mean())
    return MusicTags(tags, genres, instruments, vocal_score >= vocal_threshold, vocal_score)
