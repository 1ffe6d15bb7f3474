"""The audio encoder: log-mel (100 Hz) -> conv stem (3 x stride 2 -> 12.5 Hz) -> sinusoidal positions
-> Transformer encoder layers (Whisper-style, pre-norm) -> LayerNorm.

Windowed attention (`attention_window`, the release's `encoder_attention_window_size`, 100 frames = 8 s):
the frames are cut into consecutive windows of that many frames and each frame attends only to the frames
of its own window, so the cost grows linearly with the audio length. `None` (or a window that covers the
whole input) is full attention over the sample's valid frames.

It also returns the hidden states after the DeepStack tap layers (`tap_layers`, counted from 1:
"after layer 8" is the output of the 8th layer).

Initialising from a Whisper checkpoint (`load_whisper_encoder`): the layer parameters are named as in
Hugging Face's `WhisperEncoder`, so a Whisper checkpoint's `model.encoder.layers.*` and
`model.encoder.layer_norm.*` map one to one onto `layers.*` and `ln_post.*` here:

    model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj.*  ->  layers.{i}.self_attn.{q,k,v,out}_proj.*
    model.encoder.layers.{i}.self_attn_layer_norm.*         ->  layers.{i}.self_attn_layer_norm.*
    model.encoder.layers.{i}.fc1.* / fc2.*                   ->  layers.{i}.fc1.* / fc2.*
    model.encoder.layers.{i}.final_layer_norm.*              ->  layers.{i}.final_layer_norm.*
    model.encoder.layer_norm.*                               ->  ln_post.*

Whisper's two Conv1d stem and its 50 Hz position table do not fit a 12.5 Hz Conv2d stem: those stay
randomly initialised (train them in an early stage). Whisper-large-v3 (128 mels, d_model 1280, 32 layers,
20 heads) matches the `4b`/`8b` encoder exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainer.model.features import LogMel, conv_out_len


@dataclass
class EncoderConfig:
    n_mels: int = 128
    stem_channels: int = 480  # width of the conv stem ("downsample_hidden_size")
    n_layers: int = 32
    d_model: int = 1280
    n_heads: int = 20
    ffn: int = 5120
    max_frames: int = 3000  # sinusoid table length: 240 s at 12.5 Hz
    tap_layers: tuple[int, ...] = (8, 16, 24)  # DeepStack taps, "after layer k", 1-based
    output_dim: int | None = None  # optional linear out_proj (no bias, as released) after the final norm
    attention_window: int | None = None  # frames per attention window ("encoder_attention_window_size")
    whisper_path: str | None = None  # a Hugging Face Whisper checkpoint dir to initialise the layers from


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Whisper's sinusoidal position table, (length, channels)."""
    log_inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-log_inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([t.sin(), t.cos()], dim=1)


