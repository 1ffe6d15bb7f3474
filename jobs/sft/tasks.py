"""The SFT tasks: each a small class with one job, registered by name.

A task looks at one segment's annotation and returns its `Drafts`: every answer it can give (each with the
fields it came from, so the answer can be re-derived from `source_fields`), and the reasons it dropped
candidates (low confidence, missing fields). The generator (jobs/sft/generate.py) decides how many samples
to draw from the drafts (the task's weight) and which phrasing to ask with.

Answers state only what the fields hold: a dimension without a field is never invented, times are seconds
relative to the segment start in the forms of `schemas.timemarkers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from annotators.speech.caption import LANGUAGES
from schemas.annotation import SegmentAnnotation, SoundEvent
from schemas.sft_config import SftConfig, Thresholds
from schemas.timemarkers import (
    format_event_lines,
    format_spans,
    format_time,
    format_timestamped_words,
    group_phrases,
)


@dataclass
class Segment:
    """One annotated segment as the SFT job sees it: the annotation and where its audio lives."""

    ann: SegmentAnnotation
    output: str  # the annotate output it came from (absolute path or URI)
    shard: str  # "shard-NNNNNN.tar" in OUT/shards
    caption: str  # the unified caption, or the named caption table's
    short_caption: str | None = None
    caption_source: str = "unified"  # or "table:NAME"
    caption_missing: str = "no_caption"  # the skip reason when `caption` is empty

    @property
    def key(self) -> str:
        return self.ann.key

    @property
    def audio_ref(self) -> str:
        """"<annotate output>/shards/<shard>.tar#<key>": the trainer reads `<key>.flac` from that tar."""
        return f"{self.output}/shards/{self.shard}#{self.ann.key}"


@dataclass
class Draft:
    kind: str  # the question kind / variant; selects the prompt bank
    answer: str
    source_fields: dict[str, Any]
    thinking: str | None = None
    prompt_vars: dict[str, str] = field(default_factory=dict)


@dataclass
class Drafts:
    items: list[Draft] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one reason per dropped candidate


class Task(Protocol):
    name: str

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts: ...


TASKS: dict[str, type] = {}


def register(cls):
    TASKS[cls.name] = cls
    return cls


def num(x: float | None) -> float | None:
    """A field value as stored in `source_fields`: exact (answers are re-derived from it)."""
    return None if x is None else float(x)


def language_name(code: str | None) -> str | None:
    return LANGUAGES.get(code, code) if code else None


def first_sentence(text: str) -> str:
    """The first sentence of a caption (its short variant when no `short_caption` field exists)."""
    text = text.strip()
    for i, ch in enumerate(text):
        if ch in ".!?" and (i + 1 == len(text) or text[i + 1] == " ") and not text[max(0, i - 3):i].replace(".", "").isdigit():
            return text[: i + 1]
    return text


def join_words(items: list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# ------------------------------------------------------------------------------------------ caption
@register
class CaptionTask:
    """"Describe this audio." -> the unified caption (detailed) or its first sentence / short caption."""

    name = "caption"

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        caption = seg.caption.strip()
        if not caption:
            return Drafts(skipped=[seg.caption_missing])
        src = {"caption": caption, "caption_source": seg.caption_source}
        short = (seg.short_caption or "").strip() or first_sentence(caption)
        items = [Draft("detailed", caption, src)]
        if short and short != caption:
            items.append(Draft("short", short, {**src, "short_caption": short,
                                                "short_from": "short_caption" if seg.short_caption else "first_sentence"}))
        return Drafts(items)


# ------------------------------------------------------------------------------------------ speech
def speech_usable(seg: Segment, th: Thresholds, need_words: bool) -> tuple[bool, list[str]]:
    """Whether the ASR output may be trained on, and the reasons it may not."""
    sp = seg.ann.speech
    if sp is None:
        return False, []
    reasons = []
    if sp.no_speech_prob is not None and sp.no_speech_prob > th.no_speech_prob:
        reasons.append("asr_no_speech_prob")
    if sp.hallucination_dropped:
        reasons.append("asr_hallucination_dropped")
    if not sp.transcript.strip():
        reasons.append("asr_no_transcript")
    elif need_words and len([w for w in sp.words if w.word.strip()]) < th.min_words:
        reasons.append("asr_no_word_times")
    return not reasons, reasons


def pace_word(wps: float) -> str:
    return "slowly" if wps < 2.0 else "at a moderate pace" if wps < 3.0 else "quickly"


def loudness_word(lufs: float) -> str:
    return "quietly" if lufs < -30 else "loudly" if lufs > -16 else "at a normal level"


def quality_word(dnsmos: float) -> str:
    return "clean" if dnsmos >= 3.5 else "fair" if dnsmos >= 2.8 else "poor"


@register
class SpeechCaptionTask:
    """Speaker attributes the fields support: pitch/register, pace, loudness, quality, language, speakers,
    and gender/age/emotion only when a classifier gave them."""

    name = "speech_caption"

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        sp = seg.ann.speech
        if sp is None:
            return Drafts()
        src: dict[str, Any] = {}
        parts: list[str] = []
        if sp.n_speakers:
            src["speech.n_speakers"] = sp.n_speakers
            parts.append("One person speaks." if sp.n_speakers == 1 else f"{sp.n_speakers} people speak.")
        for attr in ("gender", "age", "emotion"):
            pred = getattr(sp, attr)
            if pred.value:
                src[f"speech.{attr}"] = pred.value
                parts.append(f"The {attr} is {pred.value}." if attr != "emotion" else f"The voice sounds {pred.value}.")
        if sp.voice_register and sp.f0_median_hz:
            src["speech.voice_register"], src["speech.f0_median_hz"] = sp.voice_register, num(sp.f0_median_hz)
            parts.append(f"The voice is {sp.voice_register}-pitched, around {round(sp.f0_median_hz)} Hz." if sp.n_speakers <= 1
                         else f"The voices are {sp.voice_register}-pitched overall, around {round(sp.f0_median_hz)} Hz.")
        if sp.words_per_s is not None and sp.transcript.strip():
            src["speech.words_per_s"] = num(sp.words_per_s)
            pace = {"slowly": "slow", "quickly": "fast"}.get(pace_word(sp.words_per_s), "moderate")
            parts.append(f"The speaking pace is {pace}, about {sp.words_per_s:.1f} words per second.")
        if sp.loudness_lufs is not None:
            src["speech.loudness_lufs"] = num(sp.loudness_lufs)
            parts.append(f"It is spoken {loudness_word(sp.loudness_lufs)} ({round(sp.loudness_lufs)} LUFS).")
        if sp.dnsmos_ovrl is not None:
            src["speech.dnsmos_ovrl"] = num(sp.dnsmos_ovrl)
            parts.append(f"The recording quality is {quality_word(sp.dnsmos_ovrl)} (DNSMOS {sp.dnsmos_ovrl:.1f} of 5).")
        if sp.language and (sp.language_probability or 0) >= th.language_probability and sp.transcript.strip():
            src["speech.language"] = sp.language
            parts.append(f"The language is {language_name(sp.language)}.")
        if not parts:
            return Drafts(skipped=["no_speaker_fields"])
        return Drafts([Draft("attributes", " ".join(parts), src)])


@register
class AsrTask:
    """Plain transcription, in the segment's language (never translated)."""

    name = "asr"

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        ok, reasons = speech_usable(seg, th, need_words=False)
        if not ok:
            return Drafts(skipped=reasons)
        sp = seg.ann.speech
        return Drafts([Draft("plain", sp.transcript.strip(), {"speech.transcript": sp.transcript.strip(),
                                                              "speech.language": sp.language})])


