"""Annotation fidelity on real recordings (issue 21): the set of `bench/realset.py`, truth by hand/file names.

Fast tests check one behaviour each on a real clip; the slow test runs `bench/fidelity.py` once and holds
the rule: for every metric, the pipeline is not worse than the same model or library alone on the same files.
Needs the Debian packages in `bench.realset.PACKAGES` (the Makefile installs them); skipped without them.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.realset import PACKAGES, SR, MissingPackageFile, load_realset


@pytest.fixture(scope="module")
def realset():
    try:
        return load_realset()
    except MissingPackageFile as e:
        pytest.skip(f"{e} (Debian packages: {' '.join(PACKAGES)})")


def _by_id(items, i):
    return next(x for x in items if x.id == i)


@pytest.fixture(scope="module")
def sound():
    from annotators.general.annotator import GeneralAudioAnnotator

    return GeneralAudioAnnotator()


@pytest.fixture(scope="module")
def music():
    from annotators.music.annotator import MusicAnnotator

    return MusicAnnotator()


def _item(audio):
    from annotators.base import BranchInput
    from tests.branch_fixtures import make_segment

    return BranchInput(audio, SR, make_segment(["general"]), None)


def test_short_confident_clip_is_one_event(realset, sound):
    """A 0.15 s cowbell hit in a 0.35 s file: one event over the hit, named as YAMNet's clip-level top 5 names it."""
    clip = _by_id(realset.effects, "cowbell")
    ann = sound.annotate_one(_item(clip.audio))
    assert len(ann.events) == 1
    ev = ann.events[0]
    assert 0.05 <= ev.start_s <= 0.15 and 0.15 <= ev.end_s <= 0.35  # the hit sits at 0.1-0.25 s
    assert {t.label for t in ann.tags} & set(clip.labels)
    assert "No distinct sound events" not in ann.caption


def test_repeated_ticks_stay_separate_and_snr_is_capped(realset, sound):
    """Ten clock ticks 0.5 s apart over digital silence: separate events, and an SNR that is measurable."""
    from annotators.common.levels import MAX_SNR_DB

    scene = _by_id(realset.scenes, "ticks")
    ann = sound.annotate_one(_item(scene.audio))
    onsets = sorted(e.start_s for e in ann.events)
    ref = [e.onset for e in scene.events]
    matched = sum(any(abs(o - r) <= 0.2 for o in onsets) for r in ref)
    assert matched >= 8, (onsets, ref)
    assert all(e.end_s - e.start_s < 1.0 for e in ann.events)  # no event swallows several ticks
    assert ann.snr_db is not None and ann.snr_db <= MAX_SNR_DB


def test_no_key_on_unpitched_music(realset, music):
    for m in realset.music:
        if m.tonal:
            continue
        ann = music.annotate_one(_item(m.audio))
        assert ann.music_key is None, (m.id, ann.music_key, ann.tonality_confidence)


def test_key_with_tonality_confidence_on_tonal_music(realset, music):
    import mir_eval

    from annotators.music.tonality import mir_eval_key

    scores = []
    for m in realset.music:
        if not m.key:
            continue
        ann = music.annotate_one(_item(m.audio))
        assert ann.tonality_confidence is not None and ann.tonality_confidence >= music.cfg.min_tonality
        scores.append(mir_eval.key.weighted_score(mir_eval_key(m.key), mir_eval_key(ann.music_key))
                      if ann.music_key else 0.0)
    assert np.mean(scores) >= 0.8, scores


def test_drum_loop_tempi(realset, music):
    """Sequenced from real one-shots at an exact tempo: within 4 %, octave errors allowed."""
    from bench.fidelity import tempo_ok

    for m in realset.music:
        if m.tempo is None:
            continue
        ann = music.annotate_one(_item(m.audio))
        assert tempo_ok(ann.tempo_bpm, m.tempo), (m.id, ann.tempo_bpm, m.tempo)