def attention_mask(n_frames: torch.Tensor, T: int, window: int | None) -> torch.Tensor:
    """Which key frames each frame may attend: the sample's valid frames and, with a `window`, only those
    in the same window of `window` consecutive frames (frames 0..w-1, w..2w-1, ...; the last one may be
    shorter). (B,) valid frame counts -> bool (B, 1, 1, T) without a window, (B, 1, T, T) with one."""
    t = torch.arange(T, device=n_frames.device)
    valid = t[None, :] < n_frames[:, None]  # (B, T)
    if not window or window >= T:
        return valid[:, None, None, :]
    same = (t[:, None] // window) == (t[None, :] // window)  # (T, T)
    mask = valid[:, None, None, :] & same[None, None]  # (B, 1, T, T)
    # a padding frame whose window holds no valid frame attends itself (no all-masked row, no NaN)
    return mask | torch.eye(T, dtype=torch.bool, device=t.device)[None, None]


class ConvStem(nn.Module):
    """(B, 1, n_mels, T) -> (B, T/8, d_model): three 3x3 stride-2 Conv2d with GELU, flatten, project."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        c = cfg.stem_channels
        self.convs = nn.ModuleList([
            nn.Conv2d(1, c, 3, stride=2, padding=1),
            nn.Conv2d(c, c, 3, stride=2, padding=1),
            nn.Conv2d(c, c, 3, stride=2, padding=1),
        ])
        freq = cfg.n_mels
        for _ in range(3):
            freq = conv_out_len(freq)
        self.proj = nn.Linear(c * freq, cfg.d_model)

    def forward(self, mel: torch.Tensor, n_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = mel[:, None]  # (B, 1, F, T)
        for conv in self.convs:
            x = F.gelu(conv(x))  # (B, C, F/2, T/2)
            n_frames = (n_frames - 1) // 2 + 1
            # zero the frames past each sample's end, so a padded batch computes what one sample alone does
            valid = torch.arange(x.shape[-1], device=x.device)[None, :] < n_frames[:, None]  # (B, T')
            x = x * valid[:, None, None, :]
        B, C, Fq, T = x.shape
        x = x.permute(0, 3, 1, 2).reshape(B, T, C * Fq)  # (B, T', C*F')
        return self.proj(x), n_frames  # (B, T', D)


class EncoderAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)  # as in Whisper
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """attn_mask (B, 1, T or 1, T): True where a frame may attend a key frame; or (B, T) valid keys."""
        B, T, D = x.shape
        if attn_mask.dim() == 2:
            attn_mask = attn_mask[:, None, None, :]
        q, k, v = (p(x).view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, H, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


class EncoderLayer(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + fc2(gelu(fc1(ln(x))))."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model)
        self.self_attn = EncoderAttention(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.ffn)
        self.fc2 = nn.Linear(cfg.ffn, cfg.d_model)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), attn_mask)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class AudioEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        assert all(1 <= t <= cfg.n_layers for t in cfg.tap_layers), "tap layers are 1-based layer indexes"
        self.cfg = cfg
        self.logmel = LogMel(cfg.n_mels)
        self.stem = ConvStem(cfg)
        self.register_buffer("positions", sinusoids(cfg.max_frames, cfg.d_model), persistent=False)
        self.layers = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.n_layers)])
        self.ln_post = nn.LayerNorm(cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.output_dim, bias=False) if cfg.output_dim else nn.Identity()

    @property
    def output_dim(self) -> int:
        return self.cfg.output_dim or self.cfg.d_model

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor):
        """(B, S) waveforms, (B,) sample counts -> final (B, T, D_out), taps [(B, T, D)], frames (B,)."""
        mel, n_mel = self.logmel(wav, lengths)  # (B, n_mels, T_mel)
        x, n_frames = self.stem(mel.to(self.stem.proj.weight.dtype), n_mel)  # (B, T, D)
        T = x.shape[1]
        if T > self.cfg.max_frames:
            raise ValueError(f"{T} audio frames exceed max_frames={self.cfg.max_frames}")
        x = x + self.positions[:T].to(x.dtype)
        mask = attention_mask(n_frames, T, self.cfg.attention_window)  # (B, 1, T or 1, T)
        taps = []
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x, mask)
            if i in self.cfg.tap_layers:
                taps.append(x)
        return self.out_proj(self.ln_post(x)), taps, n_frames


def load_whisper_encoder(encoder: AudioEncoder, path: str | Path) -> list[str]:
    """Copy a Hugging Face Whisper checkpoint's encoder layers into `encoder` (mapping in the module
    docstring). Returns the names of this encoder's parameters that stayed as they were."""
    from safetensors.torch import load_file

    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .safetensors file under {path}")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    mapped = {}
    for name, tensor in state.items():
        for prefix in ("model.encoder.", "encoder."):
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        else:
            continue
        if name.startswith("layer_norm."):
            name = "ln_post." + name[len("layer_norm."):]
        if name.startswith(("layers.", "ln_post.")):
            layer = name.split(".")[1] if name.startswith("layers.") else None
            if layer is None or int(layer) < encoder.cfg.n_layers:
                mapped[name] = tensor
    missing, unexpected = encoder.load_state_dict(mapped, strict=False)
    if unexpected:
        raise ValueError(f"checkpoint tensors with no place in this encoder: {unexpected[:5]}")
    if not mapped:
        raise ValueError(f"no Whisper encoder tensors found in {path}")
    params = dict(encoder.named_parameters())
    return [m for m in missing if m in params]
