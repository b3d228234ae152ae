"""The VSS block of VMamba v0: x + DropPath(SS2D(LayerNorm(x))), on (B, H, W, C)."""

from __future__ import annotations

import torch
from torch import nn

from igtv.models.drop_path import DropPath
from igtv.models.ss2d import SS2D


class VSSBlock(nn.Module):
    """VSS block of VMamba v0 (no MLP): x + DropPath(SS2D(LayerNorm(x))), on (B, H, W, C)."""

    def __init__(
        self, dim: int, d_state: int = 16, ssm_ratio: float = 2.0, drop_path: float = 0.0, scan_impl: str = "auto"
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, d_state, ssm_ratio, scan_impl=scan_impl)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.op(self.norm(x)))
