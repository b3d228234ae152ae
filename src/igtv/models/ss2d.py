"""SS2D, VMamba's 2D selective scan (Liu et al. 2024), and SS1D, its 1D form over a token sequence.

The cross-scan unrolls a (B, D, H, W) map into four scan orders (rows, columns, both reversed); each order has its
own x_proj / dt_proj / A / D (Mamba's initialisation); the cross-merge sums the four outputs back in row-major
order. On CPU at inference, the fused numba kernel reads the four orders through index maps instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from igtv.models.scan import numba_available, selective_scan


class _SSMParams(nn.Module):
    """x_proj / dt_proj / A_log / D for K scan orders (Mamba's initialisation)."""

    def __init__(
        self, d_inner: int, d_state: int, dt_rank: int, k: int, dt_min: float = 1e-3, dt_max: float = 0.1
    ) -> None:
        super().__init__()
        self.k, self.d_inner, self.d_state, self.dt_rank = k, d_inner, d_state, dt_rank
        bound = d_inner**-0.5
        self.x_proj_weight = nn.Parameter(torch.empty(k, dt_rank + 2 * d_state, d_inner).uniform_(-bound, bound))
        std = dt_rank**-0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, dt_rank).uniform_(-std, std))
        dt = torch.exp(torch.rand(k, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(k * d_inner, 1)
        self.A_logs = nn.Parameter(torch.log(a))  # (K * D, N)
        self.Ds = nn.Parameter(torch.ones(k * d_inner))
        for p in (self.dt_projs_bias, self.A_logs, self.Ds):
            p._no_weight_decay = True  # igtv.training.optim: no weight decay on the scan's state (VMamba's marking)

    def scan(self, xs: torch.Tensor, impl: str) -> torch.Tensor:
        """xs: (B, K, D, L) -> ys: (B, K, D, L)."""
        b, k, d, length = xs.shape
        x_dbl = torch.einsum("bkdl,kcd->bklc", xs, self.x_proj_weight)  # (B, K, L, R + 2N)
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=3)
        dts = torch.einsum("bklr,kdr->bkdl", dts, self.dt_projs_weight)  # (B, K, D, L)
        ys = selective_scan(
            xs.reshape(b, k * d, length),
            dts.reshape(b, k * d, length),
            -torch.exp(self.A_logs.float()),
            bs.contiguous().transpose(2, 3),  # (B, K, N, L) view of (B, K, L, N): the numba kernel's layout
            cs.contiguous().transpose(2, 3),
            self.Ds,
            self.dt_projs_bias.reshape(-1),
            True,
            impl=impl,
        )
        return ys.view(b, k, d, length)

    def scan_merged(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x: (B, D, H*W) row-major -> the K = 4 scan orders of SS2D scanned and summed, (B, D, H*W), by the fused
        numba inference kernel: no cross-scan copies, each order read through its index map. No gradients."""
        from igtv.models.scan.numba_cpu import ss2d_scan_merged

        x_dbl = torch.einsum("bdl,kcd->bklc", x, self.x_proj_weight)  # (B, K, L, R + 2N) by position
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=3)
        dts = torch.einsum("bklr,kdr->bkdl", dts, self.dt_projs_weight)  # (B, K, D, L)
        A = -torch.exp(self.A_logs.float())
        return ss2d_scan_merged(x, dts, self.dt_projs_bias.reshape(-1), A, bs, cs, self.Ds, h, w).to(x.dtype)


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) -> (B, 4, D, H*W): row-major, column-major, and both reversed."""
    b, d, h, w = x.shape
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)


def cross_merge(ys: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 4, D, H*W) -> (B, D, H*W) in row-major order: the four orders summed."""
    b, _, d, length = ys.shape
    rows = ys[:, 0] + ys[:, 2].flip(-1)
    cols = ys[:, 1] + ys[:, 3].flip(-1)
    cols = cols.view(b, d, w, h).transpose(2, 3).reshape(b, d, length)
    return rows + cols


class SS2D(nn.Module):
    """SS2D: VMamba's 2D selective scan over four scan orders (Liu et al. 2024; CIPA's encoder and decoder).

    in_proj -> depthwise 3x3 conv -> SiLU -> selective scan along 4 orders (own x_proj/dt_proj/A/D each) ->
    sum -> LayerNorm -> gate by SiLU(z) -> out_proj. Input and output (B, H, W, C).
    """

    def __init__(
        self, d_model: int, d_state: int = 16, ssm_ratio: float = 2.0, d_conv: int = 3, scan_impl: str = "auto"
    ) -> None:
        super().__init__()
        self.d_inner = int(ssm_ratio * d_model)
        self.scan_impl = scan_impl
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv2d = nn.Conv2d(self.d_inner, self.d_inner, d_conv, padding=(d_conv - 1) // 2, groups=self.d_inner)
        self.ssm = _SSMParams(self.d_inner, d_state, math.ceil(d_model / 16), k=4)
        self.out_norm = nn.LayerNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        xz = self.in_proj(x)
        x, z = xz.chunk(2, dim=-1)  # (B, H, W, D) each
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))  # (B, D, H, W)
        if self._fused_inference(x):
            y = self.ssm.scan_merged(x.flatten(2), h, w)  # (B, D, L)
        else:
            y = cross_merge(self.ssm.scan(cross_scan(x), self.scan_impl), h, w)  # (B, 4, D, L) -> (B, D, L)
        y = y.transpose(1, 2).reshape(b, h, w, self.d_inner)  # (B, H, W, D)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)

    def _fused_inference(self, x: torch.Tensor) -> bool:
        """The numba kernel that scans the four orders in place serves CPU inference (no autograd graph)."""
        return (
            self.scan_impl in ("auto", "numba")
            and not x.is_cuda
            and not (torch.is_grad_enabled() and x.requires_grad)
            and numba_available()
        )


class SS1D(nn.Module):
    """1D selective-scan block (Mamba) over a token sequence (B, L, C) -> (B, L, C), used by the CRM."""

    def __init__(self, d_model: int, d_state: int = 16, ssm_ratio: float = 2.0, scan_impl: str = "auto") -> None:
        super().__init__()
        self.d_inner = int(ssm_ratio * d_model)
        self.scan_impl = scan_impl
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, 3, padding=1, groups=self.d_inner)
        self.ssm = _SSMParams(self.d_inner, d_state, math.ceil(d_model / 16), k=1)
        self.out_norm = nn.LayerNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, D)
        x = F.silu(self.conv1d(x.transpose(1, 2)))  # (B, D, L)
        y = self.ssm.scan(x.unsqueeze(1), self.scan_impl)[:, 0].transpose(1, 2)  # (B, L, D)
        return self.out_proj(self.out_norm(y) * F.silu(z))


def set_scan_impl(module: nn.Module, impl: str) -> None:
    """Switch every SS2D/SS1D inside ``module`` to another selective-scan implementation."""
    for m in module.modules():
        if isinstance(m, (SS2D, SS1D)):
            m.scan_impl = impl
