"""Batched faster-whisper ASR over many segments: words with times, language ID, hallucination signals. No Ray.

faster-whisper's `BatchedInferencePipeline` batches the VAD chunks of *one* recording and detects the language
once for all of them; we have many short segments, each with its own language. So this module batches the
30 s windows of all segments of a call through the same CTranslate2 calls the pipeline uses
(`encode` -> `detect_language` -> `generate` -> `align`), one batch at a time:

- one encoder pass per batch; language ID per window from that encoder output (multilingual models);
- windows are grouped by language for decoding and word alignment (the alignment's start sequence and the
  word splitter depend on the language), reusing the encoder output;
- words come from cross-attention DTW (`WhisperModel.add_word_timestamps`), shifted to segment time.

A segment longer than one window is cut at its quietest VAD frame in the last third of the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from annotators.common import SAMPLE_RATE
from annotators.speech.models import ResolvedModel, resolve_asr_model
from schemas.speech_config import AsrConfig


@dataclass
class AsrWord:
    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass
class AsrResult:
    text: str
    words: list[AsrWord]
    language: str | None
    language_probability: float | None
    language_source: str | None  # "detected" | "config"
    no_speech_prob: float | None
    avg_logprob: float | None
    compression_ratio: float | None


@dataclass
class _Window:
    item: int
    start: int  # sample offset in the segment
    audio: np.ndarray
    language: str | None = None
    language_probs: dict[str, float] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)
    words: list[dict] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def split_windows(n: int, max_len: int, vad_prob: np.ndarray | None, vad_hop: int) -> list[tuple[int, int]]:
    """[start, end) sample ranges of at most max_len, cut where the VAD is least sure of speech."""
    out, s = [], 0
    while n - s > max_len:
        lo, hi = s + (2 * max_len) // 3, s + max_len
        cut = hi
        if vad_prob is not None and vad_prob.size:
            f0, f1 = lo // vad_hop, min(hi // vad_hop, vad_prob.size)
            if f1 > f0:
                cut = (f0 + int(np.argmin(vad_prob[f0:f1]))) * vad_hop
        out.append((s, cut))
        s = cut
    out.append((s, n))
    return out


class WhisperAsr:
    """faster-whisper with our batching; construct once per actor."""

    def __init__(self, cfg: AsrConfig, num_threads: int = 1):
        from faster_whisper import WhisperModel

        self.cfg = cfg
        self.resolved: ResolvedModel = resolve_asr_model(cfg.model, cfg.allow_download)
        self.device = resolve_device(cfg.device)
        compute = cfg.compute_type
        if compute == "auto":
            compute = "float16" if self.device == "cuda" else "int8"
        self.compute_type = compute
        self.model = WhisperModel(
            self.resolved.path_or_name,
            device=self.device,
            device_index=cfg.device_index,
            compute_type=compute,
            cpu_threads=num_threads,
            download_root=cfg.download_root,
            local_files_only=not cfg.allow_download,
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        if not self.multilingual and cfg.language not in (None, "en"):
            raise ValueError(f"asr.language={cfg.language!r} but {cfg.model!r} is an English-only model")
        self._tokenizers: dict[str | None, object] = {}
        fe = self.model.feature_extractor
        self.window_samples = fe.n_samples  # 30 s
        self.n_frames = fe.nb_max_frames  # 3000

    @property
    def label(self) -> str:
        return self.resolved.label

    def _tokenizer(self, language: str | None):
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]

    # ------------------------------------------------------------------ public
    def transcribe(
        self,
        audios: list[np.ndarray],
        vad_probs: list[np.ndarray | None] | None = None,
        vad_hop_s: float = 0.032,
    ) -> list[AsrResult]:
        """One AsrResult per audio; word times are seconds relative to the start of that audio."""
        vad_probs = vad_probs or [None] * len(audios)
        hop = max(1, int(round(vad_hop_s * SAMPLE_RATE)))
        windows: list[_Window] = []
        for i, (a, vp) in enumerate(zip(audios, vad_probs, strict=False)):
            for s, e in split_windows(a.shape[0], self.window_samples, vp, hop):
                if e - s >= SAMPLE_RATE // 10:  # whisper cannot do much with < 0.1 s
                    windows.append(_Window(item=i, start=s, audio=a[s:e]))
        bs = self.cfg.batch_size
        for b in range(0, len(windows), bs):
            self._run_batch(windows[b : b + bs])
        return [self._merge([w for w in windows if w.item == i], audios[i]) for i in range(len(audios))]

    # ------------------------------------------------------------------ internals
    def _features(self, batch: list[_Window]) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        fe = self.model.feature_extractor
        return np.stack([pad_or_trim(fe(w.audio)[..., :-1]) for w in batch]).astype(np.float32)

    def _run_batch(self, batch: list[_Window]) -> None:
        import ctranslate2

        features = self._features(batch)
        encoder_output = self._encode(features)
        if self.cfg.language is not None or not self.multilingual:
            for w in batch:
                w.language = self.cfg.language or "en"
        else:
            for w, langs in zip(batch, self.model.model.detect_language(encoder_output), strict=False):
                w.language_probs = {tok[2:-2]: float(p) for tok, p in langs}
                w.language = langs[0][0][2:-2]
        groups: dict[str, list[int]] = {}
        for j, w in enumerate(batch):
            groups.setdefault(w.language, []).append(j)
        for lang, idx in groups.items():
            if len(idx) == len(batch):
                enc = encoder_output
            elif self.device == "cpu":  # slice the encoder output instead of encoding again
                enc = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoder_output)[idx]))
            else:
                enc = self.model.encode(features[idx])
            self._decode(lang, [batch[j] for j in idx], enc)

    def _encode(self, features: np.ndarray):
        """The encoder output of (B, 80, 3000) features -> (B, 1500, d_model). On CPU `encode_batch_size` windows
        per call: the self-attention scores of a call are B x heads x 1500 x 1500 floats (576 MB for base at
        B = 8). On the bench speech (24 x 20 s, batch_size 8) the ASR's peak went from +900 to +530 MiB over the
        loaded model at the same speed (21-22 s against 22-24) and bit-identical words, times and scores."""
        import ctranslate2

        eb = self.cfg.encode_batch_size
        if self.device != "cpu" or features.shape[0] <= eb:
            return self.model.encode(features)
        parts = [np.asarray(self.model.encode(features[i:i + eb])) for i in range(0, features.shape[0], eb)]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))

    def _decode(self, language: str, batch: list[_Window], enc) -> None:
        from faster_whisper.transcribe import get_suppressed_tokens

        cfg = self.cfg
        tok = self._tokenizer(language if self.multilingual else None)
        prompt = self.model.get_prompt(
            tok,
            previous_tokens=tok.encode(" " + cfg.initial_prompt.strip()) if cfg.initial_prompt else [],
            without_timestamps=True,
        )
        max_length = self.model.max_length
        if cfg.max_new_tokens is not None:
            max_length = min(max_length, len(prompt) + cfg.max_new_tokens)
        results = self.model.model.generate(
            enc,
            [list(prompt) for _ in batch],
            beam_size=cfg.beam_size,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tok, [-1]),
            return_scores=True,
            return_no_speech_prob=True,
        )
        segments, frames, aligned = [], [], []
        for w, r in zip(batch, results, strict=False):
            tokens = [t for t in r.sequences_ids[0] if t < tok.eot]
            n = len(r.sequences_ids[0])
            w.tokens = tokens
            w.avg_logprob = float(r.scores[0] * n / (n + 1))
            w.no_speech_prob = float(r.no_speech_prob)
            if tokens:
                dur = w.audio.shape[0] / SAMPLE_RATE
                segments.append([dict(seek=0, start=0.0, end=dur, tokens=tokens)])
                frames.append(min(self.n_frames, int(math.ceil(dur * self.model.frames_per_second))))
                aligned.append(w)
        if not aligned:
            return
        if len(aligned) < len(batch):
            keep = [batch.index(w) for w in aligned]
            enc = self._take(enc, keep)
        self.model.add_word_timestamps(
            segments, tok, enc, frames, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、", last_speech_timestamp=0.0
        )
        for w, seg in zip(aligned, segments, strict=False):
            w.words = seg[0].get("words", [])

    def _take(self, enc, idx: list[int]):
        import ctranslate2

        if self.device == "cpu":
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(enc)[idx]))
        import torch  # CUDA storage: slice on the device without a host round trip

        t = torch.as_tensor(enc, device="cuda")[idx].contiguous()
        return ctranslate2.StorageView.from_array(t)

    def _merge(self, wins: list[_Window], audio: np.ndarray) -> AsrResult:
        from faster_whisper.transcribe import get_compression_ratio

        source = "detected" if (self.multilingual and self.cfg.language is None) else "config"
        if not wins:
            lang = self.cfg.language or (None if self.multilingual else "en")
            return AsrResult("", [], lang, None, source if lang else None, None, None, None)
        words: list[AsrWord] = []
        for w in wins:
            off = w.start / SAMPLE_RATE
            for d in w.words:
                words.append(AsrWord(d["word"], round(off + d["start"], 3), round(off + d["end"], 3),
                                     float(d["probability"])))
        tok = self._tokenizer(wins[0].language if self.multilingual else None)
        text = "".join(tok.decode(w.tokens) for w in wins).strip()
        durs = np.array([w.audio.shape[0] for w in wins], float)
        if source == "detected":
            probs: dict[str, float] = {}
            for w, d in zip(wins, durs, strict=False):
                for k, p in w.language_probs.items():
                    probs[k] = probs.get(k, 0.0) + p * d / durs.sum()
            language = max(probs, key=probs.get)
            lang_p: float | None = round(probs[language], 4)
        else:
            language, lang_p = self.cfg.language or "en", None
        ntok = np.array([max(1, len(w.tokens)) for w in wins], float)
        return AsrResult(
            text=text,
            words=words,
            language=language,
            language_probability=lang_p,
            language_source=source,
            no_speech_prob=round(float(np.average([w.no_speech_prob for w in wins], weights=durs)), 4),
            avg_logprob=round(float(np.average([w.avg_logprob for w in wins], weights=ntok)), 4),
            compression_ratio=round(get_compression_ratio(text), 4) if text else None,
        )
