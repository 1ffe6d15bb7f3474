"""The speech branch: ASR + speaker turns + paralinguistics + caption for a batch of segments. No Ray.

`SpeechAnnotator(cfg).annotate(items)` returns one `SpeechAnnotation` per `BranchInput`, in order. The VAD
curve comes from `item.evidence` when the segmenter computed it (otherwise Silero runs here, once per
segment); it decides which segments reach the ASR at all, guards against text over non-speech, snaps word
edges onto speech, and bounds the diarizer's regions.
"""

from __future__ import annotations

import sys

import numpy as np

from annotators.base import BranchInput
from annotators.common import SAMPLE_RATE
from annotators.speech.asr import AsrResult, AsrWord, WhisperAsr
from annotators.speech.caption import speech_caption
from annotators.speech.diarize import build_diarizer
from annotators.speech.paraling import Paralinguistics
from annotators.speech.vadtools import has_speech_near, is_repetition_loop, refine_word_times, speech_seconds
from schemas.annotation import ModelInfo, SpeakerTurn, SpeechAnnotation, Word
from schemas.speech_config import SpeechConfig

VAD_HOP_S = 0.032


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


class SpeechAnnotator:
    """Loads every model once (construct once per actor); `annotate` handles a batch of segments."""

    def __init__(self, cfg: SpeechConfig | None = None, num_threads: int = 1):
        """`num_threads`: intra-op threads of every model here (ASR, VAD, diarization, DNSMOS), as placed."""
        self.cfg = cfg = cfg or SpeechConfig()
        self.threads = num_threads
        self.asr = WhisperAsr(cfg.asr, num_threads)
        self.diarizer = build_diarizer(cfg.diarization, num_threads)
        # on CPU every model here is ONNX or CTranslate2 (pitch and speaker embeddings: their ONNX exports), so
        # the process never imports torch (~480 MiB); the torch models run where the ASR found a GPU
        self.para = Paralinguistics(cfg.paralinguistics, device=self.asr.device, threads=num_threads)
        if "torch" in sys.modules:  # a GPU, or pyannote: hold torch to this actor's share of the cores
            sys.modules["torch"].set_num_threads(num_threads)
        self._vad = None

    # ------------------------------------------------------------------ contract
    def models(self) -> dict[str, ModelInfo]:
        a = self.asr
        out = {
            "speech.asr": ModelInfo(name=f"{a.label} [{a.device}/{a.compute_type}]",
                                    version=a.resolved.version or f"faster-whisper {_version('faster-whisper')}"),
            "speech.vad": ModelInfo(name="silero-vad", version=_version("silero-vad")),
        }
        if self.diarizer is not None:
            out["speech.diarization"] = ModelInfo(name=self.diarizer.name, version=self.diarizer.version)
        packages = {"dnsmos": "speechmos", "loudness": "pyloudnorm", "pitch": "pesto-pitch"}
        for k, name in self.para.models().items():
            pkg = "librosa" if k == "pitch" and "pyin" in name else packages.get(k)
            out[f"speech.{k}"] = ModelInfo(name=name, version=_version(pkg) if pkg else "")
        return out

    def annotate(self, items: list[BranchInput]) -> list[SpeechAnnotation]:
        cfg = self.cfg.asr
        vads, hops = zip(*[self._vad_for(it) for it in items], strict=False) if items else ((), ())
        audios = [np.asarray(it.audio, dtype=np.float32) for it in items]
        speechy = [speech_seconds(v, h, cfg.vad_threshold) >= cfg.min_speech_s for v, h in zip(vads, hops, strict=False)]
        todo = [i for i, s in enumerate(speechy) if s]
        results: dict[int, AsrResult] = {}
        if todo:
            # One hop for the batch (the segmenter's evidence and our VAD share Silero's 32 ms frames).
            asr = self.asr.transcribe([audios[i] for i in todo], [vads[i] for i in todo], hops[todo[0]])
            results = dict(zip(todo, asr, strict=False))
        return [self._one(audios[i], vads[i], hops[i], results.get(i)) for i in range(len(items))]

    # ------------------------------------------------------------------ internals
    def _vad_for(self, item: BranchInput) -> tuple[np.ndarray, float]:
        ev = item.evidence
        if ev is not None and ev.vad_prob is not None and np.size(ev.vad_prob):
            return np.asarray(ev.vad_prob, dtype=np.float32), float(ev.vad_hop_s)
        if self._vad is None:
            from annotators.common.vad import SileroVad

            self._vad = SileroVad(num_threads=self.threads)
        return self._vad.speech_prob(item.audio), VAD_HOP_S

    def _guard(self, r: AsrResult, vad: np.ndarray, hop: float) -> tuple[list[AsrWord], list[str]]:
        """Drop text whisper produced over non-speech; return (kept words, dropped phrases)."""
        cfg = self.cfg.asr
        if (r.no_speech_prob is not None and r.avg_logprob is not None and r.no_speech_prob > cfg.no_speech_threshold
                and r.avg_logprob < cfg.log_prob_threshold):
            return [], [r.text] if r.text else []
        if r.compression_ratio is not None and r.compression_ratio > cfg.compression_ratio_threshold:
            return [], [r.text]
        # whisper itself doubts there is speech and its text is one sentence looping: crowd babble gave
        # "You have to be happy." three times (no_speech_prob 0.63, avg_logprob -0.89: just inside the rule above)
        if r.no_speech_prob is not None and r.no_speech_prob > cfg.no_speech_threshold and is_repetition_loop(r.text):
            return [], [r.text]
        kept, dropped, run = [], [], []
        for w in r.words:
            if has_speech_near(vad, hop, w.start_s, w.end_s, cfg.word_vad_margin_s, cfg.vad_threshold):
                kept.append(w)
                if run:
                    dropped.append("".join(run).strip())
                    run = []
            else:
                run.append(w.word)
        if run:
            dropped.append("".join(run).strip())
        return kept, dropped

    def _one(self, audio: np.ndarray, vad: np.ndarray, hop: float, r: AsrResult | None) -> SpeechAnnotation:
        cfg = self.cfg
        ann = SpeechAnnotation(asr_model=self.asr.label)
        words: list[AsrWord] = []
        if r is not None:
            words, dropped = self._guard(r, vad, hop)
            refine_word_times(words, vad, hop, cfg.asr.vad_threshold)
            dur = audio.shape[0] / SAMPLE_RATE
            for w in words:
                w.start_s, w.end_s = max(0.0, min(w.start_s, dur)), max(0.0, min(w.end_s, dur))
            transcript = "".join(w.word for w in words).strip() if r.words else ("" if dropped else r.text)
            ann = SpeechAnnotation(
                transcript=transcript,
                language=r.language if transcript else (r.language if r.language_source == "config" else None),
                language_probability=r.language_probability if transcript else None,
                language_source=r.language_source if (transcript or r.language_source == "config") else None,
                no_speech_prob=r.no_speech_prob,
                avg_logprob=r.avg_logprob,
                compression_ratio=r.compression_ratio,
                asr_model=self.asr.label,
                hallucination_dropped=[d for d in dropped if d],
            )
        turns = []
        if self.diarizer is not None and speech_seconds(vad, hop, cfg.asr.vad_threshold) >= cfg.asr.min_speech_s:
            turns = self.diarizer.diarize(audio, vad, hop, cfg.asr.vad_threshold)
        ann.speakers = [SpeakerTurn(speaker=s, start_s=a, end_s=b) for s, a, b in turns]
        ann.n_speakers = len({s for s, _, _ in turns})
        ann.diarization_model = self.diarizer.name if self.diarizer is not None else None
        ann.words = [Word(word=w.word.strip(), start_s=float(w.start_s), end_s=float(w.end_s),
                          probability=round(float(w.probability), 4), speaker=_speaker_of(w, turns))
                     for w in words]
        if r is not None or ann.n_speakers:
            for k, v in self.para.measure(audio, vad, hop, [w.word for w in ann.words], cfg.asr.vad_threshold).items():
                setattr(ann, k, v)
        if cfg.caption:
            ann.caption = speech_caption(ann)
        return ann


def _speaker_of(w: AsrWord, turns: list[tuple[str, float, float]], near_s: float = 0.5) -> str | None:
    best, best_ov = None, 0.0
    for s, a, b in turns:
        ov = min(b, w.end_s) - max(a, w.start_s)
        if ov > best_ov:
            best, best_ov = s, ov
    if best is not None:
        return best
    mid = 0.5 * (w.start_s + w.end_s)
    dist = [(min(abs(mid - a), abs(mid - b)), s) for s, a, b in turns]
    return min(dist)[1] if dist and min(dist)[0] <= near_s else None
