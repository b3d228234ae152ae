"""VMamba v0 encoder (Liu et al. 2024) as CIPA uses it: patch embedding, 4 stages of VSS blocks, patch merging."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from igtv.models.vss import VSSBlock


class PatchEmbed(nn.Module):
    """Non-overlapping 4x4 patch embedding: Conv2d(in, C, 4, stride 4) + LayerNorm.

    (B, in, H, W) -> (B, H/4, W/4, C).
    """

    def __init__(self, in_chans: int = 3, dim: int = 96, patch: int = 4) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """2x2 patch merging: concat neighbours (4C) -> LayerNorm -> Linear(4C, 2C); (B, H, W, C) -> (B, H/2, W/2, 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class VMambaEncoder(nn.Module):
    """VMamba encoder: returns the four stage outputs (B, C_i, H/4/2^i, W/4/2^i), each LayerNorm-ed.

    ``pre_stage`` (optional) is applied to the patch embedding before stage 1, in (B, C, H, W) layout: the hook
    where a slice-interaction module placed "after the first encoder layer" sits.
    """

    def __init__(
        self,
        in_chans: int = 3,
        dims: Sequence[int] = (96, 192, 384, 768),
        depths: Sequence[int] = (2, 2, 9, 2),
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        drop_path_rate: float = 0.0,
        scan_impl: str = "auto",
    ) -> None:
        super().__init__()
        self.dims = tuple(dims)
        self.patch_embed = PatchEmbed(in_chans, dims[0])
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        self.out_norms = nn.ModuleList()
        start = 0
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            self.stages.append(
                nn.Sequential(*[VSSBlock(dim, d_state, ssm_ratio, rates[start + j], scan_impl) for j in range(depth)])
            )
            start += depth
            self.out_norms.append(nn.LayerNorm(dim))
            self.downsamples.append(PatchMerging(dim) if i < len(dims) - 1 else nn.Identity())

    def forward(self, x: torch.Tensor, pre_stage: nn.Module | None = None) -> list[torch.Tensor]:
        x = self.patch_embed(x)  # (B, H/4, W/4, C0)
        if pre_stage is not None:
            x = pre_stage(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        outs = []
        for stage, norm, down in zip(self.stages, self.out_norms, self.downsamples, strict=True):
            x = stage(x)
            outs.append(norm(x).permute(0, 3, 1, 2).contiguous())  # (B, C, H, W)
            x = down(x)
        return outs
