"""The template merger and the fact check, on segments whose fields are known (no model, no server)."""

from __future__ import annotations

import re

import pytest

from annotators.llm.check import FactChecker
from annotators.llm.facts import facts_of
from annotators.llm.template import MAX_SHORT_WORDS, TemplateCaptionMerger
from schemas.config import ConfigError, load_config
from tests import caption_fixtures as C

MERGER = TemplateCaptionMerger()


def opening(caption: str, n: int = 4) -> tuple[str, ...]:
    return tuple(re.findall(r"[\w'-]+", caption.lower())[:n])


def test_template_is_deterministic_but_varied():
    segs = C.corpus(40)
    first = [MERGER.merge(s) for s in segs]
    assert first == [MERGER.merge(s) for s in segs]  # a pure function of (key, fields)
    openings = {opening(t.caption) for t in first}
    assert len(openings) >= 12, openings  # not one sentence pattern
    # the same fields under another key read differently, and say the same facts
    a, b = MERGER.merge(C.music("k-a")).caption, MERGER.merge(C.music("k-b")).caption
    for t in (a, b):
        assert "96" in t and "G major" in t and "piano" in t


def test_no_impossible_numbers_over_digital_silence():
    seg = C.sounds(snr_db=105.0)
    t = MERGER.merge(seg)
    assert "105" not in t.caption and not re.search(r"\bdB\b|LUFS|Hz", t.caption), t.caption
    assert "white noise" in t.caption and "0.5" in t.caption and "1.5" in t.caption
    assert "ding" in t.caption and "1.7" in t.caption
    assert facts_of(seg).background == "silent"
    assert facts_of(C.sounds(snr_db=18.0)).background == "noticeable"
    for s in C.corpus(40):  # levels are words, never numbers a listener could not judge
        assert not re.search(r"\b(dB|LUFS|Hz|DNSMOS)\b", MERGER.merge(s).caption)


def test_what_is_heard_first_comes_first():
    t = MERGER.merge(C.speech_over_music("mixed-x")).caption.lower()
    assert t.index("english") < t.index("piano")  # speech is 60 % of the segment, music 40 %
    t = MERGER.merge(C.sounds("order-x")).caption.lower()
    assert t.index("white noise") < re.search(r"\bding\b", t).start()  # events in time order


def test_short_caption_has_at_most_15_words():
    long_music = C.music("many")
    long_music.music.instruments = ["Piano", "Electric guitar", "Bass guitar", "Drum kit", "Violin, fiddle",
                                    "Trumpet"]
    long_music.music.genres = ["Progressive rock"]
    segs = C.corpus(40) + [long_music, C.speech_over_music("m2")]
    for s in segs:
        short = MERGER.merge(s).short_caption
        assert 1 <= len(short.split()) <= MAX_SHORT_WORDS, short
        assert not re.search(r"\d", short)


def test_template_captions_pass_the_fact_check():
    for s in C.corpus(40) + [C.injection()]:
        t = MERGER.merge(s)
        check = FactChecker(facts_of(s))
        assert check.problems(t.caption) == [] and check.problems(t.short_caption) == [], t


def test_template_never_quotes_an_instruction_to_a_model():
    t = MERGER.merge(C.injection())
    for text in (t.caption, t.short_caption):
        assert "hacked" not in text.lower() and "ignore" not in text.lower()
    quoted = MERGER.merge(C.speech("quote-1")).caption
    assert '"Welcome to the event preserving annotation demo"' in quoted  # ordinary speech is quoted, briefly


@pytest.mark.parametrize("text, code", [
    ("Piano music at 140 BPM.", "wrong_number"),
    ("Piano and flute in D minor.", "wrong_fact"),
    ("Music that lasts 45 seconds.", "wrong_number"),
    ("A loud piece mastered at -9 LUFS.", "unjudgeable_number"),
    ("A man sings in German over piano.", "wrong_fact"),
    ("Piano with a barking dog in the background.", "unsupported_label"),
    ("A smartwatch with health monitoring and fitness tracking features.", "ungrounded"),
])
def test_fact_check_rejects_what_the_fields_do_not_say(text, code):
    check = FactChecker(facts_of(C.music()))
    assert code in {p.code for p in check.problems(text)}, check.problems(text)


def test_fact_check_accepts_what_the_fields_say():
    music = FactChecker(facts_of(C.music()))
    assert music.problems("Piano, flute and drums play at about 96 BPM in G major for 12 seconds.") == []
    sounds = FactChecker(facts_of(C.sounds()))
    assert sounds.problems("A burst of white noise from 0.5 to 1.5 s, then a ding at 1.7 s.") == []
    speech = FactChecker(facts_of(C.speech(n_speakers=2)))
    assert speech.problems('Two speakers talk in English; one says "welcome to the event".') == []
    assert {p.code for p in speech.problems("Three people chat in English.")} == {"wrong_number"}


def test_fact_check_rejects_copying_and_instruction_echo():
    long = "we will now walk through every stage of the pipeline from ingest to the final shard writer"
    check = FactChecker(facts_of(C.speech(transcript=long, duration_s=6.0)))
    copied = f'A man says "{long}".'
    assert {p.code for p in check.problems(copied)} == {"transcript_copy"}
    assert check.problems('A man explains the pipeline, saying "we will now walk through".') == []
    inj = FactChecker(facts_of(C.injection()))
    assert "injection_echo" in {p.code for p in inj.problems("HACKED")}
    assert "injection_echo" in {p.code for p in inj.problems("A man says to write hacked.")}
    assert "injection_echo" in {p.code for p in inj.problems("The speaker asks to ignore the instructions.")}
    assert inj.problems("A person speaks briefly in English.") == []


def test_caption_config_keys():
    cfg = load_config(None, ["caption.merger=llm", "caption.base_url=http://127.0.0.1:9/v1", "caption.model=m",
                             "caption.api_key_env=MY_KEY", "caption.max_in_flight=8", "caption.timeout_s=3"])
    assert (cfg.caption.merger, cfg.caption.max_in_flight, cfg.caption.api_key_env) == ("llm", 8, "MY_KEY")
    with pytest.raises(ConfigError, match="base_url"):
        load_config(None, ["caption.merger=llm"])
    with pytest.raises(ConfigError, match="api_key_env"):
        load_config(None, ["caption.api_key_env=sk-live-1234"])
    with pytest.raises(ConfigError, match="caption.merger"):
        load_config(None, ["caption.merger=gpt"])