def test_babble_is_not_speech_only():
    """Re-routing after the speech branch: no words -> also general; no words and no speaker -> not speech."""
    from schemas.annotation import SpeechAnnotation
    from stages.branches import reroute_after
    from tests.branch_fixtures import make_segment

    seg = make_segment(["speech"])
    seg.speech = SpeechAnnotation(n_speakers=2)
    seg.speech_caption = "Two speakers speak. No words could be transcribed."
    reroute_after("speech", seg)
    assert seg.routes == ["speech", "general"]

    seg = make_segment(["speech"])
    seg.speech = SpeechAnnotation(caption="No speech was detected.")
    seg.speech_caption = seg.speech.caption
    reroute_after("speech", seg)
    assert seg.routes == ["general"] and seg.speech_caption is None

    seg = make_segment(["speech"])
    seg.speech = SpeechAnnotation(transcript="hello there", n_speakers=1)
    reroute_after("speech", seg)
    assert seg.routes == ["speech"]


def test_segment_covers_a_quiet_bell_decay(evidence_models):
    """A bell at -30 dBFS ringing out over digital silence: its tail, under -50 dBFS but within 35 dB of its
    peak, stays inside the segment."""
    from annotators.segmentation import EventSegmenterCore
    from bench.realset import extent, read_pkg
    from schemas.config import SegmenterConfig

    try:
        bell = read_pkg("usr/share/games/supertux2/sounds/savebell2.wav")
    except MissingPackageFile as e:
        pytest.skip(str(e))
    bell = bell * (10 ** (-30 / 20) / np.abs(bell).max())
    x = np.zeros(SR * 12, np.float32)
    x[SR : SR + bell.size] = bell[: x.size - SR]
    on, off = extent(x)
    core = EventSegmenterCore(SegmenterConfig(), evidence_models, SR)
    segs = list(core.segments(iter([x])))
    covered = max((min(s.end_sample / SR, off) - max(s.start_sample / SR, on) for s in segs), default=0.0)
    assert covered >= (off - on) - 0.05, ([(s.start_sample / SR, s.end_sample / SR) for s in segs], on, off)


# ------------------------------------------------------------------ the rule, on the whole set
@pytest.fixture(scope="module")
def fidelity(realset):
    from bench.fidelity import evaluate

    return evaluate(log=lambda *_: None)["metrics"]


HIGHER_IS_BETTER = {
    "tempo": ["librosa", "essentia"],
    "key_weighted": ["librosa_ks", "essentia"],
    "key_null_unpitched": ["librosa_ks"],
    "effects_named_top5": ["yamnet_mean", "yamnet_max"],
    "onset_f1_200ms": ["yamnet"],
}
LOWER_IS_BETTER = {"wer": ["faster_whisper"], "der": ["one_speaker"], "events_cut": ["fixed_10s"]}


@pytest.mark.slow
@pytest.mark.parametrize("metric", sorted(HIGHER_IS_BETTER) + sorted(LOWER_IS_BETTER))
def test_pipeline_not_worse_than_the_tool_alone(fidelity, metric):
    m = fidelity[metric]
    for tool in HIGHER_IS_BETTER.get(metric, []) + LOWER_IS_BETTER.get(metric, []):
        if tool not in m:  # an optional reference (essentia) not installed
            continue
        if metric in HIGHER_IS_BETTER:
            assert m["pipeline"] >= m[tool], (metric, m)
        else:
            assert m["pipeline"] <= m[tool], (metric, m)


@pytest.mark.slow
def test_consistency_and_truth(fidelity):
    c = fidelity["consistency"]
    assert c["captions_speech_and_no_speech"] == 0
    assert c["babble_routed_speech_only"] == 0
    assert c["key_on_unpitched"] == 0
    assert c["snr_over_60db"] == 0
    assert fidelity["events_cut"]["pipeline"] == 0
    assert fidelity["percussion_routed_music"]["pipeline"] == fidelity["percussion_routed_music"]["n"]
    assert fidelity["speaker_count"]["pipeline"] == fidelity["speaker_count"]["n"]