@register
class AsrTimestampTask:
    """Timestamped transcription, word by word or phrase by phrase, in the `schemas.timemarkers` span form."""

    name = "asr_ts"

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        ok, reasons = speech_usable(seg, th, need_words=True)
        if not ok:
            return Drafts(skipped=reasons)
        sp = seg.ann.speech
        words = [{"word": w.word.strip(), "start_s": w.start_s, "end_s": w.end_s} for w in sp.words if w.word.strip()]
        src = {"speech.words": words, "speech.language": sp.language}
        items = [Draft("words", format_timestamped_words(words), src)]
        phrases = group_phrases(words)
        if len(phrases) < len(words):
            items.append(Draft("phrases", format_spans(phrases), src))
        return Drafts(items)


@register
class SpeakerTimestampTask:
    """Who speaks when, for segments with two or more speakers: "N speakers." then one turn a line."""

    name = "speaker_ts"

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        sp = seg.ann.speech
        if sp is None or sp.n_speakers < 2:
            return Drafts()
        if not sp.speakers:
            return Drafts(skipped=["speaker_turns_missing"])
        names: dict[str, str] = {}
        turns = []
        for t in sorted(sp.speakers, key=lambda t: (t.start_s, t.end_s)):
            names.setdefault(t.speaker, f"Speaker {len(names) + 1}")
            turns.append({"speaker": t.speaker, "start_s": t.start_s, "end_s": t.end_s})
        answer = f"{len(names)} speakers.\n" + format_spans(
            [{"text": names[t["speaker"]], "start_s": t["start_s"], "end_s": t["end_s"]} for t in turns], sep="\n")
        return Drafts([Draft("turns", answer, {"speech.speakers": turns, "speech.n_speakers": sp.n_speakers})])


