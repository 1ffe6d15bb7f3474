"""The text form of time, shared by the trainer's audio stream and the SFT job's timestamped targets.

Time markers: every `interval_s` seconds of audio, the elapsed seconds are written as ordinary text
("2", "4", ..., "10", or "1.5" for a 1.5 s interval) between the audio placeholders. There is no marker
at 0 s. A marker sits right after the placeholders of the frames that start before its time, i.e. before
the first frame starting at or after it; a marker whose time the audio reaches exactly (25 frames = 2.0 s)
still follows the last frame, as the released processor's `_build_audio_tokens_with_time_markers` writes
it (it loops over the whole seconds up to `int(frames / 12.5)`). The number of audio placeholders always
equals the encoder's frame count.

Timestamped targets (timestamped ASR, event localisation) write times in the same form, so a model can
copy a marker it has just read into its answer:

    "[0.52-0.9] hello [1-1.4] world"

`format_timestamped_words` / `parse_timestamped_words` are each other's inverse (to 0.01 s).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

FRAME_RATE_HZ = 12.5  # audio-encoder frames per second (16 kHz / hop 160 / 8)
MARKER_INTERVAL_S = 2.0  # the released processor's interval: 25 frames
TIME_DECIMALS = 2  # times are written to the centisecond


def marker_text(seconds: float) -> str:
    """Seconds as short decimal text: 2.0 -> "2", 1.5 -> "1.5", 0.25 -> "0.25", 12.345 -> "12.35"."""
    if seconds < 0:
        raise ValueError(f"negative time {seconds}")
    text = f"{seconds:.{TIME_DECIMALS}f}".rstrip("0").rstrip(".")
    return text or "0"


def marker_positions(
    n_frames: int, frame_rate_hz: float = FRAME_RATE_HZ, interval_s: float = MARKER_INTERVAL_S
) -> list[tuple[int, float]]:
    """Where the markers go in a stream of `n_frames` audio frames.

    Returns [(frame_index, seconds)]: the marker for `seconds` is inserted just before audio frame
    `frame_index` (i.e. after `frame_index` placeholders), the first frame starting at or after `seconds`.
    Markers are kept while the audio lasts at least their time (`frame_index <= n_frames`): with 25
    frames at 12.5 Hz the "2" follows the 25th and last frame, as in the released processor; later ones
    are dropped. Intervals need not be a whole number of frames (1.5 s at 12.5 Hz is 18.75 frames:
    markers before frames 19, 38, 57, ...).
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    out = []
    k = 1
    while True:
        seconds = round(k * interval_s, 6)  # k * 0.1 should print as "0.3", not "0.30000000000000004"
        frame = math.ceil(seconds * frame_rate_hz - 1e-6)  # first frame with start time >= seconds
        if frame > n_frames:
            return out
        out.append((frame, seconds))
        k += 1


def format_time(seconds: float) -> str:
    return marker_text(max(0.0, seconds))


def format_timestamped_words(words: Iterable[Any]) -> str:
    """Words with times -> "[start-end] word [start-end] word".

    `words` are `schemas.annotation.Word` objects or dicts with word / start_s / end_s.
    """
    parts = []
    for w in words:
        if isinstance(w, dict):
            word, start, end = w["word"], w["start_s"], w["end_s"]
        else:
            word, start, end = w.word, w.start_s, w.end_s
        word = word.strip()
        if word:
            parts.append(f"[{format_time(start)}-{format_time(end)}] {word}")
    return " ".join(parts)


_WORD_RE = re.compile(r"\[(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\]\s+(\S+)")


def parse_timestamped_words(text: str) -> list[dict[str, Any]]:
    """The inverse of `format_timestamped_words`: [{word, start_s, end_s}]."""
    return [
        {"word": m.group(3), "start_s": float(m.group(1)), "end_s": float(m.group(2))}
        for m in _WORD_RE.finditer(text)
    ]


def format_time_span(start_s: float, end_s: float, label: str) -> str:
    """One localised event: "[3.2-5] dog barking" (the same form as a timestamped word)."""
    return f"[{format_time(start_s)}-{format_time(end_s)}] {label.strip()}"


# ---------------------------------------------------------------- SFT answer formats (the `eventcap sft` job)
# Spans ("[start-end] text"): timestamped ASR by word or by phrase, and speaker turns, one form for all.
# Event lines ("start_sec - end_sec: description", one a line, two decimals): dense event localisation, the
# line format of MOSS-Audio's own time-aware examples ("0.00 - 57.00: birds chirping").


def group_phrases(words: Iterable[Any], max_gap_s: float = 0.3, max_words: int = 8) -> list[dict[str, Any]]:
    """Consecutive words -> phrases [{text, start_s, end_s}]; a new phrase starts after a pause longer than
    `max_gap_s` or after `max_words` words. Word times are kept exactly (a phrase spans its first word's
    start to its last word's end)."""
    phrases: list[dict[str, Any]] = []
    n = 0
    for w in words:
        word, start, end = (w["word"], w["start_s"], w["end_s"]) if isinstance(w, dict) else (w.word, w.start_s, w.end_s)
        word = word.strip()
        if not word:
            continue
        if phrases and start - phrases[-1]["end_s"] <= max_gap_s and n < max_words:
            phrases[-1]["text"] += " " + word
            phrases[-1]["end_s"] = end
            n += 1
        else:
            phrases.append({"text": word, "start_s": start, "end_s": end})
            n = 1
    return phrases


def format_spans(spans: Iterable[dict[str, Any]], sep: str = " ") -> str:
    """[{text, start_s, end_s}] -> "[0.52-1.4] hello world [1.9-2.3] again" (`sep` between spans)."""
    return sep.join(format_time_span(s["start_s"], s["end_s"], s["text"]) for s in spans if s["text"].strip())


_SPAN_RE = re.compile(r"\[(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\]\s*([^\[\n]*)")


def parse_spans(text: str) -> list[dict[str, Any]]:
    """The inverse of `format_spans` (and of `format_timestamped_words`): [{text, start_s, end_s}]; the text
    of a span runs to the next "[" or line end."""
    return [{"text": m.group(3).strip(), "start_s": float(m.group(1)), "end_s": float(m.group(2))}
            for m in _SPAN_RE.finditer(text)]


def format_event_line(start_s: float, end_s: float, description: str) -> str:
    """One event as MOSS-Audio writes it: "3.20 - 5.00: dog barking" (plain decimal seconds, two decimals)."""
    return f"{max(0.0, start_s):.2f} - {max(0.0, end_s):.2f}: {description.strip()}"


def format_event_lines(events: Iterable[Any]) -> str:
    """Events (SoundEvent objects or dicts with label / start_s / end_s) -> one `format_event_line` a line."""
    lines = []
    for e in events:
        label, start, end = (e["label"], e["start_s"], e["end_s"]) if isinstance(e, dict) else (e.label, e.start_s, e.end_s)
        lines.append(format_event_line(start, end, label))
    return "\n".join(lines)


_EVENT_LINE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*:\s*(.+?)\s*$", re.MULTILINE)


def parse_event_lines(text: str) -> list[dict[str, Any]]:
    """The inverse of `format_event_lines`: [{label, start_s, end_s}] (lines that do not match are ignored)."""
    return [{"label": m.group(3), "start_s": float(m.group(1)), "end_s": float(m.group(2))}
            for m in _EVENT_LINE_RE.finditer(text)]
