"""Committed cut lists (issue 22 part 5), Ray-free: scores perturbed as on another machine change where a fresh
run cuts, but never where a source already cut is cut again."""

from __future__ import annotations

import numpy as np
import pytest

from annotators.segmentation import EventSegmenterCore, EvidenceModels
from annotators.segmentation.planned import SampleReader
from pipeline.cutlist import CommittedCuts, CutList, CutListStore
from schemas.config import SegmenterConfig
from tests import mixtures as M
from tests.reliability import perturb as P

SHA, SEG_HASH = "ab" * 32, "seghash0"


@pytest.fixture(scope="module")
def source():
    x, _ = M.mixed(noise_floor=0.01)  # ~73 s of speech, chords, noise and clicks over a noise floor
    return x


@pytest.fixture(scope="module")
def models():
    from annotators.common.vad import SileroVad
    from annotators.common.yamnet import YamNet

    return EvidenceModels(SileroVad(), YamNet())


@pytest.fixture
def perturbed(monkeypatch):
    from annotators.segmentation import segmenter

    rng = np.random.default_rng(22)
    original = segmenter.compute_evidence
    monkeypatch.setattr(segmenter, "compute_evidence", lambda *a, **k: P.perturb(original(*a, **k), rng))


def blocks(x, step=7 * 16000):
    return iter([x[i : i + step] for i in range(0, len(x), step)])


def spans(segs):
    return [(int(s.start_sample), int(s.end_sample)) for s in segs]


def no_overlap(sp):
    return all(a[1] <= b[0] for a, b in zip(sp, sp[1:], strict=False))


@pytest.fixture(scope="module")
def clean(source, models, tmp_path_factory):
    """A first run: its segments and the output holding its committed cut list."""
    out = tmp_path_factory.mktemp("cuts-out")
    cc = CommittedCuts(EventSegmenterCore(SegmenterConfig(), models), CutListStore(str(out)), SEG_HASH)
    return spans(cc.segments(SHA, blocks(source))), out


def test_the_cut_list_is_committed_complete_and_matches_the_segments(clean):
    segs, out = clean
    cl = CutListStore(str(out)).load(SHA, SEG_HASH)
    assert cl.complete and [(c.start, c.end) for c in cl.cuts] == segs and len(segs) >= 5 and no_overlap(segs)


def test_perturbed_scores_cut_a_fresh_source_elsewhere(source, models, clean, perturbed):
    """The control: without a committed list, the perturbed run does give other (overlapping) segments."""
    fresh = spans(EventSegmenterCore(SegmenterConfig(), models).segments(blocks(source)))
    assert fresh != clean[0]


def test_a_resume_with_perturbed_scores_reuses_the_committed_cuts(source, models, clean, perturbed):
    cc = CommittedCuts(EventSegmenterCore(SegmenterConfig(), models), CutListStore(str(clean[1])), SEG_HASH)
    got = list(cc.segments(SHA, blocks(source, step=5 * 16000)))  # other block sizes too
    assert spans(got) == clean[0] and cc.reused == len(clean[0])
    for s in got:  # the audio is the source's own samples at those positions
        assert np.array_equal(s.audio, source[s.start_sample : s.end_sample])


def test_a_source_killed_mid_way_keeps_its_committed_prefix(source, models, clean, perturbed, tmp_path):
    store = CutListStore(str(tmp_path))
    k = 3
    prefix = CutListStore(str(clean[1])).load(SHA, SEG_HASH).cuts[:k]
    store.save(CutList(SHA, SEG_HASH, prefix, complete=False))
    cc = CommittedCuts(EventSegmenterCore(SegmenterConfig(), models), store, SEG_HASH)
    got = spans(cc.segments(SHA, blocks(source)))
    assert got[:k] == clean[0][:k] and no_overlap(got) and got[-1][1] == len(source)
    cl = store.load(SHA, SEG_HASH)
    assert cl.complete and [(c.start, c.end) for c in cl.cuts] == got


def test_cuts_are_on_disk_before_their_segment_is_handed_on(source, models, tmp_path):
    store = CutListStore(str(tmp_path))
    cc = CommittedCuts(EventSegmenterCore(SegmenterConfig(), models), store, SEG_HASH, commit_every=2)
    for s in cc.segments(SHA, blocks(source)):
        on_disk = {(c.start, c.end) for c in store.load(SHA, SEG_HASH).cuts}
        assert (s.start_sample, s.end_sample) in on_disk


def test_sample_reader_spans_blocks_and_skips_gaps():
    x = np.arange(100, dtype=np.float32)
    r = SampleReader(iter([x[i : i + 7] for i in range(0, 100, 7)]))
    assert np.array_equal(r.read(3, 20), x[3:20]) and np.array_equal(r.read(50, 51), x[50:51])
    assert np.array_equal(np.concatenate(list(r.rest())), x[51:])
