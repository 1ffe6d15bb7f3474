"""Choosing cuts: candidate boundaries from frame evidence, then the best cuts under min/max length.

A cut may only fall in a pause (quiet, no speech), at a change of sound class, or at a spectral-novelty
peak, placed at the quietest non-speech frame nearby: never inside a word, a note or a sound event.
Content separated by `split_silence_s` of silence forms islands that are segmented independently. An
island that can hold two segments is cut by dynamic programming over the candidates: each cut earns its
boundary's strength and pays `segment_penalty`, a segment shorter than `target_segment_s` pays up to
`short_segment_cost`, and every segment must lie in [min_segment_s, max_segment_s]. Only when no candidate
fits is a cut forced at the least harmful frame (`forced_max_length`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotators.segmentation.evidence import FrameEvidence
from schemas.config import SegmenterConfig


@dataclass
class Segment:
    start_frame: int  # frame grid of the evidence (hop_s)
    end_frame: int  # exclusive
    start_reason: str
    end_reason: str


@dataclass
class _Cut:
    frame: int  # where the cut is
    left_end: int  # end of the segment before the cut (exclusive)
    right_start: int  # start of the segment after the cut
    strength: float
    reason: str


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as (start, end) with end exclusive."""
    if mask.size == 0:
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


@dataclass
class Levels:
    silent: np.ndarray  # (T,) bool: nothing there (trimmed, never a segment on its own)
    quiet: np.ndarray  # (T,) bool: a pause (may hold background noise; no speech)
    silent_thr: float
    pause_thr: float


def levels(ev: FrameEvidence, cfg: SegmenterConfig) -> Levels:
    e = ev.energy_db
    loud, floor = float(np.percentile(e, 95)), float(np.percentile(e, 5))
    silent_thr = max(cfg.silence_db, loud - cfg.silence_rel_db)
    pause_thr = silent_thr
    if loud - floor >= 2 * cfg.pause_margin_db:  # a noise floor distinct from the content: pauses sit on it
        pause_thr = max(silent_thr, min(floor + cfg.pause_margin_db, loud - 12.0))
    silent = e < silent_thr
    quiet = silent | ((e < pause_thr) & (ev.vad < cfg.vad_threshold))
    return Levels(silent, quiet, silent_thr, pause_thr)


def _islands(active: np.ndarray, bridge: int) -> list[list[int]]:
    """Runs of active frames, with silent gaps shorter than `bridge` frames bridged."""
    out: list[list[int]] = []
    for a, b in runs(active):
        if out and a - out[-1][1] < bridge:
            out[-1][1] = b
        else:
            out.append([a, b])
    return out


