"""Task metrics against hand-worked examples, and the answer parsers evaluate uses."""

import pytest

from trainer import metrics
from trainer.evaluate import parse_count, parse_events, parse_spans, parse_tags, parse_tempo


def w(word, s, e):
    return {"word": word, "start_s": s, "end_s": e}


def test_wer_cer_normalise_case_and_punctuation():
    assert metrics.wer(["Hello, world!"], ["hello world"]) == 0.0
    assert metrics.wer(["a b c d"], ["a x c d e"]) == pytest.approx(2 / 4)  # 1 substitution + 1 insertion
    assert metrics.cer(["abcd"], ["abed"]) == pytest.approx(1 / 4)


def test_aas_with_substitution_and_insertion():
    ref = [w("a", 0.0, 0.5), w("b", 0.6, 1.0), w("c", 1.1, 1.5)]
    hyp = [w("a", 0.1, 0.5), w("x", 0.6, 1.0), w("c", 1.0, 1.7), w("d", 2.0, 2.2)]
    # a: |0-0.1| + |0.5-0.5| = 100 ms; b->x substituted (ignored); c: 100 + 200 = 300 ms; d inserted (ignored)
    aas, matched = metrics.average_shift([ref], [hyp])
    assert matched == 2
    assert aas == pytest.approx(200.0)
    assert metrics.wer(["a b c"], ["a x c d"]) == pytest.approx(2 / 3)


def test_aas_shifted_words_and_deletion():
    ref = [w("one", 0.2, 0.6), w("two", 0.9, 1.3), w("three", 1.5, 2.0)]
    shifted = [w(x["word"], x["start_s"] + 0.05, x["end_s"] + 0.05) for x in ref]
    assert metrics.average_shift([ref], [shifted]) == (pytest.approx(100.0), 3)  # 50 + 50 ms, not halved
    deleted = [ref[0], w("three", 1.6, 2.0)]  # "two" missing: one and three still match
    assert metrics.average_shift([ref], [deleted]) == (pytest.approx(50.0), 2)
    assert metrics.average_shift([ref], [[]]) == (None, 0)
    # corpus AAS is total shift over total matched words
    assert metrics.average_shift([ref, ref[:1]], [shifted, [w("one", 0.2, 0.6)]])[0] == pytest.approx(300 / 4)


def test_alignment_prefers_equal_words():
    assert metrics.align_words(list("abc"), list("xabc")) == [(0, 1), (1, 2), (2, 3)]
    assert metrics.align_words(list("abc"), list("ac")) == [(0, 0), (2, 1)]


def test_event_f1_with_200ms_collar():
    ref = [{"label": "dog", "start_s": 1.0, "end_s": 3.0}, {"label": "car", "start_s": 4.0, "end_s": 4.5}]
    hyp = [{"label": "Dog", "start_s": 1.15, "end_s": 3.3},  # onset 150 ms, offset 300 <= 20 % of 2 s: match
           {"label": "car", "start_s": 4.25, "end_s": 4.5},  # onset 250 ms > 200 ms: no match
           {"label": "bird", "start_s": 0.0, "end_s": 1.0}]  # false positive
    s = metrics.event_scores([ref], [hyp])
    assert (s["matched"], s["n_ref"], s["n_hyp"]) == (1, 2, 3)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 2)
    assert s["f1"] == pytest.approx(0.4)
    assert s["onset_error_ms"] == pytest.approx(150.0) and s["offset_error_ms"] == pytest.approx(300.0)
    # a short event's offset collar is the 200 ms floor; each reference matches at most once
    short = [{"label": "knock", "start_s": 0.0, "end_s": 0.3}]
    assert metrics.event_scores([short], [[{"label": "knock", "start_s": 0.1, "end_s": 0.55}]])["f1"] == 0.0
    twice = [{"label": "knock", "start_s": 0.0, "end_s": 0.3}] * 2
    assert metrics.event_scores([short], [twice])["matched"] == 1


def test_music_metrics():
    assert metrics.tempo_correct(120, 124.8) and metrics.tempo_correct(120, 115.2)
    assert not metrics.tempo_correct(120, 125.0) and not metrics.tempo_correct(120, None)
    assert metrics.key_correct("C# minor", "The key is c# min.")
    assert not metrics.key_correct("A minor", "A major")
    assert metrics.key_correct("Am", "It is in A minor")
    assert metrics.set_f1(["rock", "guitar", "drums"], ["Rock", "piano"]) == pytest.approx(0.4)
    assert metrics.set_f1([], []) == 1.0


def test_answer_parsers():
    assert parse_spans("[0.5-0.9] hello [1-1.4] big world") == [w("hello", 0.5, 0.9), w("big world", 1.0, 1.4)]
    lines = parse_events("0.00 - 2.50: birds chirping\n3.10 - 4.00: a door slams")
    assert [(e["label"], e["start_s"], e["end_s"]) for e in lines] == [("birds chirping", 0.0, 2.5),
                                                                        ("a door slams", 3.1, 4.0)]
    assert parse_events("[1-2] dog") == [{"label": "dog", "start_s": 1.0, "end_s": 2.0}]
    assert parse_tempo("About 128 BPM, in 4/4.") == 128.0
    assert parse_count("There are two speakers.") == 2 and parse_count("3 speakers") == 3
    assert parse_tags("Tags: rock, electric guitar and drums.") == ["rock", "electric guitar", "drums"]


def test_reference_fields_from_eventcap_sft_source_fields():
    """`eventcap sft` writes source_fields as a JSON string with dotted names; older shards hold a dict."""
    import json

    import torch

    from trainer.evaluate import EvalSample

    fields = {"music.tempo_bpm": 120.0, "music.music_key": "A minor", "speech.n_speakers": 2}
    for sf in (json.dumps(fields), fields):
        s = EvalSample("k", "music_qa", "p", "a", torch.zeros(1), {"task": "music_qa", "source_fields": sf})
        assert s.field("tempo_bpm", "tempo") == 120.0 and s.field("key") == "A minor"
        assert s.field("n_speakers") == 2 and s.field("words") is None
    top = EvalSample("k", "asr", "p", "a", torch.zeros(1), {"transcript": "hi", "source_fields": "{}"})
    assert top.field("transcript") == "hi"  # a top-level field (the test fixtures' form) comes first
