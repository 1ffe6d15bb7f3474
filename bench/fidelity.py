"""Annotation fidelity on real recordings: every branch metric next to the same model or library alone.

    .venv/bin/python -m bench.fidelity [--out bench/results/fidelity.json]

The set is `bench/realset.py` (Debian package recordings, truth in `bench/realset.yaml`). The pipeline runs
in-process, stage by stage as the annotate job orders them (segmenter -> router -> speech -> music -> general
-> caption merger), without Ray. Each metric is printed as pipeline vs tool alone on the same files:

- tempo: share within 4 % of the truth, octave errors (x2, x1/2) allowed, vs `librosa.beat.beat_track` and,
  when installed, essentia `RhythmExtractor2013(method="multifeature")` (AGPL: a reference only)
- key: mir_eval weighted score on labelled tonal music; share of unpitched music given no key; vs librosa CQT
  chroma correlated with Krumhansl-Kessler profiles (no tonality gate) and essentia `KeyExtractor`
- effects named: share of effects whose class is named in the segment's sound events, scene tags and music
  tags (at most 5 names), vs YAMNet alone, clip-level mean and max pooling, top 5
- event onsets: F1 with a 200 ms collar (mir_eval.onset) on the scenes, vs YAMNet alone (a run of frames of a
  class over the same on-threshold starts an event at its first window); ticks: events found for 10 clicks
- WER vs faster-whisper alone (same model and beam, no temperature fallback, whole file); speaker count per segment vs the reference turns, DER
- events cut by a segment boundary (goal 0) vs fixed 10 s windows
- consistency: captions saying speech and no speech, babble routed speech-only, key on unpitched audio,
  SNRs over 60 dB
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

SR = 16000
TEMPO_TOL = 0.04
ONSET_COLLAR_S = 0.2
MAX_SNR_DB = 60.0
RESULTS = Path(__file__).parent / "results" / "fidelity.json"


# ------------------------------------------------------------------ the pipeline, in process
@dataclass
class Run:
    """One source through the pipeline: its segments (SegmentAnnotation) in order."""

    segments: list = field(default_factory=list)


class InProcessPipeline:
    """The annotate job's stages called in a plain loop on numpy audio (no Ray, no files)."""

    def __init__(self, cfg=None):
        from annotators.common.vad import SileroVad
        from annotators.common.yamnet import YamNet
        from annotators.general import build_general_audio_annotator
        from annotators.llm import build_caption_merger
        from annotators.music import build_music_annotator
        from annotators.segmentation import EventSegmenterCore, EvidenceModels
        from annotators.speech import build_speech_annotator
        from schemas.config import JobConfig

        self.cfg = cfg or JobConfig()
        self.yamnet = YamNet(num_threads=1)
        vad = SileroVad(1)
        self.core = EventSegmenterCore(self.cfg.segmenter, EvidenceModels(vad, self.yamnet), SR,
                                       self.cfg.ingest.window_s)
        self.speech = build_speech_annotator(self.cfg.speech)
        self.music = build_music_annotator(self.cfg.music)
        self.general = build_general_audio_annotator(self.cfg.general)
        self.merger = build_caption_merger(self.cfg.caption)
        self.branches = [("speech", self.speech, "speech", "speech_caption"),
                         ("music", self.music, "music", "music_caption"),
                         ("general", self.general, "general", "general_caption")]

    def __call__(self, audio: np.ndarray, name: str = "x") -> Run:
        from annotators.base import BranchInput
        from schemas.annotation import SegmentAnnotation
        from stages.router import routes_for

        try:
            from stages.branches import reroute_after
        except ImportError:  # a checkout before issue 21: no re-routing
            def reroute_after(branch, seg):
                return None

        run = Run()
        for s in self.core.segments(iter([np.asarray(audio, np.float32)])):
            seg = SegmentAnnotation(
                key=f"{name}-{s.start_sample}", source_uri=name, source_sha256="-", sample_rate=SR,
                start_sample=s.start_sample, end_sample=s.end_sample, start_s=s.start_sample / SR,
                end_s=s.end_sample / SR, duration_s=(s.end_sample - s.start_sample) / SR, cut_reasons=s.cut_reasons,
                routes=[], speech_share=s.speech_share, music_share=s.music_share, general_share=s.general_share,
                top_classes=s.top_classes, config_hash="-",
            )
            try:
                seg.routes = routes_for(seg.speech_share, seg.music_share, seg.general_share, self.cfg.router,
                                        seg.top_classes)
            except TypeError:  # a checkout before issue 21
                seg.routes = routes_for(seg.speech_share, seg.music_share, seg.general_share, self.cfg.router)
            for branch, annotator, fld, cap in self.branches:
                if branch not in seg.routes or annotator is None:
                    continue
                res = annotator.annotate([BranchInput(s.audio, SR, seg, s.evidence)])[0]
                setattr(seg, fld, res)
                setattr(seg, cap, res.caption or None)
                reroute_after(branch, seg)
            self.merger.caption(seg).apply_to(seg, llm_model=None)
            run.segments.append(seg)
        return run


