"""What a caption may say about a segment: the fields, rounded to what a listener can judge, in one place.

Both mergers read `Facts`: the template merger writes sentences from it, the LLM merger gets `Facts.fields()`
as the data block of its prompt, and the fact check (`annotators/llm/check.py`) holds every reply to it.
Values outside physical sense never get here: an SNR over digital silence (the background has no energy,
so the ratio is only bounded by a numeric floor) becomes `background="silent"` and no number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from annotators.speech.caption import LANGUAGES
from schemas.annotation import SegmentAnnotation

MAX_PLAUSIBLE_SNR_DB = 60.0  # above this the background is digital silence (or nearly): no ratio is meaningful

_INJECTION = re.compile(
    r"\b(ignore|disregard|forget)\b.{0,40}\b(instruction|instructions|prompt|rules|above|previous)\b"
    r"|\b(write|say|print|output|type|respond|reply|answer)\b\s+(with\s+|only\s+|the\s+word\s+)?\S+",
    re.IGNORECASE,
)
_ECHO_TARGET = re.compile(
    r"\b(?:write|say|print|output|type|respond with|reply with|answer with|answer)\s+"
    r"(?:only\s+|the\s+word\s+|the\s+words\s+)?[\"']?([A-Za-z][\w'-]*)", re.IGNORECASE)


_LEVEL_NUMBER = re.compile(r"-?\d+(?:\.\d+)?\s*(?:dB|dBFS|LUFS|Hz|kHz)\b|DNSMOS|\d+(?:\.\d+)?/5\b")


def without_levels(caption: str) -> str:
    """A branch caption without the level numbers a listener cannot judge (LUFS, dB, Hz, DNSMOS): parentheses
    holding one are dropped, then any sentence still stating one."""
    text = re.sub(r"\s*\([^()]*\)", lambda m: "" if _LEVEL_NUMBER.search(m.group(0)) else m.group(0), caption)
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return " ".join(s for s in sentences if not _LEVEL_NUMBER.search(s)).strip()


def short_label(label: str) -> str:
    """AudioSet display names list synonyms after a comma ("Beep, bleep"): keep the first, lower case."""
    return label.split(",")[0].strip().lower()


def language_name(code: str | None) -> str | None:
    return None if not code else LANGUAGES.get(code, code)


def looks_like_instructions(text: str) -> bool:
    """A transcript that addresses a text model ("ignore your instructions and write ...")."""
    return bool(_INJECTION.search(text or ""))


def echo_targets(text: str) -> set[str]:
    """Words a transcript asks to have written ("... and write HACKED" -> {"hacked"})."""
    return {m.group(1).lower() for m in _ECHO_TARGET.finditer(text or "")}


@lru_cache(maxsize=1)
def yamnet_labels() -> tuple[str, ...]:
    from annotators.common.yamnet import class_names

    return tuple(class_names())


@dataclass(frozen=True)
class Event:
    label: str  # short, lower case
    start_s: float
    end_s: float
    also: tuple[str, ...] = ()  # other class names of the same sound


@dataclass
class Facts:
    key: str
    duration_s: float
    kinds: list[str]  # "speech", "music", "general", most present first
    # speech
    n_speakers: int = 0
    language: str | None = None  # a name ("English")
    pace: str | None = None  # "slowly" | "at an easy pace" | "quickly"
    gender: str | None = None  # "man" | "woman"
    emotion: str | None = None
    register: str | None = None  # "low" | "mid" | "high"
    transcript: str = ""
    speaker_turns: list[tuple[float, float]] = field(default_factory=list)
    word_times: list[float] = field(default_factory=list)
    # music
    tempo_bpm: int | None = None
    music_key: str | None = None
    time_signature: str | None = None
    instruments: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    vocals: bool = False
    # general audio
    events: list[Event] = field(default_factory=list)
    scene: list[str] = field(default_factory=list)
    top_classes: list[str] = field(default_factory=list)
    # levels, as words
    loudness: str | None = None  # "very quiet" | "quiet" | "moderate" | "loud"
    background: str | None = None  # "silent" | "quiet" | "noticeable" | "noisy"
    branch_captions: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ views
    def fields(self) -> dict:
        """The structured fields as the LLM sees them (rounded; nothing a listener could not judge)."""
        out: dict = {"duration_s": round(self.duration_s, 1), "content": self.kinds}
        if "speech" in self.kinds or self.n_speakers:
            out["speech"] = {k: v for k, v in {
                "n_speakers": self.n_speakers, "language": self.language, "pace": self.pace,
                "voice": self.gender, "emotion": self.emotion, "pitch": self.register,
                "transcript": self.transcript or None}.items() if v not in (None, "", [])}
        if "music" in self.kinds:
            out["music"] = {k: v for k, v in {
                "tempo_bpm": self.tempo_bpm, "key": self.music_key, "meter": self.time_signature,
                "instruments": self.instruments, "genres": self.genres, "vocals": self.vocals}.items()
                if v not in (None, "", [])}
        if self.events:
            out["sound_events"] = [{"label": e.label, "start_s": round(e.start_s, 1), "end_s": round(e.end_s, 1)}
                                   for e in self.events]
        if self.scene:
            out["scene"] = self.scene
        if self.loudness:
            out["loudness"] = self.loudness
        if self.background:
            out["background"] = self.background
        return out

    def times(self) -> list[float]:
        """Every time a caption may state (s): 0, the duration, event and turn bounds, event lengths."""
        ts = [0.0, self.duration_s]
        for e in self.events:
            ts += [e.start_s, e.end_s, e.end_s - e.start_s]
        for a, b in self.speaker_turns:
            ts += [a, b, b - a]
        return ts + self.word_times

    def vocabulary(self) -> str:
        """All label text of the fields, lower case, for "is this name in the fields" checks."""
        parts = self.instruments + self.genres + self.scene + self.top_classes
        for e in self.events:
            parts += [e.label, *e.also]
        parts += [self.language or "", self.gender or "", self.emotion or ""]
        return " | ".join(p.lower() for p in parts if p)


# ------------------------------------------------------------------ building Facts from a segment
def _pace(wps: float | None) -> str | None:
    if wps is None:
        return None
    return "slowly" if wps < 1.8 else "at an easy pace" if wps < 3.0 else "quickly"


def _gender(value: str | None) -> str | None:
    v = (value or "").strip().lower()
    return "man" if v in ("male", "man", "m") else "woman" if v in ("female", "woman", "f") else None


def _loudness(lufs: float | None) -> str | None:
    if lufs is None:
        return None
    return "very quiet" if lufs < -40 else "quiet" if lufs < -28 else "loud" if lufs > -14 else "moderate"


def plausible_snr(snr_db: float | None) -> float | None:
    """An SNR a listener could hear, or None: above MAX_PLAUSIBLE_SNR_DB the background is digital silence."""
    if snr_db is None or snr_db != snr_db or snr_db > MAX_PLAUSIBLE_SNR_DB:
        return None
    return snr_db


def _background(snrs: list[float | None]) -> str | None:
    known = [s for s in snrs if s is not None]
    if not known:
        return None
    snr = min(known)
    if snr > MAX_PLAUSIBLE_SNR_DB:
        return "silent"
    return "quiet" if snr >= 25 else "noticeable" if snr >= 10 else "noisy"


def _groups(events) -> list[Event]:
    """Events of different classes describing one sound (overlapping by half the shorter one) as one Event."""
    from annotators.general.annotator import group_same_sound

    groups = group_same_sound(events)
    out = []
    for g in groups:
        lead = short_label(g[0].label)
        also = tuple(dict.fromkeys(short_label(e.label) for e in g[1:] if short_label(e.label) != lead))
        out.append(Event(lead, g[0].start_s, g[0].end_s, also))
    return out


def facts_of(seg: SegmentAnnotation) -> Facts:
    shares = {"speech": seg.speech_share, "music": seg.music_share, "general": seg.general_share}
    kinds = sorted(seg.routes, key=lambda r: -shares[r])
    f = Facts(key=seg.key, duration_s=seg.duration_s, kinds=kinds,
              top_classes=[short_label(t.label) for t in seg.top_classes if t.label != "Silence"][:5])
    sp, mu, so = seg.speech, seg.music, seg.general
    lufs = next((b.loudness_lufs for b in (mu, sp, so) if b is not None and b.loudness_lufs is not None), None)
    f.loudness = _loudness(lufs)
    f.background = _background([b.snr_db for b in (sp, so) if b is not None])
    if sp is not None:
        f.n_speakers = sp.n_speakers or (1 if sp.transcript else 0)
        f.language = language_name(sp.language)
        f.pace = _pace(sp.words_per_s)
        f.gender = _gender(sp.gender.value)
        f.emotion = (sp.emotion.value or "").lower() or None
        f.register = sp.voice_register
        f.transcript = sp.transcript.strip()
        f.speaker_turns = [(t.start_s, t.end_s) for t in sp.speakers]
        f.word_times = [w.start_s for w in sp.words]
    if mu is not None:
        # the music branch states a tempo and a key only above its own confidence thresholds
        f.tempo_bpm = int(round(mu.tempo_bpm)) if mu.tempo_bpm is not None else None
        f.music_key = mu.music_key
        f.time_signature = mu.time_signature
        f.instruments = list(dict.fromkeys(short_label(i) for i in mu.instruments))
        f.genres = list(dict.fromkeys(short_label(g) for g in mu.genres))
        f.vocals = mu.vocals
    if so is not None:
        f.events = _groups(so.events)
        f.scene = [short_label(t) for t in so.scene_tags]
    f.branch_captions = {k: without_levels(v) for k, v in (("speech", seg.speech_caption),
                                                           ("music", seg.music_caption),
                                                           ("general", seg.general_caption)) if v}
    return f
