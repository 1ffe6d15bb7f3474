"""EventSegmenter on mixtures with known events: no event cut, cuts in gaps, lengths within bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annotators.segmentation import EventSegmenterCore
from schemas.config import SegmenterConfig
from tests import mixtures as M
from tests import synth as S
from tests.segmetrics import as_seconds, score

VALID_REASONS = {"pause", "class_change", "novelty", "forced_max_length", "source_start", "source_end"}


def segment(x, models, cfg=None, window_s=600.0, block_s=7.0):
    cfg = cfg or SegmenterConfig()
    core = EventSegmenterCore(cfg, models, window_s=window_s)
    step = int(block_s * S.SR)
    return list(core.segments(iter([x[i : i + step] for i in range(0, len(x), step)])))


@pytest.fixture(scope="module")
def mixed():
    return M.mixed()


@pytest.fixture(scope="module")
def mixed_noisy():
    return M.mixed(noise_floor=0.01)


def check_invariants(segs, events, cfg, n_samples):
    secs = as_seconds(segs)
    for (s, e), seg in zip(secs, segs, strict=True):
        assert cfg.min_segment_s - 1e-6 <= e - s <= cfg.max_segment_s + 1e-6, (s, e)
        assert set(seg.cut_reasons) <= VALID_REASONS
        assert seg.audio.shape[0] == seg.end_sample - seg.start_sample
    assert all(a[1] <= b[0] for a, b in zip(secs, secs[1:], strict=False)), "segments overlap or are out of order"
    assert all(0 <= s.start_sample < s.end_sample <= n_samples for s in segs)
    return score(secs, events, cfg.max_segment_s, tol=0.05)


@pytest.mark.parametrize("window_s", [600.0, 80.0], ids=["one-window", "windowed"])
def test_mixture_events_are_never_cut(mixed, evidence_models, window_s):
    x, events = mixed
    cfg = SegmenterConfig()
    segs = segment(x, evidence_models, cfg, window_s=window_s)
    sc = check_invariants(segs, events, cfg, len(x))
    assert sc.events_cut == 0 and sc.cuts_in_events == 0, sc
    assert sc.boundary_error_s < 0.12, sc
    # the 36 s chord progression is longer than max_segment_s: cut between chords, and says why
    long_music = [s for s in segs if s.start_sample / S.SR > 35]
    assert len(long_music) >= 2
    assert long_music[0].cut_reasons[1] in {"novelty", "forced_max_length"}
    # the 3 s and 1.6 s silences are not inside any segment
    for gap_mid in (7.4, 34.3):
        assert not any(s <= gap_mid <= e for s, e in as_seconds(segs)), gap_mid


def test_windowed_and_whole_give_the_same_cuts(mixed, evidence_models):
    x, _ = mixed
    a = [(s.start_sample, s.end_sample) for s in segment(x, evidence_models, window_s=600)]
    b = [(s.start_sample, s.end_sample) for s in segment(x, evidence_models, window_s=80)]
    assert a == b


def test_noise_floor_does_not_make_cuts_inside_events(mixed_noisy, evidence_models):
    x, events = mixed_noisy
    cfg = SegmenterConfig()
    sc = check_invariants(segment(x, evidence_models, cfg), events, cfg, len(x))
    assert sc.events_cut == 0, sc
    assert sc.boundary_error_s < 0.2, sc


def test_long_monologue_is_cut_between_sentences(evidence_models):
    x, events = M.monologue()
    cfg = SegmenterConfig()
    segs = segment(x, evidence_models, cfg)
    sc = check_invariants(segs, events, cfg, len(x))
    assert len(segs) >= 2 and sc.events_cut == 0 and sc.cuts_in_events == 0, sc
    inner = [r for s in segs for r in s.cut_reasons if r not in ("source_start", "source_end")]
    assert inner and all(r in ("pause", "class_change") for r in inner), inner


def test_event_longer_than_max_is_cut_at_its_deepest_dip(evidence_models):
    """A 40 s continuous noise with a 150 ms dip at 17 s: the only cut goes into the dip, reason recorded."""
    x = S.noise_burst(40.0, amp=0.2, seed=5)
    dip = slice(int(17.0 * S.SR), int(17.15 * S.SR))
    x[dip] *= 0.02
    cfg = SegmenterConfig(max_segment_s=30.0, min_segment_s=2.0)
    segs = segment(x, evidence_models, cfg)
    assert len(segs) == 2
    cut = segs[0].end_sample / S.SR
    assert 17.0 <= cut <= 17.15, cut
    assert segs[0].cut_reasons[1] in {"pause", "forced_max_length", "novelty"}


def test_featureless_event_longer_than_max_is_forced(evidence_models):
    """A steady 70 s tone has no pause and no novelty: cuts are forced and say so."""
    t = np.arange(int(70 * S.SR)) / S.SR
    x = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    cfg = SegmenterConfig()
    segs = segment(x, evidence_models, cfg)
    assert len(segs) == 3
    assert all(s.end_sample - s.start_sample <= cfg.max_segment_s * S.SR for s in segs)
    assert segs[0].cut_reasons[1] == "forced_max_length"


def test_short_sound_is_one_segment_and_silence_is_trimmed(evidence_models):
    """A 0.5 s knock in 6 s of silence: one segment around it, grown to min_segment_s, not the silence."""
    x = np.zeros(6 * S.SR, np.float32)
    x[3 * S.SR : int(3.5 * S.SR)] = S.noise_burst(0.5)
    segs = segment(x, evidence_models)
    assert len(segs) == 1
    s, e = as_seconds(segs)[0]
    assert s <= 3.0 and e >= 3.5 and abs((e - s) - 2.0) < 0.05


def test_file_shorter_than_min_segment_is_one_segment(evidence_models):
    x = S.noise_burst(0.6)
    segs = segment(x, evidence_models)
    assert len(segs) == 1 and segs[0].end_sample - segs[0].start_sample <= len(x)


def test_silence_gives_no_segment(evidence_models):
    assert segment(np.zeros(5 * S.SR, np.float32), evidence_models) == []
    low = (np.random.default_rng(0).standard_normal(5 * S.SR) * 1e-4).astype(np.float32)  # -80 dBFS hiss
    assert segment(low, evidence_models) == []


def test_shares_follow_the_content(mixed, evidence_models):
    x, events = mixed
    segs = segment(x, evidence_models)
    by_time = {round(s.start_sample / S.SR): s for s in segs}
    speech = [s for s in segs if s.start_sample / S.SR < 1.0][0]
    music = [s for s in segs if 7.5 < s.start_sample / S.SR < 8.5][0]
    assert speech.speech_share > 0.8 and speech.music_share < 0.1, by_time
    assert music.music_share > 0.6 and music.speech_share < 0.1
    assert speech.evidence.yamnet_scores.shape[1] == 521
    assert speech.evidence.vad_prob.max() > 0.9


OPSOUND = Path("/usr/share/asterisk/moh")


@pytest.mark.skipif(not OPSOUND.exists(), reason="asterisk-moh-opsound-wav is installed by `make install`")
@pytest.mark.parametrize("name", ["macroform-cold_day.wav", "manolo_camp-morning_coffee.wav"])
def test_real_music_is_cut_in_dips_between_notes(evidence_models, name):
    """Real recorded music has no silences: cuts land just before onsets, where the level dips."""
    from annotators.segmentation.evidence import frame_energy_db
    from pipeline.decode import decode_stream, probe

    x = np.concatenate(list(decode_stream(probe(str(OPSOUND / name), 1 << 40))))
    cfg = SegmenterConfig()
    segs = segment(x, evidence_models, cfg)
    assert len(segs) >= 3
    energy = frame_energy_db(x, 320)
    inner = segs[:-1]
    for s in inner:
        f = s.end_sample // 320
        local = np.median(energy[max(0, f - 50) : f + 50])  # +-1 s around the cut
        assert energy[f] <= local, (s.end_sample / S.SR, energy[f], local)
        assert s.end_sample - s.start_sample <= cfg.max_segment_s * S.SR
    forced = [s for s in inner if s.cut_reasons[1] == "forced_max_length"]
    assert len(forced) <= len(inner) // 4
    assert all(s.music_share >= 0.9 for s in segs)