# ------------------------------------------------------------------ tools alone
def librosa_tempo(audio: np.ndarray) -> float | None:
    import librosa

    tempo, _ = librosa.beat.beat_track(y=audio, sr=SR)
    t = float(np.atleast_1d(tempo)[0])
    return t if t > 0 else None


def essentia_available() -> bool:
    try:
        import essentia.standard  # noqa: F401
    except Exception:  # noqa: BLE001 - optional reference
        return False
    return True


def essentia_tempo(audio: np.ndarray) -> float | None:
    import essentia.standard as es
    import soxr

    x = soxr.resample(audio, SR, 44100).astype(np.float32)
    bpm = es.RhythmExtractor2013(method="multifeature")(x)[0]
    return float(bpm) if bpm > 0 else None


def essentia_key(audio: np.ndarray) -> str | None:
    import essentia.standard as es
    import soxr

    x = soxr.resample(audio, SR, 44100).astype(np.float32)
    key, scale, strength = es.KeyExtractor()(x)[:3]
    return f"{key} {scale}"


def plain_key(audio: np.ndarray) -> str:
    """librosa CQT chroma summed over the clip, best of 24 Krumhansl-Kessler keys: no tonality gate."""
    import librosa

    from annotators.music.tonality import KEY_PROFILES, PITCH_CLASSES

    x = librosa.feature.chroma_cqt(y=audio, sr=SR).sum(axis=1)
    x = (x - x.mean()) / (x.std() + 1e-12)
    best = (-2.0, "")
    for mode, prof in zip(("major", "minor"), KEY_PROFILES["krumhansl"], strict=True):
        p = (np.asarray(prof) - np.mean(prof)) / np.std(prof)
        for t in range(12):
            best = max(best, (float(np.mean(x * np.roll(p, t))), f"{PITCH_CLASSES[t]} {mode}"))
    return best[1]


def yamnet_top5(scores: np.ndarray, labels: list[str], pooling: str) -> list[str]:
    pooled = scores.max(axis=0) if pooling == "max" else scores.mean(axis=0)
    return [labels[i] for i in np.argsort(-pooled)[:5]]


def yamnet_onsets(scores: np.ndarray, classes: np.ndarray, on: float, hop_s: float) -> list[float]:
    """YAMNet alone: each run of frames where a class reaches `on` starts an event at its first window."""
    onsets = []
    for c in classes:
        above = scores[:, c] >= on
        starts = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
        onsets += [float(a * hop_s) for a in starts]
    return _dedupe(onsets)


def _dedupe(times: list[float], within: float = 0.1) -> list[float]:
    out: list[float] = []
    for t in sorted(times):
        if not out or t - out[-1] > within:
            out.append(t)
    return out


# ------------------------------------------------------------------ metrics
def tempo_ok(est: float | None, truth: float, octaves: bool = True) -> bool:
    if est is None:
        return False
    factors = (1.0, 2.0, 0.5) if octaves else (1.0,)
    return any(abs(est - truth * f) <= TEMPO_TOL * truth * f for f in factors)