# ------------------------------------------------------------------------------------------ music
@register
class MusicQaTask:
    """Questions whose answers are measured fields: tempo, key and mode, meter, instruments, genre, vocals."""

    name = "music_qa"

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        mu = seg.ann.music
        if mu is None:
            return Drafts()
        out = Drafts()
        tempo_ok = mu.tempo_bpm is not None and (mu.tempo_confidence or 0.0) >= th.tempo_confidence
        if mu.tempo_bpm is None:
            out.skipped.append("music_tempo_missing")
        elif not tempo_ok:
            out.skipped.append("music_tempo_low_confidence")
        else:
            out.items.append(Draft("tempo", f"About {round(mu.tempo_bpm)} BPM.",
                                   {"music.tempo_bpm": num(mu.tempo_bpm), "music.tempo_confidence": num(mu.tempo_confidence)}))
        if mu.time_signature:
            if tempo_ok:
                out.items.append(Draft("meter", f"It is in {mu.time_signature} time.",
                                       {"music.time_signature": mu.time_signature,
                                        "music.tempo_confidence": num(mu.tempo_confidence)}))
            else:
                out.skipped.append("music_meter_low_confidence")
        if mu.music_key:
            if (mu.key_confidence or 0.0) >= th.key_confidence:
                out.items.append(Draft("key", f"It is in {mu.music_key}.",
                                       {"music.music_key": mu.music_key, "music.key_confidence": num(mu.key_confidence)}))
            else:
                out.skipped.append("music_key_low_confidence")
        else:
            out.skipped.append("music_key_missing")
        score = {t.label: t.score for t in mu.tags}  # a tag without a score passes
        instruments = [i for i in mu.instruments if score.get(i, 1.0) >= th.tag_score]
        genres = [g for g in mu.genres if score.get(g, 1.0) >= th.tag_score]
        out.skipped += ["music_tag_low_score"] * (len(mu.instruments) + len(mu.genres) - len(instruments) - len(genres))
        if instruments:
            names = [i.split(",")[0].strip().lower() for i in instruments]
            out.items.append(Draft("instruments", f"I can hear {join_words(names)}.", {"music.instruments": instruments}))
        if genres:
            names = [g.lower() for g in genres]
            out.items.append(Draft("genre", f"It sounds like {join_words(names)}.", {"music.genres": genres}))
        out.items.append(Draft("vocals", "Yes, there are vocals." if mu.vocals else "No, it is instrumental.",
                               {"music.vocals": mu.vocals}))
        return out


# ------------------------------------------------------------------------------------------ sound events
def usable_events(seg: Segment, th: Thresholds) -> tuple[list[SoundEvent], list[str]]:
    so = seg.ann.general
    if so is None:
        return [], []
    keep = [e for e in so.events if e.score >= th.event_score and e.end_s > e.start_s]
    dropped = ["event_below_threshold"] * sum(1 for e in so.events if e.score < th.event_score)
    return sorted(keep, key=lambda e: (e.start_s, e.end_s, e.label)), dropped


def event_dicts(events: list[SoundEvent]) -> list[dict[str, Any]]:
    return [{"label": e.label, "start_s": e.start_s, "end_s": e.end_s, "score": num(e.score)} for e in events]


