"""Branch captions and unified captions take at most a short quote from a transcript and never repeat an
instruction the transcript gives: one rule set (`annotators/transcript_guard.py`) for the speech branch caption,
the template merger and the LLM fact check."""

from __future__ import annotations

from annotators.llm.check import FactChecker
from annotators.llm.facts import facts_of
from annotators.llm.template import TemplateCaptionMerger
from annotators.speech.caption import speech_caption
from annotators.transcript_guard import MAX_QUOTE_WORDS, copies_transcript, echoes_instruction, short_quote
from tests import caption_fixtures as C

LONG = ("Each file is cut at pauses and at changes of sound, never inside a word, and every cut is "
        "written down with its reason so that a listener can check it later.")


def quoted(caption: str) -> str:
    return caption.split('"')[1] if caption.count('"') >= 2 else ""


def test_speech_caption_never_quotes_an_instruction_to_a_model():
    seg = C.injection()
    cap = speech_caption(seg.speech)
    assert "hacked" not in cap.lower() and "ignore" not in cap.lower() and '"' not in cap
    assert cap.startswith("One speaker speaks in English") and "instructions (not quoted)" in cap
    # the same rules the LLM fact check applies to a reply
    problems = {p.code for p in FactChecker(facts_of(seg)).problems(cap)}
    assert not problems & {"injection_echo", "transcript_copy"}
    assert echoes_instruction(C.INJECTION, C.INJECTION) == ["hacked"]  # quoting it verbatim would be an echo


def test_speech_caption_quotes_at_most_a_short_piece():
    seg = C.speech("long-1", transcript=LONG, duration_s=9.0)
    cap = speech_caption(seg.speech)
    q = quoted(cap)
    assert q == "Each file is cut at pauses and at…"  # the first MAX_QUOTE_WORDS words, marked as cut
    assert len(q.split()) == MAX_QUOTE_WORDS and not copies_transcript(cap, LONG)
    assert copies_transcript(f'They say: "{" ".join(LONG.split()[:MAX_QUOTE_WORDS + 1])}"', LONG)
    short = C.speech("short-1", transcript="This last sentence stands on its own.")
    assert quoted(speech_caption(short.speech)) == "This last sentence stands on its own"


def test_template_and_branch_caption_share_the_quote_rule():
    seg = C.speech("same-1", transcript=LONG, duration_s=9.0)
    caption = TemplateCaptionMerger().merge(seg).caption
    assert short_quote(LONG) in caption and short_quote(LONG) == quoted(speech_caption(seg.speech))
    assert short_quote(C.INJECTION) == "" and short_quote("") == ""
