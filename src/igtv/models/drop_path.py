"""Stochastic depth (DropPath) for the residual branches of the VSS and decoder blocks.

The same rule as MONAI's ``monai.networks.layers.DropPath`` (itself from timm), written here because importing
MONAI costs ~3 s per process on a 2-core machine (measured: ``import monai.networks.layers`` 6.2 s against 2.9 s for
torch alone), which every ``igtv predict`` paid for this one class; ``tests/models/test_drop_path.py`` checks that
both give the same output under the same random state.
"""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``drop_prob`` while training; rescale the kept."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # one draw per sample, broadcast over the rest
    keep = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0:
        keep.div_(keep_prob)
    return x * keep


class DropPath(nn.Module):
    """Stochastic depth of a residual branch (Huang et al. 2016), as in MONAI and timm."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop path probability must lie in [0, 1], got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
