"""The fact check: every LLM reply is held to the segment's fields before it may become a caption.

No CLAP model ships here (AudioSetCaps gates captions with a CLAP score), so the fields are the gate:
- numbers it states (tempo, times and durations, speaker count) must match a field within a tolerance;
  levels a listener cannot judge (dB, LUFS, Hz) are never stated;
- a key, a language, or an instrument / genre / sound-event name (AudioSet's vocabulary) must be in the fields;
- content words none of the fields, branch captions or transcript support ("a smartwatch with health
  monitoring") are counted, and too many reject the reply;
- text copied from the transcript beyond a short quote, and any echo of an instruction the transcript gives
  ("... write HACKED"), reject it;
- so does an echo of the prompt itself: a run of PROMPT_ECHO_WORDS words from the instructions or the worked
  examples that the clip's own data does not hold, or talk about the prompt ("JSON", "the data", "a language
  model").
Each problem is a `Problem(code, detail)`; the codes are what `report.json` counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from annotators.llm.facts import Facts, yamnet_labels
from annotators.speech.caption import LANGUAGES
from annotators.transcript_guard import MAX_QUOTE_WORDS, copies_transcript, echoes_instruction

TIME_TOL_S, TIME_TOL_REL = 0.35, 0.1
TEMPO_TOL_BPM, TEMPO_TOL_REL = 3.0, 0.05
MAX_UNGROUNDED = 3  # this many unsupported content words reject a reply
PROMPT_ECHO_WORDS = 5  # a run this long from the instructions (and not in the data) is an echo of the prompt
# words about the prompt, not the audio ("This is a clip from the audio-language model.")
_PROMPT_TALK = re.compile(r"\b(json|audio-language|language model|prompt|data block|the data|short_caption|"
                          r"instructions?)\b", re.I)

_NUM = r"(\d+(?:\.\d+)?)"
_UNIT_S = r"(?:s|sec|secs|seconds?)\b"
_RANGE_S = re.compile(rf"{_NUM}\s*(?:-|–|to|and)\s*{_NUM}\s*-?\s*{_UNIT_S}", re.I)
_ONE_S = re.compile(rf"{_NUM}\s*-?\s*{_UNIT_S}", re.I)
_MINUTES = re.compile(rf"{_NUM}\s*-?\s*(?:min|mins|minutes?)\b", re.I)
_TEMPO = re.compile(rf"{_NUM}\s*(?:bpm|beats\s+(?:per|a|each)\s+minute)", re.I)
_LEVEL = re.compile(rf"{_NUM}\s*(?:db|dbfs|lufs|hz|khz)\b", re.I)
_KEY = re.compile(r"\b([A-G])\s?(#|♯|b|♭|-sharp|-flat| sharp| flat)?\s+(major|minor)\b")
_COUNT_WORDS = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                            "nine", "ten"])}
_COUNT = re.compile(r"\b(one|two|three|four|five|six|seven|eight|nine|ten|\d+|single|a single|lone)\s+"
                    r"(?:different\s+|distinct\s+|separate\s+)?(speakers?|people|persons?|voices?|talkers?)\b", re.I)
_WORD = re.compile(r"[a-z][a-z'-]+")

# AudioSet names that are plain descriptive English in a caption, not a claim about a sound class
_GENERIC_LABELS = {
    "speech", "music", "silence", "noise", "sound effect", "conversation", "narration", "monologue", "inside",
    "outside", "echo", "reverberation", "song", "musical instrument", "run", "hands", "writing", "tools",
    "mechanisms", "field recording", "pulse", "harmonic", "roll", "rub", "chop", "crack", "wood", "glass",
    "liquid", "animal", "country", "background music", "breaking", "bouncing", "flap", "whip", "arrow",
    "stir", "pour", "spray", "vibration", "distortion", "sampler", "effects unit", "vehicle", "engine",
    "percussion", "tap", "pop", "boom", "patter", "strum", "chant", "mantra", "fill", "squish", "plop",
    "throbbing", "cacophony", "sidetone", "burst", "hum", "buzz", "static", "clicking", "whoosh", "rumble",
    "happy music", "sad music", "tender music", "exciting music",
    "angry music", "scary music", "dance music", "theme music", "environmental noise", "sine wave",
}
# words any caption may use without a field behind them
_DESCRIPTIVE = set("""
audio recording record recorded clip excerpt sample segment track piece sound sounds sounding heard hear hears
hearing listen listener audible speak speaks speaking spoken talk talks talking say says saying said voice voices
vocal vocals person people someone speaker speakers man woman male female plays playing played music musical
melody melodic tune rhythm rhythmic beat beats tempo pace paced steady steadily minute minutes second seconds
moment moments background foreground quiet quietly loud loudly soft softly gentle gently faint clear clearly
short brief briefly long longer throughout then later after before while during first begins begin starts
start ends end opens open followed follows following continues continue again repeated repeats repeating several
single distinct sharp bright warm calm calmly slow slowly fast quickly moderate moderately easy high low pitched
pitch tone tones noise noisy silent silence instrumental english language languages accompanied accompaniment
together along over under with without about around approximately roughly some many lively upbeat mellow
describes describing description caption content features featuring feature includes including contains
containing captures capturing presents presenting overall mostly mainly entire whole part parts brief also
short-lived sudden suddenly occasional occasionally another other others there their they this that these
those which what where when from into onto across against near close distant room space setting scene
environment ambient ambience atmosphere event events sequence series kind sort type mix mixed blend subtle
short-clip clip-level single-speaker conversation dialogue discussion words word phrase phrases sentence
sentences quote quoted transcript transcribed message tells telling introduces playing beginning time
low-pitched high-pitched mid-pitched deep voiced solo ensemble together opens followed complete
""".split())

_STOP = set("""
the and but for nor yet so a an of to in on at by as is are was were be been being it its it's this that with
from into than then there here very just only more most less least much such own same both each few any all
has have had having do does did doing can could would should will shall may might must not no yes or if
""".split())


@dataclass(frozen=True)
class Problem:
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


def _stem(w: str) -> str:
    for suf in ("ing", "ed", "es", "s", "ly"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)]
    return w


_DESCRIPTIVE_STEMS = frozenset(_stem(w) for w in _DESCRIPTIVE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@lru_cache(maxsize=1)
def _label_synonyms() -> tuple[tuple[str, frozenset[str]], ...]:
    """(synonym, all synonyms of its class) for every AudioSet name a caption might state as a claim."""
    out = []
    for label in yamnet_labels():
        syns = frozenset(s.strip().lower() for s in label.split(",") if s.strip())
        for s in syns:
            s2 = re.sub(r"\s*\(.*?\)", "", s).strip()
            if len(s2) >= 3 and s2 not in _GENERIC_LABELS:
                out.append((s2, syns))
    return tuple(out)


@lru_cache(maxsize=1)
def _language_names() -> tuple[str, ...]:
    return tuple(sorted(set(LANGUAGES.values())))


def _mentions(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}(?:s|es)?\b", text) is not None


def _norm_key(k: str) -> str:
    k = k.replace("♯", "#").replace("♭", "b").replace("-sharp", "#").replace(" sharp", "#")
    return k.replace("-flat", "b").replace(" flat", "b").replace(" ", "").lower()


class FactChecker:
    """Holds text to one segment's Facts; `problems(text)` lists what is wrong (empty: the text passes)."""

    def __init__(self, facts: Facts, reference: str = "", instructions: str = ""):
        """`reference`: a caption known to be grounded (the template's); `instructions`: the prompt text a reply
        must not repeat."""
        self.f = facts
        self.vocab = facts.vocabulary()
        evidence = " ".join([reference, facts.transcript, *facts.branch_captions.values(),
                             " ".join(str(v) for v in facts.fields().values())])
        self.evidence_stems = {_stem(w) for w in _words(evidence)}
        self.evidence_low = evidence.lower()
        self.prompt_grams = _grams(_words(instructions), PROMPT_ECHO_WORDS) - _grams(_words(evidence),
                                                                                     PROMPT_ECHO_WORDS)

    def problems(self, text: str) -> list[Problem]:
        low = text.lower()
        found: list[Problem] = []
        for check in (self._echo, self._copy, self._prompt_echo, self._levels, self._tempo, self._key, self._times, self._count,
                      self._language, self._labels, self._grounding):
            p = check(text, low)
            if p is not None:
                found.append(p)
        return found

    # ---------------------------------------------------------------- checks (each returns one Problem or None)
    def _echo(self, text: str, low: str) -> Problem | None:
        hits = echoes_instruction(text, self.f.transcript, allowed=self.vocab)
        if hits:
            return Problem("injection_echo", f"follows an instruction in the transcript ({', '.join(hits)})")
        return None

    def _copy(self, text: str, low: str) -> Problem | None:
        if copies_transcript(text, self.f.transcript):
            return Problem("transcript_copy", f"copies more than {MAX_QUOTE_WORDS} words of the transcript")
        return None

    def _prompt_echo(self, text: str, low: str) -> Problem | None:
        talk = [m.group(0) for m in _PROMPT_TALK.finditer(low) if m.group(0) not in self.evidence_low]
        if talk:
            return Problem("prompt_echo", f"talks about the prompt ({talk[0]!r})")
        if self.prompt_grams & _grams(_words(low), PROMPT_ECHO_WORDS):
            return Problem("prompt_echo", f"repeats {PROMPT_ECHO_WORDS}+ words of the instructions or examples")
        return None

    def _levels(self, text: str, low: str) -> Problem | None:
        m = _LEVEL.search(text)
        return Problem("unjudgeable_number", f"states {m.group(0)!r}") if m else None

    def _tempo(self, text: str, low: str) -> Problem | None:
        for m in _TEMPO.finditer(text):
            bpm = float(m.group(1))
            t = self.f.tempo_bpm
            if t is None:
                return Problem("wrong_number", f"states a tempo ({m.group(0)!r}) the fields do not have")
            if abs(bpm - t) > max(TEMPO_TOL_BPM, TEMPO_TOL_REL * t):
                return Problem("wrong_number", f"tempo {bpm:g} BPM, the fields say {t}")
        return None

    def _key(self, text: str, low: str) -> Problem | None:
        for m in _KEY.finditer(text):
            stated = _norm_key(f"{m.group(1)}{m.group(2) or ''} {m.group(3)}")
            if self.f.music_key is None or stated != _norm_key(self.f.music_key):
                return Problem("wrong_fact", f"key {m.group(0)!r}, the fields say {self.f.music_key or 'none'}")
        return None

    def _times(self, text: str, low: str) -> Problem | None:
        stated: list[float] = []
        rest = text
        for m in _RANGE_S.finditer(text):
            stated += [float(m.group(1)), float(m.group(2))]
        rest = _RANGE_S.sub(" ", rest)
        stated += [float(m.group(1)) for m in _ONE_S.finditer(rest)]
        stated += [60 * float(m.group(1)) for m in _MINUTES.finditer(text)]
        known = self.f.times() + [float(round(self.f.duration_s))]  # "a 3-second clip" for 2.6 s
        for t in stated:
            if not any(abs(t - k) <= max(TIME_TOL_S, TIME_TOL_REL * k) for k in known):
                return Problem("wrong_number", f"time {t:g} s matches no field (duration {self.f.duration_s:.1f} s)")
        return None

    def _count(self, text: str, low: str) -> Problem | None:
        for m in _COUNT.finditer(low):
            w = m.group(1)
            n = 1 if w in ("single", "a single", "lone") else _COUNT_WORDS.get(w, None)
            n = int(w) if n is None and w.isdigit() else n
            if n is not None and n != max(self.f.n_speakers, 1 if self.f.transcript else 0):
                return Problem("wrong_number", f"{m.group(0)!r}, the fields say {self.f.n_speakers} speaker(s)")
        return None

    def _language(self, text: str, low: str) -> Problem | None:
        for name in _language_names():
            if re.search(rf"\b{name}\b(?!\s+horn)", text) and name != self.f.language:
                return Problem("wrong_fact", f"language {name}, the fields say {self.f.language or 'none'}")
        return None

    def _labels(self, text: str, low: str) -> Problem | None:
        for syn, family in _label_synonyms():
            if not _mentions(low, syn):
                continue
            if any(_mentions(self.vocab, s) for s in family) or _stem(syn) in self.evidence_stems and " " not in syn:
                continue
            if " " in syn and all(_stem(w) in self.evidence_stems for w in syn.split()):
                continue
            if syn in ("singing", "vocals", "song") and self.f.vocals:
                continue
            return Problem("unsupported_label", f"{syn!r} is not in the fields")
        return None

    def _grounding(self, text: str, low: str) -> Problem | None:
        content = [w for w in _words(low) if len(w) >= 4 and w not in _STOP]
        unsupported = sorted({w for w in content if w not in _DESCRIPTIVE and _stem(w) not in self.evidence_stems
                              and _stem(w) not in _DESCRIPTIVE_STEMS})
        if len(unsupported) >= MAX_UNGROUNDED:
            return Problem("ungrounded", "words no field supports: " + ", ".join(unsupported[:8]))
        return None