def key_score(est: str | None, truth: str) -> float:
    import mir_eval

    from annotators.music.tonality import mir_eval_key

    if not est:
        return 0.0
    return float(mir_eval.key.weighted_score(mir_eval_key(truth), mir_eval_key(est)))


def onset_f1(ref: list[float], est: list[float]) -> float:
    import mir_eval

    if not ref and not est:
        return 1.0
    if not ref or not est:
        return 0.0
    return float(mir_eval.onset.f_measure(np.array(ref), np.array(est), window=ONSET_COLLAR_S)[0])


def normalise_words(text: str) -> str:
    text = text.lower().replace("-", " ")
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text).split())


def wer(ref: str, hyp: str) -> float:
    import jiwer

    return float(jiwer.wer(normalise_words(ref), normalise_words(hyp) or "<empty>"))


def events_cut(events: list[tuple[float, float]], cuts: list[float], covered: list[tuple[float, float]] | None = None,
               margin: float = 0.05) -> int:
    """Events with a segment boundary inside them, or (given the segments' extents) a part over `margin` long
    in no segment (a decay trimmed away)."""
    def uncovered(on: float, off: float) -> float:
        if covered is None:
            return 0.0
        inside = sum(max(0.0, min(off, b) - max(on, a)) for a, b in covered)
        return (off - on) - inside

    return sum(any(on + margin < c < off - margin for c in cuts) or uncovered(on, off) > margin
               for on, off in events)


def named_by_pipeline(run: Run, limit: int = 5) -> list[str]:
    """What the annotation names: per segment, the sound branch's clip-level tags (at most `limit`) and its
    event labels, or, on a segment the sound branch did not annotate, the music branch's instruments, genres
    and tags (at most `limit`)."""
    out: list[str] = []
    for seg in run.segments:
        names: list[str] = []
        if seg.general is not None:
            names += [t.label for t in getattr(seg.general, "tags", [])][:limit]
            names += [e.label for e in sorted(seg.general.events, key=lambda e: -e.score)]
        elif seg.music is not None:
            names += (seg.music.instruments + seg.music.genres + [t.label for t in seg.music.tags])[:limit]
        for n in names:
            if n not in out:
                out.append(n)
    return out


def pipeline_onsets(run: Run) -> list[float]:
    return _dedupe([seg.start_s + e.start_s for seg in run.segments if seg.general is not None for e in seg.general.events])


def speaks_and_not(caption: str, routes: list[str]) -> bool:
    """A caption that says it is speech (route or text) and that no speech was detected."""
    says_none = "no speech was detected" in caption.lower() or "no reliable speech" in caption.lower()
    says_speech = "recording of speech" in caption.lower() or "speech" in routes
    return says_none and says_speech


def _music_of(run: Run):
    segs = [s for s in run.segments if s.music is not None]
    return max(segs, key=lambda s: s.duration_s).music if segs else None


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


