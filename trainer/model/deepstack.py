"""DeepStack cross-layer injection.

Hidden states captured after K encoder layers (the encoder's `tap_layers`, e.g. 8, 16, 24 of 32) each get
their own SwiGLU projection into the decoder's hidden size. The k-th projected state is *added* to the
decoder's hidden states at the audio-token positions, at the output of decoder layer k (k = 0..K-1), so
the early decoder layers see low-, mid- and high-level acoustics in turn. The deepest encoder output
(through the adapter) is the input embedding itself. K = 0 gives the plain model.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from trainer.model.adapter import SwiGLUAdapter


class DeepStack(nn.Module):
    def __init__(self, n_taps: int, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.mergers = nn.ModuleList([SwiGLUAdapter(in_dim, hidden, out_dim) for _ in range(n_taps)])

    def forward(self, taps: list[torch.Tensor]) -> list[torch.Tensor]:
        """K tensors (N_audio, D_enc) -> K tensors (N_audio, C), one per injected decoder layer."""
        assert len(taps) == len(self.mergers)
        return [merge(t) for merge, t in zip(self.mergers, taps, strict=True)]


def inject(hidden: torch.Tensor, audio_mask: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Add `features` (N_audio, C) to `hidden` (B, T, C) at the True positions of `audio_mask` (B, T),
    in row-major order. Out of place: text positions are returned untouched."""
    return hidden.index_put((audio_mask,), features.to(hidden.dtype), accumulate=True)
