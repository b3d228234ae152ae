"""CBAM (Woo et al., ECCV 2018), the paper's Table II ablation alternative to SIM."""

from __future__ import annotations

import torch
from torch import nn


class CBAM(nn.Module):
    """CBAM (Woo et al., ECCV 2018): channel attention (avg + max pooled MLP) then spatial attention (7x7 conv over
    channel avg/max), applied as X * A; the paper's Table II ablation alternative to SIM."""

    def __init__(self, channels: int = 3, reduction: int = 2, kernel: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        x = x * torch.sigmoid(avg + mx)
        s = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(s))