# ------------------------------------------------------------------ the bench
def evaluate(pipe: InProcessPipeline | None = None, log=print) -> dict:
    from annotators.common.yamnet import HOP_S, class_names
    from bench.realset import load_realset

    t0 = time.perf_counter()
    rs = load_realset()
    pipe = pipe or InProcessPipeline()
    labels = class_names()
    ess = essentia_available()
    res: dict = {"items": {}, "metrics": {}}

    def item(kind: str, i: str, **kw) -> None:
        res["items"].setdefault(kind, {})[i] = kw

    # ---- music: tempo, key, routing of percussion
    t_pipe = t_lib = t_ess = n_tempo = 0
    key_pipe, key_plain, key_ess, n_key = 0.0, 0.0, 0.0, 0
    null_pipe = null_plain = n_unpitched = 0
    perc_routed = n_perc = 0
    for m in rs.music:
        run = pipe(m.audio, m.id)
        mus = _music_of(run)
        est = mus.tempo_bpm if mus is not None else None
        routes = sorted({r for s in run.segments for r in s.routes})
        rec = {"routes": routes, "tempo_truth": m.tempo, "tempo": est, "key": mus.music_key if mus else None,
               "key_confidence": mus.key_confidence if mus else None}
        if m.percussion_only and m.tempo is not None:
            n_perc += 1
            perc_routed += "music" in routes
        if m.tempo is not None:
            n_tempo += 1
            lib = librosa_tempo(m.audio)
            rec["librosa"] = lib
            t_pipe += tempo_ok(est, m.tempo)
            t_lib += tempo_ok(lib, m.tempo)
            if ess:
                e = essentia_tempo(m.audio)
                rec["essentia"] = e
                t_ess += tempo_ok(e, m.tempo)
        if m.key:
            n_key += 1
            pk = plain_key(m.audio)
            rec["plain_key"] = pk
            key_pipe += key_score(rec["key"], m.key)
            key_plain += key_score(pk, m.key)
            if ess:
                ek = essentia_key(m.audio)
                rec["essentia_key"] = ek
                key_ess += key_score(ek, m.key)
        if not m.tonal:
            n_unpitched += 1
            null_pipe += rec["key"] is None
            null_plain += False  # a plain profile correlation always names a key
        item("music", m.id, **rec)
    res["metrics"]["tempo"] = {"n": n_tempo, "pipeline": t_pipe, "librosa": t_lib,
                               **({"essentia": t_ess} if ess else {})}
    res["metrics"]["percussion_routed_music"] = {"n": n_perc, "pipeline": perc_routed}
    res["metrics"]["key_weighted"] = {"n": n_key, "pipeline": round(key_pipe, 2), "librosa_ks": round(key_plain, 2),
                                      **({"essentia": round(key_ess, 2)} if ess else {})}
    res["metrics"]["key_null_unpitched"] = {"n": n_unpitched, "pipeline": null_pipe, "librosa_ks": null_plain}
    log(f"music done ({time.perf_counter() - t0:.0f} s)")

    # ---- effects: named in the top 5
    hit_pipe = hit_mean = hit_max = 0
    for e in rs.effects:
        run = pipe(e.audio, e.id)
        named = named_by_pipeline(run)
        scores = pipe.yamnet.scores(e.audio)
        mean5, max5 = yamnet_top5(scores, labels, "mean"), yamnet_top5(scores, labels, "max")
        ok = {k: bool(set(v) & set(e.labels)) for k, v in (("pipeline", named), ("mean", mean5), ("max", max5))}
        hit_pipe += ok["pipeline"]
        hit_mean += ok["mean"]
        hit_max += ok["max"]
        n_events = sum(len(s.general.events) for s in run.segments if s.general is not None)
        item("effects", e.id, named=named, yamnet_mean=mean5, yamnet_max=max5, hits=ok, n_events=n_events,
             routes=sorted({r for s in run.segments for r in s.routes}), captions=[s.caption for s in run.segments])
    res["metrics"]["effects_named_top5"] = {"n": len(rs.effects), "pipeline": hit_pipe, "yamnet_mean": hit_mean,
                                            "yamnet_max": hit_max}
    log(f"effects done ({time.perf_counter() - t0:.0f} s)")

    # ---- scenes: onsets, ticks, events cut
    from annotators.general.annotator import GeneralAudioAnnotator

    event_classes = pipe.general._event_classes if isinstance(pipe.general, GeneralAudioAnnotator) else np.arange(521)
    f_pipe, f_yam, cut_pipe, cut_fixed, n_ev = [], [], 0, 0, 0
    max_snr = []
    for sc in rs.scenes:
        run = pipe(sc.audio, sc.id)
        ref = [ev.onset for ev in sc.events]
        est = pipeline_onsets(run)
        yam = yamnet_onsets(pipe.yamnet.scores(sc.audio), event_classes, pipe.cfg.general.on_threshold, HOP_S)
        intervals = [(ev.onset, ev.offset) for ev in sc.events]
        cuts = [s.start_s for s in run.segments[1:]]
        fixed = list(np.arange(10.0, sc.audio.size / SR, 10.0))
        n_ev += len(intervals)
        extents = [(seg.start_s, seg.end_s) for seg in run.segments]
        cut_pipe += events_cut(intervals, cuts, extents)
        cut_fixed += events_cut(intervals, fixed)
        f_pipe.append(onset_f1(ref, est))
        f_yam.append(onset_f1(ref, yam))
        max_snr += [s.general.snr_db for s in run.segments if s.general is not None and s.general.snr_db is not None]
        item("scenes", sc.id, onset_f1=round(f_pipe[-1], 3), yamnet_onset_f1=round(f_yam[-1], 3), n_ref=len(ref),
             n_events=len(est), n_yamnet=len(yam), cuts=[round(c, 2) for c in cuts], cut=events_cut(intervals, cuts, extents),
             captions=[s.caption for s in run.segments])
    res["metrics"]["onset_f1_200ms"] = {"n": len(rs.scenes), "pipeline": round(float(np.mean(f_pipe)), 3),
                                        "yamnet": round(float(np.mean(f_yam)), 3)}
    res["metrics"]["events_cut"] = {"n": n_ev, "pipeline": cut_pipe, "fixed_10s": cut_fixed}
    log(f"scenes done ({time.perf_counter() - t0:.0f} s)")

    # ---- speech: WER, speakers, DER, babble
    whisper = pipe.speech.asr.model  # the same faster-whisper model, called alone on the whole file
    refs, hyp_pipe, hyp_fw = [], [], []
    spk_ok = spk_n = 0
    contradictions = babble_speech_only = 0
    der_pipe = der_one = None
    for sp in rs.speech:
        run = pipe(sp.audio, sp.id)
        hyp = " ".join(s.speech.transcript for s in run.segments if s.speech is not None)
        rec = {"routes": [s.routes for s in run.segments], "captions": [s.caption for s in run.segments],
               "transcript": hyp}
        if sp.transcript:
            # same decoding as the branch (beam, no temperature fallback): the difference is the pipeline's own
            segs, _ = whisper.transcribe(sp.audio, beam_size=pipe.speech.asr.cfg.beam_size, temperature=0.0,
                                         language=pipe.speech.asr.cfg.language)
            fw = " ".join(s.text for s in segs)
            refs.append(sp.transcript)
            hyp_pipe.append(hyp)
            hyp_fw.append(fw)
            rec.update(wer=round(wer(sp.transcript, hyp), 4), fw_wer=round(wer(sp.transcript, fw), 4), fw=fw)
        if sp.speakers:
            for s in run.segments:
                ref_n = _speakers_in(sp, s.start_s, s.end_s)
                got = s.speech.n_speakers if s.speech is not None else 0
                spk_n += 1
                spk_ok += got == ref_n
            if sp.turns:
                der_pipe, der_one = _der(sp, run)
                rec.update(der=der_pipe, der_one_speaker=der_one)
            rec["n_speakers"] = [s.speech.n_speakers if s.speech else 0 for s in run.segments]
        if not sp.words:
            babble_speech_only += sum(s.routes == ["speech"] for s in run.segments)
        item("speech", sp.id, **rec)
    import jiwer

    def corpus_wer(hyps):
        return round(float(jiwer.wer([normalise_words(r) for r in refs], [normalise_words(h) or "<empty>" for h in hyps])), 4)

    res["metrics"]["wer"] = {"n": len(refs), "pipeline": corpus_wer(hyp_pipe), "faster_whisper": corpus_wer(hyp_fw)}
    res["metrics"]["speaker_count"] = {"n": spk_n, "pipeline": spk_ok}
    res["metrics"]["der"] = {"n": 1, "pipeline": der_pipe, "one_speaker": der_one}
    log(f"speech done ({time.perf_counter() - t0:.0f} s)")

    # ---- consistency over everything annotated
    all_caps = [(s.caption, s.routes) for kind in ("effects", "scenes", "speech", "music")
                for it in res["items"].get(kind, {}).values() for s in _zip_caps(it)]
    contradictions = sum(speaks_and_not(c, r) for c, r in all_caps)
    res["metrics"]["consistency"] = {
        "captions_speech_and_no_speech": contradictions,
        "babble_routed_speech_only": babble_speech_only,
        "key_on_unpitched": n_unpitched - null_pipe,
        "snr_over_60db": sum(x > MAX_SNR_DB for x in max_snr),
        "max_snr_db": round(max(max_snr), 1) if max_snr else None,
    }
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


