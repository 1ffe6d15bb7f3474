"""The deterministic template merger: the embedded default for unified captions (no model needed).

It writes what a person would: what is heard first, then the details in time order ("A man speaks calmly in
English over soft piano music, about 72 BPM in A minor; a door slams at 4.1 s."). Phrasings, sentence
orders and synonyms are drawn from a random generator seeded by the segment key, so a caption is a pure
function of (key, fields) but a corpus is not one sentence pattern. Only `Facts` are used: levels become
words, SNR over digital silence never becomes a number, a transcript that addresses a text model is not quoted.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from annotators.llm.facts import Event, Facts, facts_of
from annotators.transcript_guard import short_quote
from schemas.annotation import SegmentAnnotation

MAX_SHORT_WORDS = 15
MAX_EVENTS = 6

_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
                 "twenty"]
_MASS = ("noise", "static", "music", "speech", "silence", "wind", "rain", "water", "traffic", "applause",
         "laughter", "hum", "buzz", "rumble", "chatter", "crowd", "hubbub", "clatter", "hiss", "white", "pink")
_EMOTION_ADVERB = {"neutral": "calmly", "calm": "calmly", "happy": "cheerfully", "sad": "sadly",
                   "angry": "angrily", "fearful": "nervously", "surprised": "with surprise", "excited": "excitedly"}


@dataclass(frozen=True)
class CaptionText:
    caption: str
    short_caption: str


def _join(words: list[str]) -> str:
    words = [w for w in words if w]
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _seconds(t: float) -> str:
    return f"{t:.1f}".rstrip("0").rstrip(".") if t >= 0.05 else "0"


def _article(label: str) -> str:
    """'a ding', 'an engine', but 'white noise', 'clapping', 'footsteps' (mass nouns, -ing, plurals)."""
    first = label.split()[0]
    gerund = first.endswith("ing") and len(first) > 5 and first not in ("string", "spring", "swing")
    if any(m in label.split() for m in _MASS) or gerund or (label.endswith("s") and not label.endswith("ss")):
        return label
    return ("an " if label[0] in "aeiou" else "a ") + label


def _plural(label: str) -> str:
    if label.endswith(("s", "sh", "ch", "x")):
        return label + "es" if not label.endswith("s") else label
    return label + "s"


class _Writer:
    """Writes one segment's caption from its Facts with a key-seeded generator."""

    def __init__(self, f: Facts):
        self.f = f
        self.rng = random.Random(int(hashlib.sha256(f.key.encode()).hexdigest()[:16], 16))

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    # ---------------------------------------------------------------- speech
    def speaker(self) -> str:
        f = self.f
        if f.n_speakers >= 2:
            n = _NUMBER_WORDS[f.n_speakers] if f.n_speakers <= 20 else str(f.n_speakers)
            return self.pick([f"{n} people", f"{n} speakers", f"{n} voices"])
        if f.gender:
            return self.pick([f"a {f.gender}", f"a {f.gender}'s voice"] if f.gender == "man" else
                             [f"a {f.gender}", f"a {f.gender}'s voice"])
        return self.pick(["a speaker", "someone", "a person"] + ([] if f.register else ["a voice"]))

    def speech_manner(self) -> str:
        f = self.f
        bits = []
        if f.emotion in _EMOTION_ADVERB:
            bits.append(_EMOTION_ADVERB[f.emotion])
        elif f.pace:
            bits.append(f.pace)
        if f.language:
            bits.append(f"in {f.language}")
        if f.register in ("low", "high") and f.n_speakers <= 1:
            bits.append(self.pick([f"with a {f.register}-pitched voice", f"with a {f.register} voice"]))
        return ", ".join([" ".join(bits[:2])] + bits[2:]) if bits else ""

    def quote(self) -> str:
        text = short_quote(self.f.transcript)
        if not text:
            return ""
        return self.pick([f', saying "{text}"', f'; the words are "{text}"', f', with the words "{text}"'])

    def speech(self) -> tuple[str, str]:
        """(noun phrase, clause) of the speech."""
        f = self.f
        if f.n_speakers == 0 and not f.transcript:
            return "indistinct speech", self.pick(["indistinct speech can be heard", "voices murmur indistinctly"])
        who, manner = self.speaker(), self.speech_manner()
        if f.n_speakers >= 2:
            ing, verb = self.pick([("talking", "talk"), ("conversing", "converse"),
                                   ("taking turns to speak", "take turns speaking")])
        else:
            ing, verb = self.pick([("speaking", "speaks"), ("talking", "talks")])
        self.quoted = self.quote()  # goes at the end of the first sentence
        tail = " " + manner if manner else ""
        return f"{who} {ing}{tail}", f"{who} {verb}{tail}"

    # ---------------------------------------------------------------- music
    def music(self) -> tuple[str, str]:
        f = self.f
        soft = "soft " if f.loudness in ("quiet", "very quiet") else "loud " if f.loudness == "loud" else ""
        genre = f.genres[0] + " " if f.genres and f.genres[0] not in ("music",) else ""
        inst = [i for i in f.instruments if i != "musical instrument"][:3]
        if len(inst) >= 2:
            np_, clause = self.pick([(f"{soft}{genre}music with {_join(inst)}", f"{soft}{genre}music with "
                                      f"{_join(inst)} plays"),
                                     (f"{_join(inst)} playing together", f"{_join(inst)} play together")])
        elif inst:
            np_, clause = self.pick([(f"{soft}{genre}{inst[0]} music", f"{soft}{genre}{inst[0]} music plays"),
                                     (f"{_article(soft + inst[0])} playing", f"{_article(soft + inst[0])} plays")])
        else:
            np_, clause = f"{soft}{genre}music", self.pick([f"{soft}{genre}music plays", f"there is {soft}{genre}music"])
        if f.vocals:
            sing = self.pick([" with singing", " with vocals"])
            np_, clause = np_ + sing, clause + sing
        detail = []
        if f.tempo_bpm:
            detail.append(self.pick([f"about {f.tempo_bpm} BPM", f"around {f.tempo_bpm} beats per minute"]))
        if f.music_key:
            detail.append(f"in {f.music_key}")
        if f.time_signature and self.rng.random() < 0.4:
            detail.append(f"in {f.time_signature} time")
        det = (", " + " ".join(detail)) if detail else ""
        return np_ + det, clause + det

    # ---------------------------------------------------------------- sound events
    def event_runs(self) -> list[tuple[Event, int, float]]:
        """Consecutive events of one label collapsed: (first event, count, end of the last)."""
        runs: list[tuple[Event, int, float]] = []
        for e in self.f.events:
            if runs and runs[-1][0].label == e.label:
                first, n, _ = runs[-1]
                runs[-1] = (first, n + 1, e.end_s)
            else:
                runs.append((e, 1, e.end_s))
        return runs[:MAX_EVENTS]

    def event_np(self, e: Event, n: int, end: float) -> str:
        if n >= 3:
            return f"{n} {_plural(e.label)} between {_seconds(e.start_s)} and {_seconds(end)} s"
        if n == 2:
            return f"two {_plural(e.label)}, at {_seconds(e.start_s)} and about {_seconds(end)} s"
        if end - e.start_s < 0.8:
            when = "at the start" if e.start_s < 0.05 else f"at {_seconds(e.start_s)} s"
            return f"{_article(e.label)} {when}"
        return f"{_article(e.label)} from {_seconds(e.start_s)} to {_seconds(end)} s"

    def event_clause(self, e: Event, n: int, end: float) -> str:
        if n >= 2 or end - e.start_s >= 0.8:
            return self.pick(["there is ", "you hear "]) + self.event_np(e, n, end)
        verb = self.pick(["sounds", "is heard", "comes"])
        when = "at the start" if e.start_s < 0.05 else f"at {_seconds(e.start_s)} s"
        return f"{_article(e.label)} {verb} {when}"

    def events(self) -> list[tuple[str, str]]:
        return [(self.event_np(*r), self.event_clause(*r)) for r in self.event_runs()]

    # ---------------------------------------------------------------- assembling
    def duration(self) -> str:
        d = max(1, round(self.f.duration_s))
        return "short" if self.f.duration_s < 1.5 else f"{d}-second"

    def background_phrase(self) -> str:
        b = self.f.background
        if b == "silent":
            return self.pick([" against complete silence", " over a silent background", ""])
        if b == "noisy":
            return self.pick([" over a noisy background", " with background noise"])
        if b == "quiet":
            return self.pick([" over a quiet background", ""])
        return ""

    def parts(self) -> tuple[tuple[str, str], list[tuple[str, str]], list[tuple[str, str]]]:
        """(main, secondary content, time-ordered details), each as (noun phrase, clause)."""
        f = self.f
        blocks: dict[str, list[tuple[str, str]]] = {}
        if "speech" in f.kinds or f.transcript:
            blocks["speech"] = [self.speech()]
        if "music" in f.kinds:
            blocks["music"] = [self.music()]
        events = self.events()
        if events:
            blocks["general"] = events
        order = [k for k in f.kinds if k in blocks] + [k for k in blocks if k not in f.kinds]
        if not order:
            heard = f.scene or f.top_classes
            if heard:
                np_ = _join([_article(h) for h in heard[:3]])
                return (np_, f"{np_} can be heard"), [], []
            return ("faint sound", "only faint sound can be heard"), [], []
        main_kind = order[0]
        main = blocks[main_kind][0]
        secondary = [blocks[k][0] for k in order[1:] if k != "general"]
        details = blocks[main_kind][1:] if main_kind == "general" else blocks.get("general", [])
        return main, secondary, details

    def long(self) -> str:
        self.quoted = ""
        (m_np, m_cl), secondary, details = self.parts()
        over = (" over " + _join([s[0] for s in secondary])) if secondary else ""
        over += self.quoted
        bg = self.background_phrase() if not secondary else ""
        dur = self.duration()
        det_np = _join([d[0] for d in details])
        det_cl = "; ".join(d[1] for d in details)
        style = self.rng.randrange(7)
        if style == 4 and not details:  # "it opens with" needs something after
            style = 3
        if style == 6 and m_cl.startswith(("there ", "you ")):  # not "here there is"
            style = 0
        if style == 0:
            s = _cap(m_cl) + bg + over + (f"; {det_cl}" if det_cl else "") + "."
        elif style == 1:
            s = f"In this {dur} clip, {m_cl}{bg}{over}." + (f" {_cap(det_cl)}." if det_cl else "")
        elif style == 2:
            s = f"You can hear {m_np}{bg}{over}" + (f", then {det_np}" if det_np else "") + "."
        elif style == 3:
            s = f"A {dur} recording of {m_np}{bg}{over}." + (f" {_cap(det_cl)}." if det_cl else "")
        elif style == 4:
            s = f"It opens with {m_np}{over}; then {det_np}."
        elif style == 5:
            s = _cap(m_np) + bg + over + (f", with {det_np}" if det_np else "") + "."
        else:
            s = f"Here {m_cl}{bg}{over}." + (f" Then {det_cl}." if det_cl else "")
        return " ".join(s.split())

    def short(self) -> str:
        """At most MAX_SHORT_WORDS words: the main content and the secondary, no times or quotes."""
        f = self.f
        bits = []
        for kind in f.kinds:
            if kind == "speech":
                if not (f.n_speakers or f.transcript):
                    bits.append("indistinct speech")
                    continue
                who = (f"{_NUMBER_WORDS[f.n_speakers]} people" if 2 <= f.n_speakers <= 20
                       else f"{f.n_speakers} people" if f.n_speakers > 2
                       else f"a {f.gender}" if f.gender else self.pick(["a person", "someone", "a speaker"]))
                verb = "talking" if f.n_speakers >= 2 or who == "a speaker" else self.pick(["speaking", "talking"])
                options = [f"{who} {verb}" + (f" in {f.language}" if f.language else "")]
                if f.language:
                    options.append(f"{f.language} speech" + (f" from {who}" if f.n_speakers >= 2 else ""))
                bits.append(self.pick(options))
            elif kind == "music":
                inst = [i for i in f.instruments if i != "musical instrument"][:2]
                if inst:
                    bits.append(self.pick([f"{_join(inst)} music", f"music with {_join(inst)}"]))
                else:
                    bits.append(f"{f.genres[0]} music" if f.genres else "music")
            elif kind == "general" and f.events:
                labels = list(dict.fromkeys(e.label for e in f.events))[:3]
                bits.append(_join([_article(lbl) for lbl in labels]))
        if not bits:
            bits = [_article((f.scene or f.top_classes or ["faint sound"])[0])]
        glue = self.pick([" over ", " with ", ", then "]) if len(bits) > 1 else ""
        if glue == " with " and any(" with " in f" {b} " or b.startswith("with ") for b in bits):
            glue = " over "
        s = bits[0] + (glue + _join(bits[1:]) if len(bits) > 1 else "")
        words = s.split()
        if len(words) > MAX_SHORT_WORDS:
            s = " ".join(bits[0].split()[:MAX_SHORT_WORDS])
        return _cap(s.strip(" ,")) + "."


class TemplateCaptionMerger:
    name = "template"
    version = "2"
    prompt_id = "template-v2"

    def merge_facts(self, f: Facts) -> CaptionText:
        w = _Writer(f)
        long = w.long()
        short = w.short()
        return CaptionText(long, short)

    def merge(self, seg: SegmentAnnotation) -> CaptionText:
        return self.merge_facts(facts_of(seg))
