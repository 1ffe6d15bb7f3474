"""The speech branch caption: plain English built only from the measured fields (no model, deterministic).

It quotes at most a short piece of the transcript (`transcript_guard.short_quote`), and nothing of a transcript
that reads as instructions to a text model: a caption never repeats "... write HACKED".
"""

from __future__ import annotations

from annotators.transcript_guard import looks_like_instructions, short_quote
from schemas.annotation import SpeechAnnotation

LANGUAGES = {
    "en": "English", "de": "German", "es": "Spanish", "it": "Italian", "fr": "French", "pt": "Portuguese",
    "nl": "Dutch", "sv": "Swedish", "da": "Danish", "no": "Norwegian", "fi": "Finnish", "pl": "Polish",
    "cs": "Czech", "ru": "Russian", "uk": "Ukrainian", "el": "Greek", "tr": "Turkish", "ar": "Arabic",
    "he": "Hebrew", "hi": "Hindi", "bn": "Bengali", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
    "vi": "Vietnamese", "th": "Thai", "id": "Indonesian", "ms": "Malay", "ro": "Romanian", "hu": "Hungarian",
    "ca": "Catalan", "fa": "Persian", "ur": "Urdu", "ta": "Tamil", "sw": "Swahili",
}
_COUNT = {1: "One speaker", 2: "Two speakers", 3: "Three speakers", 4: "Four speakers", 5: "Five speakers"}


def _pace(wps: float) -> str:
    return "slowly" if wps < 2.0 else "at a moderate pace" if wps < 3.0 else "quickly"


def _quality(a: SpeechAnnotation) -> str | None:
    if a.dnsmos_ovrl is not None:
        q = "clean" if a.dnsmos_ovrl >= 3.5 else "fair" if a.dnsmos_ovrl >= 2.8 else "poor"
        return f"{q} quality (DNSMOS {a.dnsmos_ovrl:.1f}/5)"
    if a.snr_db is not None:
        q = "clean" if a.snr_db >= 30 else "some background noise" if a.snr_db >= 15 else "noisy"
        return f"{q} (SNR {a.snr_db:.0f} dB)"
    return None


def speech_caption(a: SpeechAnnotation) -> str:
    if not a.transcript and a.n_speakers == 0:
        return "No speech was detected." if not a.hallucination_dropped else (
            "No reliable speech was detected; text the recognizer produced over non-speech was discarded."
        )
    who = _COUNT.get(a.n_speakers, f"{a.n_speakers} speakers") if a.n_speakers else "Someone"
    verb = "speaks" if a.n_speakers <= 1 else "speak"
    parts = [f"{who} {verb}"]
    if a.language:
        name = LANGUAGES.get(a.language, a.language)
        parts.append(f"in {name}")
    if a.words_per_s is not None:
        parts.append(f"{_pace(a.words_per_s)} ({a.words_per_s:.1f} words/s)")
    s = " ".join(parts)
    if a.voice_register and a.f0_median_hz:
        kind = "a low-pitched" if a.voice_register == "low" else "a high-pitched" if a.voice_register == "high" else "a mid-pitched"
        s += f", with {kind} voice (median F0 {a.f0_median_hz:.0f} Hz)" if a.n_speakers <= 1 else (
            f", voices {a.voice_register}-pitched overall (median F0 {a.f0_median_hz:.0f} Hz)"
        )
    s += "."
    tail = [x for x in (_quality(a), f"{a.loudness_lufs:.0f} LUFS" if a.loudness_lufs is not None else None) if x]
    if tail:
        t = ", ".join(tail)
        s += " " + t[0].upper() + t[1:] + "."
    quote = short_quote(a.transcript)
    if quote:
        s += f' They say: "{quote}"'
    elif looks_like_instructions(a.transcript):
        s += " They give instructions (not quoted)."
    elif not a.transcript:
        s += " No words could be transcribed."
    return s
