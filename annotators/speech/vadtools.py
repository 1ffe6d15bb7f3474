"""What the speech branch does with a VAD curve: speech regions, the hallucination guard, word-time refinement.

All functions take the Silero speech probability per frame (`prob`, hop `hop_s`) of one segment; times are
seconds relative to the segment start.
"""

from __future__ import annotations

import re

import numpy as np


def regions(prob: np.ndarray, hop_s: float, threshold: float = 0.5, min_gap_s: float = 0.25,
            min_len_s: float = 0.1) -> list[tuple[float, float]]:
    """Speech regions [(start_s, end_s)]: frames above threshold, gaps under min_gap_s bridged."""
    on = np.asarray(prob) >= threshold
    if not on.any():
        return []
    d = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    out: list[list[float]] = []
    for s, e in zip(starts * hop_s, ends * hop_s, strict=False):
        if out and s - out[-1][1] < min_gap_s:
            out[-1][1] = e
        else:
            out.append([s, e])
    return [(round(float(s), 3), round(float(e), 3)) for s, e in out if e - s >= min_len_s]


def speech_seconds(prob: np.ndarray, hop_s: float, threshold: float = 0.5) -> float:
    return float((np.asarray(prob) >= threshold).sum() * hop_s)


def has_speech_near(prob: np.ndarray, hop_s: float, start_s: float, end_s: float, margin_s: float,
                    threshold: float = 0.5) -> bool:
    f0 = max(0, int(np.floor((start_s - margin_s) / hop_s)))
    f1 = min(len(prob), int(np.ceil((end_s + margin_s) / hop_s)) + 1)
    return bool(f1 > f0 and (np.asarray(prob[f0:f1]) >= threshold).any())


def refine_word_times(words: list, prob: np.ndarray, hop_s: float, threshold: float = 0.5,
                      max_shift_s: float = 1.5) -> None:
    """Move word edges that whisper's attention alignment placed in non-speech onto the VAD's speech edges.

    Whisper's DTW tends to start the first word after a pause too early (at the end of the previous word)
    and to stretch the last word before a pause. A word spanning a pause (>= 0.15 s) whose end lies in speech
    starts where that speech run starts. Then a start in a non-speech frame moves forward to the first
    speech frame inside the word; an end in non-speech moves back to the last speech frame inside the word.
    Edited in place; word objects need `start_s` and `end_s`.
    """
    on = np.asarray(prob) >= threshold
    n = on.shape[0]
    if n == 0 or not on.any():
        return
    islands = np.array(regions(prob, hop_s, threshold, min_gap_s=0.15, min_len_s=0.0)).reshape(-1, 2)
    for w in words:
        # A word spanning a pause: whisper's DTW places the *end* of the first word after a pause well but
        # starts it at the end of the previous word; keep the speech run that holds its end (when the end
        # itself lies in a pause the word was stretched forward instead: the edge snapping below fixes it).
        hit = np.flatnonzero(np.minimum(islands[:, 1], w.end_s) > np.maximum(islands[:, 0], w.start_s))
        if hit.size > 1:
            a, b = islands[hit[-1]]
            if a <= w.end_s <= b and w.start_s < a and a - w.start_s <= max_shift_s:
                w.start_s = round(float(a), 3)
    for w in words:
        f0 = min(max(int(np.floor(w.start_s / hop_s)), 0), n - 1)
        f1 = min(max(int(np.ceil(w.end_s / hop_s)), f0 + 1), n)
        inside = np.flatnonzero(on[f0:f1])
        if inside.size == 0:
            continue
        if not on[f0]:
            new = (f0 + inside[0]) * hop_s
            if new - w.start_s <= max_shift_s:
                w.start_s = round(float(new), 3)
        if not on[f1 - 1]:
            new = (f0 + inside[-1] + 1) * hop_s
            if w.end_s - new <= max_shift_s:
                w.end_s = round(float(max(new, w.start_s + hop_s)), 3)
    # Keep the sequence monotonic after the edits.
    for a, b in zip(words, words[1:], strict=False):
        if b.start_s < a.end_s:
            b.start_s = a.end_s if a.end_s <= b.end_s else b.start_s
            if b.start_s < a.end_s:
                a.end_s = b.start_s


def is_repetition_loop(text: str, min_repeats: int = 2) -> bool:
    """Whether `text` is one sentence said over and over and nothing else ("You have to be happy. You have to be
    happy. You have to be happy."): whisper's decoding loop. Its compression ratio stays under the usual 2.4
    while the loop is short (2.03 for three repeats), so it is judged from the sentences themselves."""
    sentences = [re.sub(r"[^\w\s']", "", t).lower().split() for t in re.split(r"(?<=[.!?])\s+", text.strip())]
    sentences = [t for t in sentences if t]
    return len(sentences) >= min_repeats and all(t == sentences[0] for t in sentences)
