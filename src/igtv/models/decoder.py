"""Sigma's Mamba decoder (Wan et al. 2024) as CIPA uses it: patch expansion, skip addition, CVSS blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from igtv.models.drop_path import DropPath
from igtv.models.ss2d import SS2D


class PatchExpand(nn.Module):
    """2x patch expansion: Linear(C -> 2C), pixel-shuffle to (2H, 2W, C/2), LayerNorm; on (B, H, W, C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        x = self.expand(x)  # (B, H, W, 2C)
        c = x.shape[-1] // 4
        x = x.view(b, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)
        return self.norm(x)


class UpsampleExpand(nn.Module):
    """Linear(C -> C/2), bilinear 2x upsampling, LayerNorm; on (B, H, W, C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim // 2, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x).permute(0, 3, 1, 2)  # (B, C/2, H, W)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.norm(x.permute(0, 2, 3, 1))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention on (B, H, W, C)."""

    def __init__(self, dim: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(dim // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(1, 2)))[:, None, None, :]


class CVSSBlock(nn.Module):
    """CVSS decoder block: x + DropPath(CA(SS2D(LN(x)))) then, if mlp_ratio > 0, x + MLP(LN(x)); (B, H, W, C)."""

    def __init__(
        self, dim: int, d_state: int = 4, mlp_ratio: float = 0.0, drop_path: float = 0.0, scan_impl: str = "auto"
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, d_state, scan_impl=scan_impl)
        self.ca = ChannelAttention(dim)
        self.drop_path = DropPath(drop_path)
        self.mlp = None
        if mlp_ratio > 0:
            hidden = int(dim * mlp_ratio)
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ca(self.op(self.norm(x))))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class MambaDecoder(nn.Module):
    """Sigma's Mamba decoder: expand the deepest map, add each skip, CVSS blocks, upsample; 1x1 conv to logits.

    stage 4 (C3) -PatchExpand-> C2, + skip 3, CVSS x d, UpsampleExpand -> C1, + skip 2, CVSS x d, UpsampleExpand
    -> C0, + skip 1, CVSS x d, LayerNorm, final 4x upsampling (two Linear + bilinear 2x), Conv1x1 -> classes.
    """

    def __init__(
        self,
        dims: Sequence[int] = (96, 192, 384, 768),
        depths: Sequence[int] = (2, 2, 2),
        d_state: int = 4,
        mlp_ratio: float = 0.0,
        num_classes: int = 1,
        drop_path_rate: float = 0.0,
        scan_impl: str = "auto",
    ) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.expand = PatchExpand(dims[3])
        self.stages = nn.ModuleList()
        self.ups = nn.ModuleList()
        start = 0
        for i, level in enumerate((2, 1, 0)):
            dim = dims[level]
            self.stages.append(
                nn.Sequential(
                    *[CVSSBlock(dim, d_state, mlp_ratio, rates[start + j], scan_impl) for j in range(depths[i])]
                )
            )
            start += depths[i]
            self.ups.append(UpsampleExpand(dim) if level > 0 else nn.Identity())
        self.norm = nn.LayerNorm(dims[0])
        self.final1 = nn.Linear(dims[0], dims[0], bias=False)
        self.final2 = nn.Linear(dims[0], dims[0], bias=False)
        self.final_norm = nn.LayerNorm(dims[0])
        self.head = nn.Conv2d(dims[0], num_classes, 1, bias=False)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        y = self.expand(feats[3].permute(0, 2, 3, 1))  # (B, H/16, W/16, C2)
        for stage, up, level in zip(self.stages, self.ups, (2, 1, 0), strict=True):
            y = up(stage(y + feats[level].permute(0, 2, 3, 1)))
        y = self.norm(y)  # (B, H/4, W/4, C0)
        y = F.interpolate(self.final1(y).permute(0, 3, 1, 2), scale_factor=2, mode="bilinear", align_corners=False)
        y = F.interpolate(
            self.final2(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), scale_factor=2, mode="bilinear", align_corners=False
        )
        y = self.final_norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C0, H, W)
        return self.head(y)
