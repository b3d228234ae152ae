"""The readable sequential PyTorch selective scan: the reference every fast path is tested against."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _expand_groups(bc: torch.Tensor, d: int) -> torch.Tensor:
    """(B, G, N, L) -> (B, D, N, L) by repeating each group's B/C for its D/G channels (a view when G == 1)."""
    b, g, n, length = bc.shape
    if g == d:
        return bc
    return bc.unsqueeze(2).expand(b, g, d // g, n, length).reshape(b, d, n, length)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    chunk: int = 256,
) -> torch.Tensor:
    """Sequential reference. u, delta: (B, D, L); A: (D, N); B, C: (B, G, N, L) with G dividing D; D: (D,)."""
    dtype = u.dtype
    u, delta, A, B, C = (t.float() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    bsz, dim, length = u.shape
    Bx = _expand_groups(B, dim)  # (B, D, N, L)
    Cx = _expand_groups(C, dim)
    h = u.new_zeros(bsz, dim, A.shape[1])
    ys = []
    for start in range(0, length, chunk):
        sl = slice(start, min(start + chunk, length))
        dt = delta[:, :, sl]  # (B, D, T)
        dA = torch.exp(dt.unsqueeze(-1) * A[None, :, None, :])  # (B, D, T, N)
        dBu = (dt * u[:, :, sl]).unsqueeze(-1) * Bx[:, :, :, sl].transpose(2, 3)  # (B, D, T, N)
        c = Cx[:, :, :, sl].transpose(2, 3)  # (B, D, T, N)
        for a_t, b_t, c_t in zip(dA.unbind(2), dBu.unbind(2), c.unbind(2), strict=True):
            h = a_t * h + b_t
            ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=-1)  # (B, D, L)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    return y.to(dtype)
