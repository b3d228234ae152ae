"""Selective scan (Mamba S6, Gu & Dao 2023), behind one function with interchangeable implementations.

    Delta = softplus(delta + delta_bias)
    h_t   = exp(Delta_t A) h_{t-1} + Delta_t B_t u_t
    y_t   = C_t h_t + D u_t

Implementations:

* ``"ref"``: readable sequential PyTorch reference. Iterates with ``unbind`` (indexing makes the backward ~100x
  slower) and processes the sequence in chunks so that at most ``chunk`` steps of the (B, D, L, N) state
  increments exist at once: stage 1 of CIPA-T at 512x512 would otherwise materialise ~0.8 GB per image.
* ``"numba"``: fused CPU kernels (forward and backward) with checkpointed states, used when numba is importable.
* ``"triton"``: our chunked parallel scan for CUDA tensors (:mod:`igtv.models.scan.triton_gpu`), used when Triton is
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

from igtv.models.scan.reference import selective_scan_ref

IMPLS = ("auto", "ref", "numba", "triton", "mamba_ssm")


@functools.cache
def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


@functools.cache
def triton_scan_available() -> bool:
    if not torch.cuda.is_available() or importlib.util.find_spec("triton") is None:
        return False
    try:
        import igtv.models.scan.triton_gpu  # noqa: F401
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
            from igtv.models.scan.numba_cpu import selective_scan_numba

            return selective_scan_numba(u, delta, A, B, C, D, delta_bias, delta_softplus)
        if impl == "triton":
            if not triton_scan_available():
                raise RuntimeError("selective scan impl 'triton' requested but Triton or a CUDA device is missing")
            from igtv.models.scan.triton_gpu import selective_scan_triton

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
