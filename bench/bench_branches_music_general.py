"""Music and general-audio branch throughput, side by side in one run (audio-seconds per wall-second).

    .venv/bin/python -m bench.bench_branches_music_general [--n 6]

Music: FluidR3 renders of chord progressions with drums, bass and melody (tests/synth_music.py), 16–20 s.
General audio: noise bursts and tones in background noise, 10 s. Each branch is timed
- with the segmenter's YAMNet posteriors passed as evidence (what the pipeline does), and
- without (the branch runs its own YAMNet), next to YAMNet alone on the same audio;
the music branch also with basic-pitch note transcription on.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _music(n: int):
    from tests import synth_music as sm

    out = []
    for i in range(n):
        pm = sm.chord_progression((5 * i) % 12, "minor" if i % 2 else "major", bpm=84 + 12 * i, program=(0, 24, 48)[i % 3],
                                  melody_program=73 if i % 2 else 40, drums=True, seed=i, repeats=2)
        out.append(sm.render(pm)[: 20 * sm.SR])
    return out


def _scenes(n: int):
    from tests import synth_music as sm

    out = []
    for i in range(n):
        ev = [(0.5 + i * 0.1, sm.noise_burst(1.2, seed=i)), (3.1, sm.tone(800 + 100 * i, 0.7)),
              (5.4, sm.noise_burst(0.3, seed=i + 50)), (7.2, sm.tone(2000, 1.5, amp=0.2))]
        out.append(sm.place(ev, 10.0, background_db=-45.0, seed=i))
    return out


def _rate(fn, total_s: float, repeat: int = 2) -> float:
    fn()  # warm-up (first calls build filters, allocate sessions)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return repeat * total_s / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    args = ap.parse_args()

    from annotators.base import BranchInput, SegmentEvidence
    from annotators.common.yamnet import HOP_S, WINDOW_S
    from annotators.general.annotator import GeneralAudioAnnotator
    from annotators.music.annotator import MusicAnnotator
    from schemas.general_config import GeneralConfig
    from schemas.music_config import MusicConfig

    music = MusicAnnotator(MusicConfig())
    music_notes = MusicAnnotator(MusicConfig(transcribe_notes=True))
    sound = GeneralAudioAnnotator(GeneralConfig())
    yam = music._yamnet

    def items(audios, with_evidence):
        out = []
        for a in audios:
            ev = None
            if with_evidence:
                ev = SegmentEvidence(yamnet_hop_s=HOP_S, yamnet_window_s=WINDOW_S, yamnet_scores=yam.scores(a),
                                     vad_hop_s=0.032, vad_prob=None)
            out.append(BranchInput(audio=a, sample_rate=16000, segment=None, evidence=ev))
        return out

    rows = []
    for name, audios, annot in (("music", _music(args.n), music), ("general", _scenes(args.n), sound)):
        total = sum(a.size for a in audios) / 16000
        with_ev, without = items(audios, True), items(audios, False)
        rows.append((f"{name}: YAMNet alone", _rate(lambda a=audios: [yam.scores(x) for x in a], total)))
        rows.append((f"{name} branch, evidence passed", _rate(lambda i=with_ev, b=annot: b.annotate(i), total)))
        rows.append((f"{name} branch, own YAMNet", _rate(lambda i=without, b=annot: b.annotate(i), total)))
        if name == "music":
            rows.append(("music branch + basic-pitch, evidence passed",
                         _rate(lambda i=with_ev: music_notes.annotate(i), total)))
        print(f"{name}: {len(audios)} segments, {total:.0f} s of audio", flush=True)
    print(f"{'':46s} audio-s per wall-s (1 process; nproc={os.cpu_count()})")
    for label, rate in rows:
        print(f"  {label:44s} {rate:8.1f}")


if __name__ == "__main__":
    main()