def merged_lines(events: list[SoundEvent]) -> str:
    """Event lines where labels sharing one span (YAMNet's near-synonyms: noise, static, white noise) share
    one line, joined by "; " in the order they came."""
    spans: dict[tuple[str, str], list[str]] = {}
    for e in events:
        spans.setdefault((f"{e.start_s:.2f}", f"{e.end_s:.2f}"), []).append(e.label)
    return "\n".join(f"{a} - {b}: {'; '.join(labels)}" for (a, b), labels in spans.items())


def whole(x: float) -> str:
    return format_time(float(x))


@register
class EventLocalisationTask:
    """Dense timeline (one event a line, `start_sec - end_sec: description`), "When does the X occur?" and
    the inverse "What happens between A s and B s?"; all answers in the event-line form (labels with the
    same span share a line, "; "-joined)."""

    name = "event_localisation"

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        if seg.ann.general is None:
            return Drafts()
        events, dropped = usable_events(seg, th)
        if not events:
            return Drafts(skipped=dropped or ["no_events"])
        out = Drafts(skipped=dropped)
        out.items.append(Draft("dense", merged_lines(events), {"general.events": event_dicts(events)}))
        for label in sorted({e.label for e in events}):
            mine = [e for e in events if e.label == label]
            out.items.append(Draft("when", format_event_lines(mine), {"general.events": event_dicts(mine), "label": label},
                                   prompt_vars={"label": label.lower()}))
        first = events[0]  # the window around the first event, in whole seconds
        a, b = int(first.start_s), int(first.end_s) + 1
        inside = [e for e in events if e.start_s < b and e.end_s > a]
        out.items.append(Draft("between", merged_lines(inside),
                               {"general.events": event_dicts(inside), "window_s": [a, b]},
                               prompt_vars={"start": whole(a), "end": whole(b)}))
        return out


# ------------------------------------------------------------------------------------------ audio QA
class TemplateQuestions:
    """Closed questions whose answers are fields. The open-question source (an LLM through the caption
    merger's hardened client, answers fact-checked against these same fields) plugs in beside it in
    `QA_SOURCES` once that client lands."""

    name = "template"

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        a, out = seg.ann, Drafts()
        sp = a.speech
        if sp is not None and sp.n_speakers:
            out.items.append(Draft("count_speakers", "One person speaks." if sp.n_speakers == 1 else
                                   f"{sp.n_speakers} people speak.", {"speech.n_speakers": sp.n_speakers}))
        if sp is not None and sp.language and sp.transcript.strip():
            if (sp.language_probability or 0) >= th.language_probability:
                out.items.append(Draft("language", f"{language_name(sp.language)}.",
                                       {"speech.language": sp.language,
                                        "speech.language_probability": num(sp.language_probability or 0)}))
            else:
                out.skipped.append("language_low_confidence")
        routes = list(a.routes)
        out.items.append(Draft("has_music", "Yes." if "music" in routes else "No.", {"routes": routes}))
        out.items.append(Draft("has_speech", "Yes." if "speech" in routes else "No.", {"routes": routes}))
        if a.top_classes:
            top = a.top_classes[0]
            out.items.append(Draft("main_sound", f"{top.label}.", {"top_classes[0]": {"label": top.label, "score": num(top.score)}}))
        out.items.append(Draft("duration", f"About {a.duration_s:.1f} seconds.", {"duration_s": num(a.duration_s)}))
        kinds = [{"speech": "speech", "music": "music", "general": "other sounds"}[r] for r in routes]
        if kinds:
            out.items.append(Draft("content", f"{join_words(kinds)[0].upper()}{join_words(kinds)[1:]}.", {"routes": routes}))
        return out


QA_SOURCES: dict[str, type] = {"template": TemplateQuestions}


@register
class AudioQaTask:
    name = "audio_qa"

    def __init__(self, source: str = "template"):
        self.source = QA_SOURCES[source]()

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        return self.source.drafts(seg, th)


# ------------------------------------------------------------------------------------------ reasoning
def reasoned(kind: str, steps: list[str], final: str, src: dict[str, Any]) -> Draft:
    """A worked answer: `thinking` holds the steps (the Thinking variant renders them in <think>)."""
    return Draft(kind, final, src, thinking="\n".join(steps))


