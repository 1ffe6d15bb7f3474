"""The full model: audio encoder -> adapter -> decoder, with DeepStack injection and time markers.

    wav (N, S) ──encoder──> final (N, T, D) ──adapter──> replaces <|AUDIO|> embeddings at the input
                      └──> taps [K x (N, T, D)] ──DeepStack──> added at <|AUDIO|> after decoder layers 0..K-1

The token stream (trainer/sequence.py) holds one <|AUDIO|> per encoder frame, with time-marker digits
between them, so the i-th placeholder of a sample receives that sample's i-th encoder frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.model.adapter import SwiGLUAdapter
from trainer.model.decoder import Decoder, DecoderConfig
from trainer.model.deepstack import DeepStack
from trainer.model.encoder import AudioEncoder, EncoderConfig, load_whisper_encoder
from trainer.model.lora import LoRAConfig, apply_lora
from trainer.sequence import IGNORE


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    adapter_hidden: int = 8192
    deepstack: bool = True  # False: no injection (K = 0), for ablation; the taps are then not used
    marker_interval_s: float | None = 2.0  # None: no time markers
    tokenizer: str = "bytes"  # "bytes", or a local tokenizer dir (default: decoder.pretrained_path)
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # rank > 0: LoRA on the decoder, its weights frozen

    @property
    def n_deepstack(self) -> int:
        return len(self.encoder.tap_layers) if self.deepstack else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        enc = dict(d["encoder"], tap_layers=tuple(d["encoder"]["tap_layers"]))
        lora = dict(d.get("lora") or {})
        if "targets" in lora:
            lora["targets"] = tuple(lora["targets"])
        return cls(**{**d, "encoder": EncoderConfig(**enc), "decoder": DecoderConfig(**d["decoder"]),
                      "lora": LoRAConfig(**lora)})


class AudioLM(nn.Module):
    def __init__(self, cfg: ModelConfig, audio_token_id: int):
        super().__init__()
        self.cfg = cfg
        self.audio_token_id = audio_token_id
        self.encoder = AudioEncoder(cfg.encoder)
        self.decoder = Decoder(cfg.decoder)
        C = self.decoder.hidden_size
        self.adapter = SwiGLUAdapter(self.encoder.output_dim, cfg.adapter_hidden, C)
        self.deepstack = DeepStack(cfg.n_deepstack, cfg.encoder.d_model, cfg.adapter_hidden, C)
        if cfg.encoder.whisper_path:
            load_whisper_encoder(self.encoder, cfg.encoder.whisper_path)
        apply_lora(self.decoder.layers, cfg.lora)

    def parts(self) -> dict[str, nn.Module]:
        """The named parts a training stage can freeze or train."""
        return {"encoder": self.encoder, "adapter": self.adapter, "deepstack": self.deepstack,
                "decoder": self.decoder}

    def audio_features(self, wav: torch.Tensor, wav_lengths: torch.Tensor):
        """(N, S) waveforms -> input features (N_frames_total, C) and K DeepStack features, valid frames
        of every sample concatenated in order."""
        final, taps, n_frames = self.encoder(wav, wav_lengths)  # (N, T, D), K x (N, T, D), (N,)
        valid = torch.arange(final.shape[1], device=final.device)[None, :] < n_frames[:, None]  # (N, T)
        inputs = self.adapter(final[valid])  # (N_frames_total, C)
        injected = self.deepstack([t[valid] for t in taps[: self.cfg.n_deepstack]])  # K x (N_frames_total, C)
        return inputs, injected

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        position_ids: torch.Tensor,  # (B, T)
        wav: torch.Tensor,  # (N, S) the batch's audio, in the order of their spans in input_ids
        wav_lengths: torch.Tensor,  # (N,)
        labels: torch.Tensor | None = None,  # (B, T) token ids where the loss applies, IGNORE elsewhere
        return_hidden: bool = False,
    ):
        audio_mask = input_ids == self.audio_token_id  # (B, T)
        audio_in, injected = self.audio_features(wav, wav_lengths)
        if audio_in.shape[0] != int(audio_mask.sum()):
            raise ValueError(f"{int(audio_mask.sum())} audio placeholders for {audio_in.shape[0]} frames")
        x = self.decoder.embed(input_ids)  # (B, T, C)
        x = x.masked_scatter(audio_mask[..., None], audio_in.to(x.dtype))  # audio frames replace placeholders
        out = self.decoder(x, position_ids, audio_mask, injected, return_hidden=return_hidden)
        h, hidden = out if return_hidden else (out, None)
        if labels is None:
            logits = self.decoder.logits(h)
            return (logits, hidden) if return_hidden else logits
        # next-token loss on the target tokens only; summed, so the caller divides by its token count
        targets = labels[:, 1:]  # (B, T-1)
        keep = targets != IGNORE
        logits = self.decoder.logits(h[:, :-1][keep])  # (N_target, V)
        return F.cross_entropy(logits.float(), targets[keep], reduction="sum"), int(keep.sum())


def count_params(model: AudioLM) -> dict[str, int]:
    size = {name: sum(p.numel() for p in part.parameters()) for name, part in model.parts().items()}
    return {"total": sum(p.numel() for p in model.parameters()), "encoder": size["encoder"],
            "adapter": size["adapter"], "deepstack_projections": size["deepstack"], "decoder": size["decoder"]}