@dataclass
class _Cap:
    caption: str
    routes: list[str]


def _zip_caps(it: dict) -> list[_Cap]:
    caps = it.get("captions", [])
    routes = it.get("routes", [])
    if routes and isinstance(routes[0], list):
        return [_Cap(c, r) for c, r in zip(caps, routes, strict=False)]
    return [_Cap(c, list(routes)) for c in caps]


def _speakers_in(sp, a: float, b: float, min_s: float = 0.5) -> int:
    talk: dict[str, float] = {}
    for spk, s, e in sp.turns:
        talk[spk] = talk.get(spk, 0.0) + max(0.0, min(e, b) - max(s, a))
    return sum(v >= min_s for v in talk.values()) if sp.turns else (sp.speakers or 0)


def _der(sp, run: Run) -> tuple[float, float]:
    """DER over the file (collar 0.25 s), speaker labels made unique per segment; and the one-speaker baseline
    (every reference speech second given one label)."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref = Annotation()
    for spk, a, b in sp.turns:
        ref[Segment(a, b)] = spk
    hyp = Annotation()
    for k, s in enumerate(run.segments):
        if s.speech is None:
            continue
        for t in s.speech.speakers:
            hyp[Segment(s.start_s + t.start_s, s.start_s + t.end_s)] = f"{k}-{t.speaker}"
    one = Annotation()
    for seg in ref.get_timeline().support():
        one[seg] = "one"
    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    return round(float(metric(ref, hyp)), 4), round(float(DiarizationErrorRate(collar=0.25)(ref, one)), 4)


def print_table(res: dict) -> None:
    m = res["metrics"]
    rows = [
        ("tempo within 4% (octaves ok)", m["tempo"], ["pipeline", "librosa", "essentia"]),
        ("percussion-only routed music", m["percussion_routed_music"], ["pipeline"]),
        ("key, mir_eval weighted (sum)", m["key_weighted"], ["pipeline", "librosa_ks", "essentia"]),
        ("key null on unpitched", m["key_null_unpitched"], ["pipeline", "librosa_ks"]),
        ("effect named, top 5", m["effects_named_top5"], ["pipeline", "yamnet_mean", "yamnet_max"]),
        ("event onset F1 200 ms (mean)", m["onset_f1_200ms"], ["pipeline", "yamnet"]),
        ("events cut by a boundary", m["events_cut"], ["pipeline", "fixed_10s"]),
        ("WER (lower is better)", m["wer"], ["pipeline", "faster_whisper"]),
        ("speaker count right, per segment", m["speaker_count"], ["pipeline"]),
        ("DER (lower is better)", m["der"], ["pipeline", "one_speaker"]),
    ]
    print(f"{'metric':36s} {'n':>4s}  values (pipeline first; ratio = pipeline / tool)")
    for name, d, keys in rows:
        vals = [(k, d[k]) for k in keys if k in d]
        base = [v for k, v in vals[1:] if isinstance(v, int | float)]
        ratio = _ratio(vals[0][1], base[0]) if base and isinstance(vals[0][1], int | float) else "-"
        print(f"{name:36s} {d.get('n', ''):>4}  " + "  ".join(f"{k}={v}" for k, v in vals) + f"  ratio={ratio}")
    print("consistency:", json.dumps(m["consistency"]))
    print(f"({res['seconds']} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    res = evaluate()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print_table(res)
    print("wrote", out)


if __name__ == "__main__":
    main()
