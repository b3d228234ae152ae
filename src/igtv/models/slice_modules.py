"""Modules that act on a modality's stack of slices: the paper's Slice Interaction Module and the ablation
alternatives CBAM and Non-Local."""

from __future__ import annotations

import torch
from torch import nn


class SIMChannel(nn.Module):
    """SIM channel attention branch, Eqs. 1-2: A_ch = sigmoid(W2 ReLU(W1 GAP(X))), X_ca = X * A_ch (r = 2)."""

    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.w1 = nn.Linear(channels, hidden, bias=False)  # W1 in R^{C/r x C}
        self.w2 = nn.Linear(hidden, channels, bias=False)  # W2 in R^{C x C/r}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.w2(torch.relu(self.w1(x.mean(dim=(2, 3))))))  # (B, C)
        return x * a[:, :, None, None]


class SIMSpatial(nn.Module):
    """SIM spatial attention branch, Eqs. 3-4: A_sp = sigmoid(BN(Conv7x7(X) -> 1 channel)), X_sa = X * A_sp."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.bn(self.conv(x)))  # (B, 1, H, W) broadcast over slices


class SIMRelation(nn.Module):
    """SIM slice relation branch, Eq. 5: X_rel = DWConv3x3(ReLU(BN(DWConv1x1(X))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dw1 = nn.Conv2d(channels, channels, 1, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.dw3 = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw3(torch.relu(self.bn(self.dw1(x))))


class SliceInteraction(nn.Module):
    """Slice Interaction Module (SIM), Eqs. 1-6: X + alpha X_ca + beta X_sa + gamma X_rel.

    Applied to one modality's stack X in R^{B x 3 x H x W} of slices t-1, t, t+1 (or to the feature maps after
    the first encoder layer, where the placement says so). alpha, beta, gamma = 0.3, 0.3, 0.4 as in the paper.
    """

    def __init__(
        self, channels: int = 3, reduction: int = 2, alpha: float = 0.3, beta: float = 0.3, gamma: float = 0.4
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.channel = SIMChannel(channels, reduction)
        self.spatial = SIMSpatial(channels)
        self.relation = SIMRelation(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.channel(x) + self.beta * self.spatial(x) + self.gamma * self.relation(x)


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


def make_slice_module(kind: str, channels: int, sim_weights: tuple[float, float, float] = (0.3, 0.3, 0.4)) -> nn.Module:
    """Build the slice module of an ablation row: "none", "sim", "cbam" or "nonlocal"."""
    if kind == "none":
        return nn.Identity()
    if kind == "sim":
        return SliceInteraction(channels, 2, *sim_weights)
    if kind == "cbam":
        return CBAM(channels)
    if kind == "nonlocal":
        return NonLocalBlock(channels)
    raise ValueError(f"unknown slice module {kind!r}; choose none, sim, cbam or nonlocal")
