"""Argument checks and layout shared by the fused kernels."""

from __future__ import annotations

import torch


def fused_kernel_inputs(
    name: str,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, ...]:
    """What the fused Triton kernel takes: contiguous float32 (u, z = delta + bias, A, B, C, D)."""
    if not delta_softplus:
        raise NotImplementedError(f"the {name} scan implements delta_softplus=True (what every SS2D uses)")
    if u.shape[1] % B.shape[1]:
        raise ValueError(f"channels ({u.shape[1]}) must be a multiple of B/C groups ({B.shape[1]})")
    z = delta.float()
    if delta_bias is not None:
        z = z + delta_bias.float()[None, :, None]
    if D is None:
        D = torch.zeros(u.shape[1], device=u.device)
    return tuple(t.float().contiguous() for t in (u, z, A, B, C, D))
