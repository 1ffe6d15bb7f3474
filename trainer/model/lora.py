"""LoRA on the decoder: W x + (alpha / r) * B A x, with A (r, in) and B (out, r), B starting at zero.

A small module of our own rather than peft: `LoRALinear` *is* an `nn.Linear` (its weight and bias keep
their names, `q_proj.weight`), with two extra parameters `lora_A` / `lora_B`, so checkpoints, the
released-layout export and Whisper/Qwen3 loading see the usual names, and FSDP/DDP wrap it like any layer.

    apply_lora(model.decoder, LoRAConfig(rank=16))   # every targeted Linear of the decoder layers
    merge_lora(model.decoder)                        # fold B A into W: plain Linear layers again (export)

With LoRA on, the decoder's own weights stay frozen; only `lora_A` / `lora_B` train (set_stage in
trainer/train.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoRAConfig:
    rank: int = 0  # 0: no LoRA
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS  # Linear names inside the decoder layers


class LoRALinear(nn.Linear):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device=base.weight.device, dtype=base.weight.dtype)
        self.weight = base.weight
        self.bias = base.bias
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device,
                                               dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device,
                                               dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=5 ** 0.5)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + self.scale * F.linear(
            F.linear(self.dropout(x), self.lora_A), self.lora_B)

    def merged(self) -> nn.Linear:
        """A plain Linear holding W + scale * B A."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.weight + self.scale * (self.lora_B @ self.lora_A).to(self.weight.dtype))
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out


def _replace(root: nn.Module, fn) -> int:
    n = 0
    for name, child in list(root.named_children()):
        new = fn(name, child)
        if new is not None:
            setattr(root, name, new)
            n += 1
        else:
            n += _replace(child, fn)
    return n


def apply_lora(decoder: nn.Module, cfg: LoRAConfig) -> int:
    """Wrap the targeted Linear layers of `decoder` (any module); returns how many were wrapped."""
    if cfg.rank <= 0:
        return 0

    def wrap(name: str, child: nn.Module):
        if name in cfg.targets and isinstance(child, nn.Linear) and not isinstance(child, LoRALinear):
            return LoRALinear(child, cfg.rank, cfg.alpha, cfg.dropout)
        return None

    n = _replace(decoder, wrap)
    if n == 0:
        raise ValueError(f"no Linear named {cfg.targets} to put LoRA on")
    return n


def merge_lora(module: nn.Module) -> int:
    """Fold every LoRALinear under `module` into a plain Linear; returns how many were merged."""
    return _replace(module, lambda name, child: child.merged() if isinstance(child, LoRALinear) else None)


def is_lora_param(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("lora_A", "lora_B")
