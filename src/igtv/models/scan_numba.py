"""Fused CPU selective scan with numba: forward and backward kernels, states checkpointed every CHUNK steps.

Imported only when numba is installed (``pip install igtv[fast]``); :mod:`igtv.models.scan` falls back to the
PyTorch reference otherwise. Parallel over (batch, group) pairs so that the group-shared B/C gradients have a
single writer; the N states of a channel live in a small local array (vectorised by LLVM).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange

from igtv.models.scan import fused_kernel_inputs

CHUNK = 64


@numba.njit(parallel=True, cache=True)
def _forward(u, z, A, Bm, Cm, Dv, ckpt):  # pragma: no cover - compiled
    bsz, dim, length = u.shape
    groups = Bm.shape[1]
    n_state = A.shape[1]
    per = dim // groups
    y = np.empty_like(u)
    for bg in prange(bsz * groups):
        b = bg // groups
        g = bg % groups
        h = np.zeros(n_state, dtype=np.float32)
        for d in range(g * per, (g + 1) * per):
            h[:] = 0.0
            for t in range(length):
                if t % 64 == 0:
                    ckpt[b, d, t // 64, :] = h
                zt = z[b, d, t]
                dt = zt if zt > 20.0 else np.log1p(np.exp(zt))
                ut = u[b, d, t]
                acc = 0.0
                for n in range(n_state):
                    h[n] = np.exp(dt * A[d, n]) * h[n] + dt * Bm[b, g, n, t] * ut
                    acc += Cm[b, g, n, t] * h[n]
                y[b, d, t] = acc + Dv[d] * ut
    return y


@numba.njit(parallel=True, cache=True)
def _backward(u, z, A, Bm, Cm, Dv, ckpt, gy):  # pragma: no cover - compiled
    bsz, dim, length = u.shape
    groups = Bm.shape[1]
    n_state = A.shape[1]
    per = dim // groups
    gu = np.zeros_like(u)
    gz = np.zeros_like(u)
    gB = np.zeros_like(Bm)
    gC = np.zeros_like(Cm)
    gA = np.zeros((bsz, dim, n_state), dtype=np.float32)
    gD = np.zeros((bsz, dim), dtype=np.float32)
    n_chunks = (length + 63) // 64
    for bg in prange(bsz * groups):
        b = bg // groups
        g = bg % groups
        hs = np.zeros((65, n_state), dtype=np.float32)
        gh = np.zeros(n_state, dtype=np.float32)
        for d in range(g * per, (g + 1) * per):
            gh[:] = 0.0
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * 64
                t1 = min(t0 + 64, length)
                hs[0, :] = ckpt[b, d, c, :]
                for t in range(t0, t1):  # recompute the chunk's states
                    zt = z[b, d, t]
                    dt = zt if zt > 20.0 else np.log1p(np.exp(zt))
                    for n in range(n_state):
                        hs[t - t0 + 1, n] = np.exp(dt * A[d, n]) * hs[t - t0, n] + dt * Bm[b, g, n, t] * u[b, d, t]
                for t in range(t1 - 1, t0 - 1, -1):
                    zt = z[b, d, t]
                    dt = zt if zt > 20.0 else np.log1p(np.exp(zt))
                    ut = u[b, d, t]
                    gyt = gy[b, d, t]
                    gD[b, d] += gyt * ut
                    gut = gyt * Dv[d]
                    gdt = 0.0
                    k = t - t0
                    for n in range(n_state):
                        a = np.exp(dt * A[d, n])
                        h_prev = hs[k, n]
                        gh[n] += gyt * Cm[b, g, n, t]
                        gC[b, g, n, t] += gyt * hs[k + 1, n]
                        gdt += gh[n] * (A[d, n] * a * h_prev + Bm[b, g, n, t] * ut)
                        gA[b, d, n] += gh[n] * dt * a * h_prev
                        gB[b, g, n, t] += gh[n] * dt * ut
                        gut += gh[n] * dt * Bm[b, g, n, t]
                        gh[n] *= a
                    gu[b, d, t] = gut
                    gz[b, d, t] = gdt / (1.0 + np.exp(-zt))  # d softplus / dz = sigmoid(z)
    return gu, gz, gA.sum(axis=0), gB, gC, gD.sum(axis=0)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().contiguous().cpu().numpy()


class _NumbaScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, z, A, B, C, D):  # type: ignore[override]
        bsz, dim, length = u.shape
        ckpt = np.zeros((bsz, dim, (length + CHUNK - 1) // CHUNK, A.shape[1]), dtype=np.float32)
        arrays = [_np(t) for t in (u, z, A, B, C, D)]
        y = _forward(*arrays, ckpt)
        ctx.save_for_backward(u, z, A, B, C, D)
        ctx.ckpt = ckpt
        return torch.from_numpy(y).to(u.device)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        u, z, A, B, C, D = ctx.saved_tensors
        grads = _backward(*[_np(t) for t in (u, z, A, B, C, D)], ctx.ckpt, _np(gy))
        return tuple(torch.from_numpy(g).to(u.device) for g in grads)


def selective_scan_numba(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """Same contract as :func:`igtv.models.scan.selective_scan_ref`; differentiable."""
    args = fused_kernel_inputs("numba", u, delta, A, B, C, D, delta_bias, delta_softplus)
    return _NumbaScan.apply(*args).to(u.dtype)
