"""The decoder: a `transformers` Qwen3 causal LM, run layer by layer so DeepStack can add audio features
after the first K layers.

`DecoderConfig.pretrained_path` loads a Qwen3 (or any Qwen3-shaped) checkpoint from a local directory;
otherwise the model is randomly initialised from the sizes here. Sequences may be packed: several samples
in one row, each with positions starting at 0; `transformers` turns position resets into a block-diagonal
causal mask, so packed samples never see each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from transformers import Qwen3Config, Qwen3ForCausalLM
from transformers.masking_utils import create_causal_mask

from trainer.model.deepstack import inject


@dataclass
class DecoderConfig:
    vocab_size: int = 151_936
    hidden_size: int = 2560
    intermediate_size: int = 9728
    n_layers: int = 36
    n_heads: int = 32
    n_kv_heads: int = 8
    head_dim: int = 128
    max_positions: int = 40_960
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_embeddings: bool = False  # the released model has an untied LM head
    pretrained_path: str | None = None  # local Qwen3 checkpoint dir (config + safetensors + tokenizer)
    attn_implementation: str = "sdpa"

    def to_hf(self) -> Qwen3Config:
        return Qwen3Config(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads, num_key_value_heads=self.n_kv_heads, head_dim=self.head_dim,
            max_position_embeddings=self.max_positions, rope_theta=self.rope_theta,
            rms_norm_eps=self.rms_norm_eps, tie_word_embeddings=self.tie_embeddings,
            attn_implementation=self.attn_implementation, use_cache=False,
        )


def build_qwen3(cfg: DecoderConfig) -> Qwen3ForCausalLM:
    if cfg.pretrained_path:
        return Qwen3ForCausalLM.from_pretrained(
            cfg.pretrained_path, attn_implementation=cfg.attn_implementation, dtype=torch.float32
        )
    return Qwen3ForCausalLM(cfg.to_hf())


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.lm = build_qwen3(cfg)
        self.config = self.lm.config

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def layers(self) -> nn.ModuleList:
        return self.lm.model.layers

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm.model.embed_tokens(input_ids)  # (B, T, C)

    def forward(
        self,
        inputs_embeds: torch.Tensor,  # (B, T, C)
        position_ids: torch.Tensor,  # (B, T), restarting at 0 for each packed sample
        audio_mask: torch.Tensor | None = None,  # (B, T) True at audio placeholders
        deepstack: list[torch.Tensor] = (),  # K tensors (N_audio, C), added after layers 0..K-1
        return_hidden: bool = False,
        attention_mask: torch.Tensor | None = None,  # (B, 1, T, T_past + T) bool, or None: packed causal
        cache=None,  # a transformers Cache (generation): keys and values of the tokens seen so far
    ):
        m = self.lm.model
        assert len(deepstack) <= len(m.layers)
        mask = attention_mask
        if mask is None:
            mask = create_causal_mask(
                config=self.config, inputs_embeds=inputs_embeds, attention_mask=None, cache=cache,
                position_ids=position_ids,
            )
        x = inputs_embeds
        rope = m.rotary_emb(x, position_ids)
        hidden = []
        for i, layer in enumerate(m.layers):
            x = layer(x, attention_mask=mask, position_embeddings=rope, position_ids=position_ids, cache=cache,
                      use_cache=cache is not None)
            if i < len(deepstack):
                x = inject(x, audio_mask, deepstack[i])  # (B, T, C), changed at audio positions only
            hidden.append(x)
        x = m.norm(x)
        return (x, hidden) if return_hidden else x  # (B, T, C) final-normed states

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm.lm_head(x)  # (..., vocab)
