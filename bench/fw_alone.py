"""faster-whisper + its VAD alone, whole process: the anchor the pipeline is measured against.

    python -m bench.fw_alone FILE... [--set KEY=VALUE ...]    prints one JSON line

The same model, compute type and decoding settings as the speech branch (`speech.asr` of the job config:
beam size, batch size, word timestamps), through faster-whisper's own `BatchedInferencePipeline` with its
Silero VAD on: each source file decoded whole and transcribed, language detected per file.
"""

from __future__ import annotations

import argparse
import json
import os
import time

T_START = time.perf_counter()
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--threads", type=int, default=0, help="CTranslate2 intra-op threads (0: its default)")
    args = ap.parse_args()

    from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio

    from annotators.speech.asr import resolve_device
    from annotators.speech.models import resolve_asr_model
    from schemas.config import load_config

    asr = load_config(None, args.set).speech.asr
    device = resolve_device(asr.device)
    compute = asr.compute_type if asr.compute_type != "auto" else ("float16" if device == "cuda" else "int8")
    t = time.perf_counter()
    model = WhisperModel(resolve_asr_model(asr.model).path_or_name, device=device, compute_type=compute,
                         cpu_threads=args.threads, local_files_only=True)
    pipe = BatchedInferencePipeline(model)
    load_s = time.perf_counter() - t
    audio_s, words, first = 0.0, 0, None
    for f in args.files:
        a = decode_audio(f, sampling_rate=16000)
        audio_s += a.shape[0] / 16000
        segs, _info = pipe.transcribe(a, beam_size=asr.beam_size, batch_size=asr.batch_size, word_timestamps=True,
                                      vad_filter=True, language=asr.language)
        for s in segs:
            words += len(s.words or [])
        if first is None:
            first = time.perf_counter() - T_START
    print(json.dumps({"wall_s": round(time.perf_counter() - T_START, 2), "load_s": round(load_s, 2),
                      "audio_s": round(audio_s, 2), "words": words, "first_file_done_s": round(first or 0, 2),
                      "model": asr.model, "compute_type": compute, "beam_size": asr.beam_size,
                      "batch_size": asr.batch_size}))


if __name__ == "__main__":
    main()
