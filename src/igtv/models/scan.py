"""Selective scan (Mamba S6, Gu & Dao 2023), behind one function with interchangeable implementations.

    Delta = softplus(delta + delta_bias)
    h_t   = exp(Delta_t A) h_{t-1} + Delta_t B_t u_t
    y_t   = C_t h_t + D u_t

Implementations:

* ``"ref"``: readable sequential PyTorch reference. Iterates with ``unbind`` (indexing makes the backward ~100x
  slower) and processes the sequence in chunks so that at most ``chunk`` steps of the (B, D, L, N) state
  increments exist at once: stage 1 of CIPA-T at 512x512 would otherwise materialise ~0.8 GB per image.
* ``"numba"``: fused CPU kernels (forward and backward) with checkpointed states, used when numba is importable.
* ``"triton"``: our chunked parallel scan for CUDA tensors (:mod:`igtv.models.scan_triton`), used when Triton is
  importable (it ships with every CUDA build of PyTorch).
* ``"mamba_ssm"``: ``mamba_ssm``'s CUDA ``selective_scan_fn`` when importable (never required).

``impl="auto"`` picks triton (else mamba_ssm) for CUDA tensors, numba on CPU when available, else ref. The scan runs
in float32 whatever the autocast dtype (fp16 scans give NaN losses). Tests check every available path against
the reference (outputs and gradients).
"""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F

IMPLS = ("auto", "ref", "numba", "triton", "mamba_ssm")


@functools.cache
def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


@functools.cache
def triton_scan_available() -> bool:
    if not torch.cuda.is_available() or importlib.util.find_spec("triton") is None:
        return False
    try:
        import igtv.models.scan_triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def mamba_ssm_available() -> bool:
    if not torch.cuda.is_available() or importlib.util.find_spec("mamba_ssm") is None:
        return False
    try:  # mamba_ssm imports its CUDA extension at top level; a CPU-only build fails here
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except ImportError:
        return False
    return True


def available_impls() -> list[str]:
    out = ["ref"]
    if numba_available():
        out.append("numba")
    if triton_scan_available():
        out.append("triton")
    if mamba_ssm_available():
        out.append("mamba_ssm")
    return out


def _expand_groups(bc: torch.Tensor, d: int) -> torch.Tensor:
    """(B, G, N, L) -> (B, D, N, L) by repeating each group's B/C for its D/G channels (a view when G == 1)."""
    b, g, n, length = bc.shape
    if g == d:
        return bc
    return bc.unsqueeze(2).expand(b, g, d // g, n, length).reshape(b, d, n, length)


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


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    impl: str = "auto",
) -> torch.Tensor:
    """Selective scan with the chosen implementation; shapes as :func:`selective_scan_ref`. Returns (B, D, L)."""
    if impl not in IMPLS:
        raise ValueError(f"unknown selective-scan implementation {impl!r}; choose one of {IMPLS}")
    if impl == "auto":
        if u.is_cuda and triton_scan_available():
            impl = "triton"
        elif u.is_cuda and mamba_ssm_available():
            impl = "mamba_ssm"
        elif not u.is_cuda and numba_available():
            impl = "numba"
        else:
            impl = "ref"
    with torch.autocast(device_type=u.device.type, enabled=False):
        if impl == "ref":
            return selective_scan_ref(u, delta, A, B, C, D, delta_bias, delta_softplus)
        if impl == "numba":
            if not numba_available():
                raise RuntimeError("selective scan impl 'numba' requested but numba is not installed")
            from igtv.models.scan_numba import selective_scan_numba

            return selective_scan_numba(u, delta, A, B, C, D, delta_bias, delta_softplus)
        if impl == "triton":
            if not triton_scan_available():
                raise RuntimeError("selective scan impl 'triton' requested but Triton or a CUDA device is missing")
            from igtv.models.scan_triton import selective_scan_triton

            return selective_scan_triton(u, delta, A, B, C, D, delta_bias, delta_softplus)
        if not mamba_ssm_available():
            raise RuntimeError("selective scan impl 'mamba_ssm' requested but its CUDA kernel is not importable")
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        out = selective_scan_fn(
            u.float().contiguous(),
            delta.float().contiguous(),
            A.float().contiguous(),
            B.float().contiguous(),
            C.float().contiguous(),
            None if D is None else D.float(),
            z=None,
            delta_bias=None if delta_bias is None else delta_bias.float(),
            delta_softplus=delta_softplus,
        )
        return out.to(u.dtype)
