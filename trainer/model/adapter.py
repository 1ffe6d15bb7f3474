"""The adapter: a gated (SwiGLU) MLP that projects encoder frames into the decoder's hidden size.

    y = down(silu(gate(x)) * up(x))        no biases, as in the released model

The same module, one per tapped encoder layer, is DeepStack's per-layer merger (deepstack.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SwiGLUAdapter(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.gate = nn.Linear(in_dim, hidden, bias=False)
        self.up = nn.Linear(in_dim, hidden, bias=False)
        self.down = nn.Linear(hidden, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in_dim) -> (N, out_dim)
        return self.down(F.silu(self.gate(x)) * self.up(x))
