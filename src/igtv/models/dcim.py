"""CIPA's dynamic cross-modality interaction module (DCIM), Mei et al., CVPR 2025, Sec. 3.3."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from igtv.models.ss2d import SS2D


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)  # BN follows: a bias would be inert
    return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DCIM(nn.Module):
    """DCIM (CIPA Sec. 3.3): PET region tokens guide SS2D over CT local windows.

    CT local branch: conv3x3 C -> C/4 -> C (BN + ReLU), split into ``window x window`` windows, LayerNorm over
    each window's tokens, SS2D inside every window (residual). PET region branch: conv stack down to an
    (H/window, W/window) grid, LayerNorm, SS2D over that grid (residual). Each PET region token is added to the
    window x window CT local tokens it covers. Maps not divisible by the window (deep stages of small inputs) are
    zero-padded to whole windows and cropped back. Returns (B, C, H, W); CIPA's stage output is CT + PET + DCIM.
    """

    def __init__(self, dim: int, window: int = 4, d_state: int = 16, scan_impl: str = "auto") -> None:
        super().__init__()
        if window != 4:
            raise ValueError("DCIM's PET region branch downsamples by 4 (two stride-2 convs); window must be 4")
        self.window = window
        q, e, s = max(dim // 4, 1), max(dim // 8, 1), max(dim // 16, 1)
        self.local_convs = nn.Sequential(*_conv_bn_relu(dim, q), *_conv_bn_relu(q, dim))
        self.region_convs = nn.Sequential(
            *_conv_bn_relu(dim, s), *_conv_bn_relu(s, e, 2), *_conv_bn_relu(e, q, 2), *_conv_bn_relu(q, dim)
        )
        self.local_norm = nn.LayerNorm(window * window * dim)
        self.local_ssm = SS2D(dim, d_state, scan_impl=scan_impl)
        self.region_norm = nn.LayerNorm(dim)
        self.region_ssm = SS2D(dim, d_state, scan_impl=scan_impl)

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> torch.Tensor:
        k = self.window
        h0, w0 = ct.shape[-2:]
        pad_h, pad_w = (-h0) % k, (-w0) % k  # deep stages of small inputs: zero-pad to whole windows, crop after
        if pad_h or pad_w:
            ct, pet = F.pad(ct, (0, pad_w, 0, pad_h)), F.pad(pet, (0, pad_w, 0, pad_h))
        b, c, h, w = ct.shape
        hg, wg = h // k, w // k
        region = self.region_convs(pet).permute(0, 2, 3, 1)  # (B, hg, wg, C)
        region = region + self.region_ssm(self.region_norm(region))
        local = self.local_convs(ct)  # (B, C, H, W)
        local = local.view(b, c, hg, k, wg, k).permute(0, 2, 4, 3, 5, 1)  # (B, hg, wg, k, k, C)
        windows = local.reshape(b * hg * wg, k * k * c)  # (B*N, k*k*C)
        windows = self.local_norm(windows).view(b * hg * wg, k, k, c)
        local = local.reshape(b * hg * wg, k, k, c) + self.local_ssm(windows)  # (B*N, k, k, C)
        local = local.view(b, hg, wg, k, k, c) + region[:, :, :, None, None, :]  # region token to its window
        out = local.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)  # (B, C, H, W)
        return out[:, :, :h0, :w0]