def _extend_over_decays(islands: list[list[int]], energy_db: np.ndarray, range_db: float,
                        margin_db: float) -> list[list[int]]:
    """Each island's end moved on over the decay of its sound: while the level stays within `range_db` of the
    island's own peak and `margin_db` over the source's floor (5th percentile), up to the next island.

    A quiet sound's tail (a struck bell ringing out) falls under the absolute silence threshold long before it
    leaves its own range; without this it would belong to no segment."""
    if not islands:
        return islands
    floor = float(np.percentile(energy_db, 5)) + margin_db
    out = [list(i) for i in islands]
    for k, (a, b) in enumerate(out):
        stop = out[k + 1][0] if k + 1 < len(out) else energy_db.size
        keep = max(float(energy_db[a:b].max()) - range_db, floor)
        tail = np.flatnonzero(energy_db[b:stop] < keep)
        out[k][1] = b + (int(tail[0]) if tail.size else stop - b)
    merged: list[list[int]] = [out[0]]
    for a, b in out[1:]:
        if a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def _candidates(ev: FrameEvidence, lv: Levels, a: int, b: int, cfg: SegmenterConfig) -> list[_Cut]:
    """Candidate cuts strictly inside the island [a, b)."""
    hop = ev.hop_s
    pad = int(round(cfg.edge_pad_s / hop))
    cost = ev.energy_db + 40.0 * (ev.vad >= cfg.vad_threshold) + 10.0 * ev.vad  # where a cut hurts least
    cuts: list[_Cut] = []

    def quietest(lo: int, hi: int) -> int:
        lo, hi = max(lo, a + 1), min(hi, b - 1)
        return lo + int(np.argmin(cost[lo:hi])) if hi > lo else -1

    # pauses
    min_run = max(1, int(round(cfg.min_pause_s / hop)))
    for s, e in runs(lv.quiet[a:b]):
        s, e = s + a, e + a
        if e - s < min_run or s <= a or e >= b:
            continue
        d = (e - s) * hop
        p = min(pad, (e - s) // 2)
        strength = 1.5 * min(d, 2.0) + (0.3 if lv.silent[s:e].all() else 0.0)
        cuts.append(_Cut(quietest(s, e), s + p, e - p, strength, "pause"))

    # changes of the dominant sound class (speech / music / other), held on both sides over active frames
    hold = max(2, int(round(cfg.class_change_min_s / hop)))
    changes: list[int] = []
    if b - a > 2 * hold:
        active = (~lv.silent[a:b]).astype(np.int32)
        cls = ev.dominant_class(cfg.vad_threshold)[a:b]
        onehot = np.eye(3, dtype=np.int32)[cls] * active[:, None]
        c = np.concatenate([np.zeros((1, 3), np.int32), np.cumsum(onehot, axis=0)])
        t = np.arange(hold, b - a - hold)
        before = (c[t] - c[t - hold]).astype(float)
        after = (c[t + hold] - c[t]).astype(float)
        nb, na = before.sum(1), after.sum(1)
        ok = (nb >= 0.4 * hold) & (na >= 0.4 * hold)
        before, after = before / np.maximum(nb, 1)[:, None], after / np.maximum(na, 1)[:, None]
        change = ok & (before.argmax(1) != after.argmax(1)) & (before.max(1) >= 0.7) & (after.max(1) >= 0.7)
        score = before.max(1) + after.max(1)
        changes = [a + int(t[s + int(np.argmax(score[s:e]))]) for s, e in runs(change)]

    # spectral-novelty peaks (a new note, chord or sound), cut just before the onset
    if cfg.novelty_weight > 0:
        nov = ev.novelty[a:b]
        w = max(1, int(round(0.5 / hop)))
        from scipy.ndimage import maximum_filter1d

        peaks = np.flatnonzero((nov >= 0.5) & (nov == maximum_filter1d(nov, 2 * w + 1)))
        for pk in peaks:
            f = quietest(a + pk - int(round(0.3 / hop)), a + pk + 2)
            if f > 0 and ev.vad[f] < cfg.vad_threshold:
                cuts.append(_Cut(f, f, f, cfg.novelty_weight * 0.8 * float(nov[pk]), "novelty"))

    # a class change is not a place to cut by itself: it strengthens the pause or novelty cut it falls on
    near_change = int(round(1.0 / hop))  # YAMNet frames blur a change over about a second
    for tc in changes:
        close = [c for c in cuts if abs(c.frame - tc) <= near_change]
        if close:
            best = max(close, key=lambda c: c.strength)
            best.strength += 1.5
            best.reason = "class_change"

    # forced fallbacks: the least harmful frame in every half second (used only when nothing else fits)
    block = max(1, int(round(0.5 / hop)))
    for lo in range(a + 1, b - 1, block):
        f = quietest(lo, lo + block)
        if f > 0:
            excess = max(0.0, float(ev.energy_db[f]) - lv.pause_thr) / 10.0
            cuts.append(_Cut(f, f, f, -6.0 - excess - 3.0 * float(ev.vad[f]), "forced_max_length"))

    # one candidate per neighbourhood: the strongest wins
    cuts.sort(key=lambda c: (c.frame, -c.strength))
    merged: list[_Cut] = []
    near = max(1, int(round(0.06 / hop)))
    for c in cuts:
        if merged and c.frame - merged[-1].frame <= near:
            if c.strength > merged[-1].strength:
                merged[-1] = c
        else:
            merged.append(c)
    return merged


def _split_island(ev: FrameEvidence, lv: Levels, lo: int, a: int, b: int, hi: int, cfg: SegmenterConfig,
                  start_reason: str, end_reason: str) -> list[Segment]:
    """Cut the island [a, b) (padded extent [lo, hi)) into segments within [min, max] length."""
    hop = ev.hop_s
    min_f, max_f = cfg.min_segment_s / hop, cfg.max_segment_s / hop
    target_f = min(max(cfg.target_segment_s, cfg.min_segment_s), cfg.max_segment_s) / hop
    pts = [_Cut(lo, lo, lo, 0.0, start_reason)] + _candidates(ev, lv, a, b, cfg) + [_Cut(hi, hi, hi, 0.0, end_reason)]
    n = len(pts)
    best = np.full(n, -np.inf)
    back = np.full(n, -1)
    best[0] = 0.0
    for j in range(1, n):
        gain = (pts[j].strength if j < n - 1 else 0.0) - cfg.segment_penalty
        for i in range(j - 1, -1, -1):
            length = pts[j].left_end - pts[i].right_start
            if length > max_f:
                break
            if length < min_f:
                continue
            score = best[i] + gain - cfg.short_segment_cost * max(0.0, target_f - length) / target_f
            if score > best[j]:
                best[j], back[j] = score, i
    if not np.isfinite(best[-1]):  # no candidate arrangement fits: equal forced cuts
        k = int(np.ceil((hi - lo) / max_f))
        edges = np.linspace(lo, hi, k + 1).round().astype(int)
        reasons = [start_reason] + ["forced_max_length"] * (k - 1) + [end_reason]
        return [Segment(int(edges[i]), int(edges[i + 1]), reasons[i], reasons[i + 1]) for i in range(k)]
    chain = [n - 1]
    while chain[-1] != 0:
        chain.append(int(back[chain[-1]]))
    chain.reverse()
    return [Segment(pts[i].right_start, pts[j].left_end, pts[i].reason, pts[j].reason)
            for i, j in zip(chain[:-1], chain[1:], strict=True)]


def choose_segments(ev: FrameEvidence, cfg: SegmenterConfig, *, at_source_end: bool = True,
                    start_reason: str = "source_start") -> list[Segment]:
    """Segments over the evidence's frames; [] when everything is silent.

    `start_reason` is the reason of a segment starting at frame 0 (the source start, or the cut that ended
    the previous window); `at_source_end` says whether the audio ends where the source ends.
    """
    hop = ev.hop_s
    n = ev.n
    lv = levels(ev, cfg)
    pad = int(round(cfg.edge_pad_s / hop))
    min_f = int(round(cfg.min_segment_s / hop))
    islands = _islands(~lv.silent, bridge=int(round(cfg.split_silence_s / hop)))
    islands = _extend_over_decays(islands, ev.energy_db, cfg.silence_rel_db, cfg.pause_margin_db)
    # a faint blip barely over the silence threshold is not an event: keep islands that stand out or last
    min_active = int(round(0.25 / hop))
    islands = [[a, b] for a, b in islands
               if ev.energy_db[a:b].max() >= lv.silent_thr + 10.0 or (~lv.silent[a:b]).sum() >= min_active]
    if not islands:
        return []

    def room(k: int) -> tuple[int, int]:
        """How far island k's segment may extend: up to the neighbours' padded content."""
        lo = islands[k - 1][1] + pad if k > 0 else 0
        hi = islands[k + 1][0] - pad if k + 1 < len(islands) else n
        return lo, hi

    # an island too short to stand alone, with no silence around it to grow into, joins its nearest neighbour
    k = 0
    while k < len(islands):
        a, b = islands[k]
        lo, hi = room(k)
        if b - a < min_f and hi - lo < min_f and len(islands) > 1:
            gap_prev = a - islands[k - 1][1] if k > 0 else np.inf
            gap_next = islands[k + 1][0] - b if k + 1 < len(islands) else np.inf
            j = k - 1 if gap_prev <= gap_next else k + 1
            islands[min(j, k)] = [islands[min(j, k)][0], islands[max(j, k)][1]]
            del islands[max(j, k)]
            k = max(0, min(j, k) - 1)
            continue
        k += 1

    segments: list[Segment] = []
    for k, (a, b) in enumerate(islands):
        lo_room, hi_room = room(k)
        lo, hi = max(lo_room, a - pad), min(hi_room, b + pad)
        if hi - lo < min_f:  # grow into the surrounding silence, centred, up to min_segment_s
            need = min_f - (hi - lo)
            grow_lo = min(need // 2, lo - lo_room)
            grow_hi = min(need - grow_lo, hi_room - hi)
            grow_lo = min(need - grow_hi, lo - lo_room)
            lo, hi = lo - grow_lo, hi + grow_hi
        s_reason = start_reason if (k == 0 and lo <= pad) else "pause"
        last = k == len(islands) - 1
        e_reason = "source_end" if last and at_source_end and hi >= n - pad else "pause"
        if (hi - lo) < 2 * min_f:  # too short to hold two segments
            segments.append(Segment(lo, hi, s_reason, e_reason))
        else:
            segments.extend(_split_island(ev, lv, lo, a, b, hi, cfg, s_reason, e_reason))
    return segments
