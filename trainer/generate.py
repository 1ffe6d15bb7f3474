"""Generation: ask a trained model about audio.

    gen = Generator.from_checkpoint("runs/tiny")                   # run dir, checkpoint dir or MOSS-Audio dir
    outs = gen.generate([wav1, wav2], ["Describe the audio."] * 2, max_new_tokens=128)
    outs[0].answer, outs[0].thinking

The prompt is built exactly as in training (trainer/sequence.py: the user turn holds the audio span with
its time markers, then the prompt text), followed by "<|im_start|>assistant\\n". Decoding is our own loop
over the decoder with a transformers `DynamicCache` (the KV cache): one prefill over the whole prompt
(audio features replace the placeholders, DeepStack adds its features after the first decoder layers),
then one token per step. Several audio files are batched: prompts are left-padded, padding keys are
masked, and positions start at 0 at each row's first real token, so a row decodes as it would alone.
Greedy (temperature 0) or sampled (temperature, top-k, top-p). A row stops at `<|im_end|>` (or the pad /
end-of-text token). A Thinking model's `<think>...</think>` is split from the answer.
On a GPU the model runs in bf16; on the CPU in fp32.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from trainer.model.features import SAMPLE_RATE, n_audio_frames
from trainer.sequence import build_chat
from trainer.tokenizer import IM_END, IM_START, PAD

_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclass
class Generation:
    text: str  # everything generated before the stop token
    answer: str  # the text without its <think>...</think> part
    thinking: str | None  # what was inside <think>...</think>, if any
    token_ids: list[int]
    stopped: bool  # True: ended at a stop token; False: ran into max_new_tokens


def split_thinking(text: str) -> tuple[str | None, str]:
    """("thinking", "answer") from "<think>thinking</think>answer"; (None, text) without a think block.
    An unclosed "<think>" (generation cut short) is all thinking."""
    m = _THINK_RE.search(text)
    if m:
        return m.group(1).strip(), (text[: m.start()] + text[m.end():]).strip()
    if "<think>" in text:
        return text.split("<think>", 1)[1].strip(), ""
    return None, text.strip()


def load_audio(path: str | Path) -> torch.Tensor:
    """An audio file -> (S,) float32 mono at 16 kHz."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wav = torch.from_numpy(data).mean(dim=1)
    if sr != SAMPLE_RATE:
        wav = torchaudio.functional.resample(wav, sr, SAMPLE_RATE)
    return wav


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """(B, V) logits -> (B,) token ids: argmax at temperature 0, else top-k / top-p sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, -torch.inf)
        logits = torch.full_like(logits, -torch.inf).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]


class Generator:
    def __init__(self, model, tok, device: torch.device | str = "cpu"):
        self.model, self.tok = model, tok
        self.device = torch.device(device)
        self.marker_interval_s = model.cfg.marker_interval_s
        sp = tok.special
        self.stop_ids = {sp[IM_END], sp[PAD]}
        eos = getattr(getattr(tok, "tok", None), "eos_token_id", None)
        if eos is not None:
            self.stop_ids.add(int(eos))

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None) -> Generator:
        from trainer.runs import load_model

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        model, tok, _ = load_model(path, device=device, dtype=dtype)
        return cls(model, tok, device)

    def prompt_ids(self, n_samples: int, prompt: str) -> list[int]:
        """The user turn (audio span + prompt) and the assistant header, as in training."""
        ids, _ = build_chat(self.tok, [{"role": "user", "content": prompt}], n_audio_frames(n_samples),
                            self.marker_interval_s)
        return ids + [self.tok.special[IM_START]] + self.tok.encode("assistant\n")

    @torch.no_grad()
    def generate(self, audios: list, prompts: list[str] | str, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int | None = None) -> list[Generation]:
        """One Generation per audio (arrays/tensors at 16 kHz, or file paths), in order."""
        from transformers import DynamicCache

        wavs = [load_audio(a) if isinstance(a, (str, Path)) else torch.as_tensor(np.asarray(a), dtype=torch.float32)
                for a in audios]
        prompts = [prompts] * len(wavs) if isinstance(prompts, str) else list(prompts)
        if len(prompts) != len(wavs):
            raise ValueError(f"{len(wavs)} audios but {len(prompts)} prompts")
        model, dev = self.model, self.device
        B = len(wavs)
        rows = [self.prompt_ids(w.numel(), p) for w, p in zip(wavs, prompts, strict=True)]
        T = max(len(r) for r in rows)
        pad = self.tok.special[PAD]
        ids = torch.full((B, T), pad, dtype=torch.long)
        keys = torch.zeros((B, T), dtype=torch.bool)  # real (not padding) tokens
        for b, r in enumerate(rows):  # left padding: every row's last prompt token is at T - 1
            ids[b, T - len(r):] = torch.tensor(r)
            keys[b, T - len(r):] = True
        ids, keys = ids.to(dev), keys.to(dev)
        lengths = torch.tensor([w.numel() for w in wavs])
        wav = torch.zeros(B, int(lengths.max()))
        for b, w in enumerate(wavs):
            wav[b, : w.numel()] = w

        # prefill: audio features replace the placeholders; DeepStack adds its features at them
        audio_mask = ids == model.audio_token_id
        audio_in, injected = model.audio_features(wav.to(dev), lengths.to(dev))
        x = model.decoder.embed(ids)
        x = x.masked_scatter(audio_mask[..., None], audio_in.to(x.dtype))
        positions = (keys.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
        mask = (causal[None] & keys[:, None, :]) | torch.eye(T, dtype=torch.bool, device=dev)[None]
        cache = DynamicCache(config=model.decoder.config)
        h = model.decoder(x, positions, audio_mask, injected, attention_mask=mask[:, None], cache=cache)
        logits = model.decoder.logits(h[:, -1])  # (B, V)

        gen = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
        out: list[list[int]] = [[] for _ in range(B)]
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        stopped = [False] * B
        pos = positions[:, -1]
        stop = torch.tensor(sorted(self.stop_ids), device=dev)
        for _ in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, top_p, gen)  # (B,)
            is_stop = torch.isin(nxt, stop)
            for b in range(B):
                if not done[b]:
                    if is_stop[b]:
                        stopped[b] = True
                    else:
                        out[b].append(int(nxt[b]))
            done |= is_stop
            if bool(done.all()):
                break
            pos = pos + 1
            keys = torch.cat([keys, torch.ones(B, 1, dtype=torch.bool, device=dev)], dim=1)
            h = model.decoder(model.decoder.embed(nxt[:, None]), pos[:, None], attention_mask=keys[:, None, None, :],
                              cache=cache)
            logits = model.decoder.logits(h[:, -1])
        results = []
        for b in range(B):
            text = self.tok.decode(out[b])
            thinking, answer = split_thinking(text)
            results.append(Generation(text=text, answer=answer, thinking=thinking, token_ids=out[b],
                                      stopped=stopped[b]))
        return results
