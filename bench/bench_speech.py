"""Speech branch throughput vs faster-whisper alone, same model, same audio, one run, side by side.

    .venv/bin/python -m bench.bench_speech [--model base] [--n 8]

Prints audio-seconds per wall-second for: faster-whisper `BatchedInferencePipeline` called alone (word
timestamps, VAD filter, beam 5) on each segment; our batched ASR alone; and the whole speech branch
(`SpeechAnnotator.annotate`: ASR + VAD + speaker turns + pitch + loudness + SNR + DNSMOS + caption),
plus the branch without DNSMOS. The segments are flite TTS scenes of 8–12 s (tests/synth_speech.py).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")


def _scenes(n: int):
    from tests import synth_speech as ss

    lines = ["The quick brown fox jumps over the lazy dog.", "Please call Stella and ask her to bring these things.",
             "It was a bright cold day in April.", "We will meet at the station at seven in the morning.",
             "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background."]
    voices = ss.FLITE_VOICES
    out = []
    for i in range(n):
        k = [(voices[(i + j) % 4 if j % 2 else i % 4], lines[(i + j) % len(lines)]) for j in range(3)]
        out.append(ss.flite_scene(k, [0.5, 0.7, 0.6], seed=i).audio)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="base")
    ap.add_argument("--n", type=int, default=8)
    args = ap.parse_args()

    from faster_whisper import BatchedInferencePipeline

    from annotators.base import BranchInput
    from annotators.speech.annotator import SpeechAnnotator
    from schemas.speech_config import SpeechConfig

    audios = _scenes(args.n)
    total = sum(a.shape[0] for a in audios) / 16000
    cfg = SpeechConfig.model_validate({"asr": {"model": args.model}})
    ann = SpeechAnnotator(cfg)
    items = [BranchInput(audio=a, sample_rate=16000, segment=None, evidence=None) for a in audios]
    pipe = BatchedInferencePipeline(ann.asr.model)  # the very same loaded model

    def fw_alone():
        for a in audios:
            segs, _ = pipe.transcribe(a, beam_size=cfg.asr.beam_size, word_timestamps=True, batch_size=cfg.asr.batch_size)
            list(segs)

    def ours_asr():
        ann.asr.transcribe(audios)

    def branch():
        ann.annotate(items)

    no_mos = SpeechAnnotator(SpeechConfig.model_validate({"asr": {"model": args.model},
                                                          "paralinguistics": {"dnsmos": False}}))

    def branch_no_dnsmos():
        no_mos.annotate(items)

    fw_alone()  # warm-up
    print(f"{args.n} segments, {total:.1f} s of audio, model {args.model}, {os.cpu_count()} CPU cores")
    print(f"{'what':52s} {'wall s':>7s} {'audio-s/s':>10s}")
    for name, fn in [("faster-whisper BatchedInferencePipeline alone", fw_alone),
                     ("our batched ASR alone (language ID per segment)", ours_asr),
                     ("speech branch, everything", branch),
                     ("speech branch without DNSMOS", branch_no_dnsmos)]:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        print(f"{name:52s} {dt:7.2f} {total / dt:10.2f}")


if __name__ == "__main__":
    main()
