"""Task metrics, pure functions over references and hypotheses (no model, no I/O).

    wer / cer              jiwer over the corpus, after `normalize_text` (lower case, punctuation dropped)
    average_shift          AAS as FunASR's AverageShiftCalculator defines it: align reference and hypothesis
                           words by edit distance; over the *matched* (equal) words, the mean of
                           |start_ref - start_hyp| + |end_ref - end_hyp|, in ms. Not halved (some papers
                           halve it). Substituted, inserted and deleted words do not count: report WER beside it.
    event_scores           event-based precision/recall/F1 (DCASE / sed_eval): a hypothesis event matches a
                           reference event of the same label when its onset is within 200 ms and its offset
                           within max(200 ms, 20 % of the reference event's length); one-to-one; plus the mean
                           |onset| and |offset| errors of the matched pairs, in ms
    tempo_correct          |hyp - ref| <= 4 % of ref
    key_correct            exact key and mode after normalisation ("c# min" == "C# minor")
    set_f1                 F1 between two tag sets (case-insensitive)
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

TEMPO_TOLERANCE = 0.04
EVENT_COLLAR_S = 0.2
EVENT_OFFSET_FRACTION = 0.2

_PUNCT = str.maketrans({c: " " for c in string.punctuation.replace("'", "")})


def normalize_text(text: str) -> str:
    """Lower case, punctuation (except apostrophes) to spaces, whitespace collapsed."""
    return " ".join(text.lower().translate(_PUNCT).split())


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate (jiwer) over normalised texts; an empty reference corpus gives 0 or 1."""
    import jiwer

    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(refs, hyps, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return 0.0
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    import jiwer

    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(refs, hyps, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return 0.0
    return float(jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]))


def align_words(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[int, int]]:
    """Levenshtein alignment of two token lists; returns the (ref index, hyp index) pairs aligned as *equal*
    tokens (substitutions, insertions and deletions are left out). Ties prefer the diagonal."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]), d[i - 1][j] + 1, d[i][j - 1] + 1)
    pairs = []
    i, j = n, m
    while i > 0 and j > 0:
        if d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] == hyp[j - 1]:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif d[i][j] == d[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def _norm_word(w: str) -> str:
    return normalize_text(w).replace(" ", "")


def shift_sum(ref_words: Sequence[dict], hyp_words: Sequence[dict]) -> tuple[float, int]:
    """(sum over matched words of |Δstart| + |Δend| in ms, number of matched words). Words are dicts with
    word / start_s / end_s."""
    pairs = align_words([_norm_word(w["word"]) for w in ref_words], [_norm_word(w["word"]) for w in hyp_words])
    total = sum(abs(ref_words[i]["start_s"] - hyp_words[j]["start_s"]) + abs(ref_words[i]["end_s"] - hyp_words[j]["end_s"])
                for i, j in pairs)
    return 1000.0 * total, len(pairs)


def average_shift(refs: Sequence[Sequence[dict]], hyps: Sequence[Sequence[dict]]) -> tuple[float | None, int]:
    """Corpus AAS in ms (total shift / total matched words, FunASR's convention, not halved) and the matched
    word count; None when no word matched."""
    total, n = 0.0, 0
    for r, h in zip(refs, hyps, strict=True):
        s, k = shift_sum(r, h)
        total, n = total + s, n + k
    return (total / n if n else None), n


def _norm_label(label: str) -> str:
    return normalize_text(label)


def match_events(ref: Sequence[dict], hyp: Sequence[dict]) -> list[tuple[int, int]]:
    """One-to-one matches (ref index, hyp index) under the collars; closest onsets first."""
    cands = []
    for i, r in enumerate(ref):
        off_collar = max(EVENT_COLLAR_S, EVENT_OFFSET_FRACTION * (r["end_s"] - r["start_s"]))
        for j, h in enumerate(hyp):
            if _norm_label(r["label"]) != _norm_label(h["label"]):
                continue
            d_on, d_off = abs(r["start_s"] - h["start_s"]), abs(r["end_s"] - h["end_s"])
            if d_on <= EVENT_COLLAR_S + 1e-9 and d_off <= off_collar + 1e-9:
                cands.append((d_on + d_off, i, j))
    used_r, used_h, pairs = set(), set(), []
    for _, i, j in sorted(cands):
        if i not in used_r and j not in used_h:
            used_r.add(i)
            used_h.add(j)
            pairs.append((i, j))
    return sorted(pairs)


def event_scores(refs: Sequence[Sequence[dict]], hyps: Sequence[Sequence[dict]]) -> dict:
    """Corpus event-based P/R/F1 and mean onset/offset errors (ms) of the matched events."""
    tp = n_ref = n_hyp = 0
    on_err, off_err = [], []
    for r, h in zip(refs, hyps, strict=True):
        pairs = match_events(r, h)
        tp, n_ref, n_hyp = tp + len(pairs), n_ref + len(r), n_hyp + len(h)
        on_err += [1000 * abs(r[i]["start_s"] - h[j]["start_s"]) for i, j in pairs]
        off_err += [1000 * abs(r[i]["end_s"] - h[j]["end_s"]) for i, j in pairs]
    p = tp / n_hyp if n_hyp else (1.0 if n_ref == 0 else 0.0)
    rc = tp / n_ref if n_ref else 1.0
    f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
    return {"precision": p, "recall": rc, "f1": f1, "matched": tp, "n_ref": n_ref, "n_hyp": n_hyp,
            "onset_error_ms": sum(on_err) / len(on_err) if on_err else None,
            "offset_error_ms": sum(off_err) / len(off_err) if off_err else None}


def tempo_correct(ref_bpm: float, hyp_bpm: float | None, tolerance: float = TEMPO_TOLERANCE) -> bool:
    return hyp_bpm is not None and abs(hyp_bpm - ref_bpm) <= tolerance * ref_bpm + 1e-9


def normalize_key(text: str | None) -> str | None:
    """"C# min" / "c# minor" / "Db major" -> "C# minor" / "Db major"; None when no key is named."""
    if not text:
        return None
    m = re.search(r"\b([A-Ga-g])([#♯b♭]?)\s*(major|minor|maj|min)\b", text)
    if not m:  # a bare key name ("Am", "F#") only as the whole answer
        m = re.fullmatch(r"\s*([A-Ga-g])([#♯b♭]?)(m)?\s*\.?\s*", text)
        if not m:
            return None
    note = m.group(1).upper() + m.group(2).replace("♯", "#").replace("♭", "b")
    mode = (m.group(3) or "major").lower()
    return f"{note} {'minor' if mode in ('minor', 'min', 'm') else 'major'}"


def key_correct(ref_key: str, hyp_text: str | None) -> bool:
    return normalize_key(ref_key) is not None and normalize_key(ref_key) == normalize_key(hyp_text)


def set_f1(ref: Sequence[str], hyp: Sequence[str]) -> float:
    r = {_norm_label(t) for t in ref if t.strip()}
    h = {_norm_label(t) for t in hyp if t.strip()}
    if not r and not h:
        return 1.0
    tp = len(r & h)
    if tp == 0:
        return 0.0
    p, rc = tp / len(h), tp / len(r)
    return 2 * p * rc / (p + rc)