@register
class ReasoningTask:
    """Multi-step questions combining branches, with a worked answer."""

    name = "reasoning"

    def drafts(self, seg: Segment, th: Thresholds) -> Drafts:
        a, out = seg.ann, Drafts()
        sp, mu = a.speech, a.music
        speech_ok = sp is not None and speech_usable(seg, th, need_words=True)[0]
        tempo_ok = mu is not None and mu.tempo_bpm is not None and (mu.tempo_confidence or 0) >= th.tempo_confidence
        if speech_ok and tempo_ok and "music" in a.routes:
            n = len([w for w in sp.words if w.word.strip()])
            out.items.append(reasoned("speech_over_music", [
                f"1. Speech: {n} words are transcribed (speech share {a.speech_share:.0%}).",
                f"2. Music: the music share is {a.music_share:.0%}, so music plays in the same segment.",
                f"3. Tempo: the beats are about {round(mu.tempo_bpm)} per minute."],
                f"Yes, the speaker talks over music, at about {round(mu.tempo_bpm)} BPM.",
                {"speech.n_words": n, "speech_share": num(a.speech_share), "music_share": num(a.music_share),
                 "music.tempo_bpm": num(mu.tempo_bpm)}))
        if speech_ok:
            words = [w for w in sp.words if w.word.strip()]
            span = words[-1].end_s - words[0].start_s
            if len(words) >= 3 and span > 0:
                rate = len(words) / span
                out.items.append(reasoned("speech_rate", [
                    f"1. Count the words: {len(words)}.",
                    f"2. Time they take: from {format_time(words[0].start_s)} s to {format_time(words[-1].end_s)} s, "
                    f"{span:.2f} s.",
                    f"3. Rate: {len(words)} / {span:.2f} = {rate:.1f} words per second."],
                    f"{len(words)} words in {span:.1f} s: about {rate:.1f} words per second, {pace_word(rate)}.",
                    {"speech.words": [{"word": w.word.strip(), "start_s": w.start_s, "end_s": w.end_s} for w in words]}))
        events, _ = usable_events(seg, th)
        if len(events) >= 2:
            e1 = events[0]
            e2 = next((e for e in events[1:] if e.start_s > e1.start_s), events[1])
            gap = e2.start_s - e1.start_s
            out.items.append(reasoned("event_order", [
                f"1. The earliest event is {e1.label}, starting at {format_time(e1.start_s)} s.",
                f"2. The next one is {e2.label}, starting at {format_time(e2.start_s)} s.",
                f"3. Gap: {format_time(e2.start_s)} - {format_time(e1.start_s)} = {gap:.2f} s."],
                f"{e1.label} comes first; {e2.label} starts {gap:.1f} s later.",
                {"general.events": event_dicts([e1, e2])}))
        if events:
            longest = max(events, key=lambda e: (e.end_s - e.start_s, -e.start_s))
            steps = [f"{i + 1}. {e.label}: {format_time(e.start_s)} to {format_time(e.end_s)} s, "
                     f"{e.end_s - e.start_s:.2f} s." for i, e in enumerate(events[:8])]
            if longest not in events[:8]:
                steps.append(f"{len(steps) + 1}. {longest.label}: {longest.end_s - longest.start_s:.2f} s.")
            out.items.append(reasoned("longest_event", [*steps, f"{len(steps) + 1}. The longest is {longest.label}."],
                                      f"{longest.label}, for {longest.end_s - longest.start_s:.1f} s.",
                                      {"general.events": event_dicts(events)}))
        if tempo_ok and len(mu.beats_s) >= 4:
            beats = sorted(mu.beats_s)
            intervals = sorted(b - a_ for a_, b in zip(beats, beats[1:], strict=False))
            med = intervals[len(intervals) // 2]
            if med > 0:
                out.items.append(reasoned("beats", [
                    f"1. {len(beats)} beats are heard, from {format_time(beats[0])} s to {format_time(beats[-1])} s.",
                    f"2. The median gap between beats is {med:.3f} s.",
                    f"3. Tempo: 60 / {med:.3f} = {60 / med:.0f} BPM."],
                    f"{len(beats)} beats; their spacing implies about {60 / med:.0f} BPM.",
                    {"music.beats_s": list(beats)}))
        return out


def build_tasks(cfg: SftConfig) -> dict[str, Task]:
    """Instances of the tasks with a positive weight, in registry order."""
    out: dict[str, Task] = {}
    for name, w in cfg.weights().items():
        if w > 0:
            out[name] = AudioQaTask(cfg.audio_qa_source) if name == "audio_qa" else TASKS[name]()
    return out
