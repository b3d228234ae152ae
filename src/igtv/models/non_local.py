"""The Non-Local block (Wang et al., CVPR 2018), the paper's other Table II ablation alternative to SIM."""

from __future__ import annotations

import torch
from torch import nn


class NonLocalBlock(nn.Module):
    """Non-local block (Wang et al., CVPR 2018), embedded Gaussian, residual: X + W_z softmax(theta phi^T) g.

    Attention over all H*W positions is quadratic in memory; positions are subsampled by ``pool`` (max pooling of
    phi and g, as the original paper suggests) and the block pools its input to at most ``max_side`` per side
    before attending, upsampling the response back, so 512x512 inputs stay tractable. ``max_side`` 48 (64 before)
    made the quick Table II's Non-Local row train as fast as the others: at 64, a 96 px patch was attended at full
    resolution (9216 x 2304 weights per image) and the row took 25.6 of the run's 58.7 minutes.
    """

    def __init__(self, channels: int = 3, inter_channels: int | None = None, pool: int = 2, max_side: int = 48) -> None:
        super().__init__()
        inter = inter_channels or max(channels // 2, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.w_z = nn.Sequential(nn.Conv2d(inter, channels, 1, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.w_z[1].weight)  # start as identity, as the original paper recommends
        self.pool = pool
        self.max_side = max_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        scale = max(1, max(h, w) // self.max_side)
        xs = nn.functional.avg_pool2d(x, scale) if scale > 1 else x
        hs, ws = xs.shape[-2:]
        theta = self.theta(xs).flatten(2).transpose(1, 2)  # (B, HW, I)
        phi = nn.functional.max_pool2d(self.phi(xs), self.pool, ceil_mode=True).flatten(2)  # (B, I, HW')
        g = nn.functional.max_pool2d(self.g(xs), self.pool, ceil_mode=True).flatten(2).transpose(1, 2)  # (B, HW', I)
        attn = torch.softmax(theta @ phi, dim=-1)  # (B, HW, HW')
        y = (attn @ g).transpose(1, 2).reshape(b, -1, hs, ws)  # (B, I, hs, ws)
        z = self.w_z(y)
        if scale > 1:
            z = nn.functional.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
        return x + z
