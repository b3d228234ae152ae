"""Fused CPU selective scan with numba: forward and backward kernels, states checkpointed every CHUNK steps.

Imported only when numba is installed (``pip install igtv[fast]``); :mod:`igtv.models.scan` falls back to the
PyTorch reference otherwise. Layout and work split, chosen by measurement on a 2-core x86_64 CPU:

- B and C are read as (batch, group, L, N), so the N states of one step are contiguous (the caller's
  (batch, group, N, L) made every state a cache miss);
- softplus (and, in the backward, its derivative) is computed inside the kernels, a chunk at a time, with a
  vectorisable exp and log1p;
- the forward runs in parallel over (batch, group, block of DBLOCK channels), and walks each chunk of CHUNK steps
  through every channel of its block before moving on, so that the chunk's B/C rows are read from L1 once per
  block rather than from memory once per channel;
- the backward runs in parallel over (batch, group), so the group-shared B/C gradients have one writer, and is
  chunk-major in the same way: for each chunk (last first), every channel of the group recomputes that chunk's
  states from its checkpoint, keeping the chunk's exp(Delta A) and Delta, so every exp is evaluated once per pass;
- without gradients (inference) no checkpoints are written;
- every kernel is compiled once per state count N of the registered models (4, 8, 16) with N a constant, so the
  loops over the states are unrolled (:func:`kernels`), and generic for any other N;
- for SS2D at inference, :func:`ss2d_scan_merged` scans the four orders (rows, columns, both reversed) of the
  row-major input in one kernel through index maps and sums them in place, so the cross-scan's four stacked
  copies, its flips and the cross-merge disappear (3.3-3.6 s -> 2.8-3.0 s for a 512 x 512 ``cipa_25d_sim_t``
  forward on 2 cores). Computing dt_proj inside the kernel as well was tried and was slower (3.8 s): R scalar
  multiply-adds per step and channel cost more than torch's batched matmul.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import torch
from numba import prange

CHUNK = 64
DBLOCK = 8
# fastmath without "reassoc": LLVM may then not reorder the sums over the N states (y = C h, and the backward's
# dL/du and dL/dDelta). With reassoc, a kernel compiled in this process and the same kernel loaded from numba's
# on-disk cache summed in different orders (gradients differed in the last bits, and training runs diverged
# from there; issue 19). Measured no slower: fwd 49 vs 54 ms, bwd 133 vs 147 ms at (1, 384, 4096, 16).
FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}


@numba.njit(fastmath=FASTMATH, inline="always")
def _vexp(x, out, ki, m):  # pragma: no cover - compiled
    """out[:m] = exp(x[:m]) for x <= 88, vectorisable (numba's scalar exp is not): Cody-Waite reduction to
    r in [-ln2/2, ln2/2], Cephes' degree-6 polynomial for exp(r), and 2^k built in the float's exponent bits
    through an int32 view. Relative error <= 2e-7; below -87 it returns ~1e-38 instead of a denormal."""
    fv = ki.view(np.float32)
    for i in range(m):
        v = min(max(x[i], np.float32(-87.0)), np.float32(88.0))
        kf = np.floor(v * np.float32(1.4426950408889634) + np.float32(0.5))
        r = v - kf * np.float32(0.693359375)
        r = r - kf * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        out[i] = p * r * r + r + np.float32(1.0)
        ki[i] = (np.int32(kf) + np.int32(127)) << 23
    for i in range(m):
        out[i] = out[i] * fv[i]


@numba.njit(fastmath=FASTMATH, inline="always")
def _vsoftplus(z, out, sig, e, ki, m):  # pragma: no cover - compiled
    """out[:m] = softplus(z[:m]) = max(z, 0) + log1p(exp(-|z|)) and sig[:m] = sigmoid(z[:m]), vectorisable.

    log1p(x) for x in (0, 1] is 2 atanh(s) with s = x / (2 + x) <= 1/3, summed to s^13 (relative error < 1e-7
    however small x is, which a log(1 + x) would not give)."""
    for i in range(m):
        e[i] = -abs(z[i])
    _vexp(e, e, ki, m)
    for i in range(m):
        x = e[i]
        s = x / (np.float32(2.0) + x)
        s2 = s * s
        p = np.float32(1.0 / 13.0)
        p = p * s2 + np.float32(1.0 / 11.0)
        p = p * s2 + np.float32(1.0 / 9.0)
        p = p * s2 + np.float32(1.0 / 7.0)
        p = p * s2 + np.float32(1.0 / 5.0)
        p = p * s2 + np.float32(1.0 / 3.0)
        p = p * s2 + np.float32(1.0)
        zi = z[i]
        out[i] = max(zi, np.float32(0.0)) + np.float32(2.0) * s * p
        r = np.float32(1.0) / (np.float32(1.0) + x)
        sig[i] = r if zi >= np.float32(0.0) else x * r


@numba.njit(cache=True, error_model="numpy")
def _vexp_array(x):  # pragma: no cover - compiled
    """exp of a float32 vector with :func:`_vexp` (for tests)."""
    out = np.empty_like(x)
    ki = np.empty(x.shape[0], dtype=np.int32)
    _vexp(x, out, ki, x.shape[0])
    return out


@numba.njit(cache=True, error_model="numpy")
def _vsoftplus_array(z):  # pragma: no cover - compiled
    """(softplus(z), sigmoid(z)) of a float32 vector with :func:`_vsoftplus` (for tests)."""
    out, sig, e = np.empty_like(z), np.empty_like(z), np.empty_like(z)
    ki = np.empty(z.shape[0], dtype=np.int32)
    _vsoftplus(z, out, sig, e, ki, z.shape[0])
    return out, sig


@numba.njit(inline="always")
def _decay(A, d, m, dts, sig, xs, ea, ki, n_state):  # pragma: no cover - compiled
    """From z = delta + bias in sig[:m]: Delta = softplus(z) (dts), sigmoid(z) (sig, in place) and exp(Delta A[d])
    (ea, flat (t, n))."""
    _vsoftplus(sig, dts, sig, xs, ki, m)
    for k in range(m):
        dt = dts[k]
        for n in range(n_state):
            xs[k * n_state + n] = dt * A[d, n]
    _vexp(xs, ea, ki, m * n_state)


@numba.njit(inline="always")
def _chunk_decay(delta, bias, A, b, d, t0, t1, dts, sig, xs, ea, ki, n_state):  # pragma: no cover - compiled
    """:func:`_decay` for steps t0..t1 of channel (b, d), z = delta + bias."""
    bd = bias[d]
    for k in range(t1 - t0):
        sig[k] = delta[b, d, t0 + k] + bd
    _decay(A, d, t1 - t0, dts, sig, xs, ea, ki, n_state)


SPECIALISED_STATES = (4, 8, 16)  # the registered models' d_state values: kernels with N a compile-time constant


def kernels(n_state: int) -> tuple:
    """(forward, backward, forward_orders) for ``n_state`` states: compiled with N a constant for
    :data:`SPECIALISED_STATES` (LLVM unrolls and vectorises the loops over the states), else the generic kernels.

    Measured on the 25 scans of a demo stage-2 training step (batch 8, 96 px patches, 2-core Intel Xeon, minimum
    of 5 runs): 1.37x faster forwards and 1.32x faster backwards than the generic kernels, a whole training step 6 %
    faster; outputs within 1.1e-7 of the generic kernels' (relative to each output's largest value: the order of
    every sum is unchanged, but LLVM fuses other multiply-adds). ``error_model="numpy"`` lets division vectorise
    (numba's default Python error model checks every divisor for zero), which made the softplus 5.7x faster,
    bit-identical (docs/performance.md, session 37)."""
    return _make_kernels(n_state if n_state in SPECIALISED_STATES else 0)


@functools.cache
def _make_kernels(n_fixed: int) -> tuple:  # one compiled set (and one numba cache entry) per n_fixed
    @numba.njit(parallel=True, fastmath=FASTMATH, cache=True, error_model="numpy")
    def forward(u, delta, bias, A, Bt, Ct, Dv, ckpt, save):  # pragma: no cover - compiled
        bsz, dim, length = u.shape
        groups = Bt.shape[1]
        n_state = n_fixed if n_fixed else A.shape[1]
        per = dim // groups
        n_blocks = (per + DBLOCK - 1) // DBLOCK
        n_chunks = (length + CHUNK - 1) // CHUNK
        y = np.empty_like(u)
        for task in prange(bsz * groups * n_blocks):
            b = task // (groups * n_blocks)
            g = (task // n_blocks) % groups
            d0 = g * per + (task % n_blocks) * DBLOCK
            d1 = min(d0 + DBLOCK, (g + 1) * per)
            h = np.zeros((DBLOCK, n_state), dtype=np.float32)
            dts = np.empty(CHUNK, dtype=np.float32)
            sig = np.empty(CHUNK, dtype=np.float32)
            xs = np.empty(CHUNK * n_state, dtype=np.float32)
            ea = np.empty(CHUNK * n_state, dtype=np.float32)
            ki = np.empty(CHUNK * n_state, dtype=np.int32)
            for c in range(n_chunks):
                t0 = c * CHUNK
                t1 = min(t0 + CHUNK, length)
                for d in range(d0, d1):
                    hd = h[d - d0]
                    if save:
                        ckpt[b, d, c, :] = hd
                    _chunk_decay(delta, bias, A, b, d, t0, t1, dts, sig, xs, ea, ki, n_state)
                    dd = Dv[d]
                    for t in range(t0, t1):
                        k = t - t0
                        ut = u[b, d, t]
                        du = dts[k] * ut
                        bt = Bt[b, g, t]
                        ct = Ct[b, g, t]
                        acc = np.float32(0.0)
                        for n in range(n_state):
                            hn = ea[k * n_state + n] * hd[n] + du * bt[n]
                            hd[n] = hn
                            acc += ct[n] * hn
                        y[b, d, t] = acc + dd * ut
        return y

    @numba.njit(parallel=True, fastmath=FASTMATH, cache=True, error_model="numpy")
    def backward(u, delta, bias, A, Bt, Ct, Dv, ckpt, gy):  # pragma: no cover - compiled
        bsz, dim, length = u.shape
        groups = Bt.shape[1]
        n_state = n_fixed if n_fixed else A.shape[1]
        per = dim // groups
        gu = np.empty_like(u)
        gz = np.empty_like(u)
        gB = np.zeros_like(Bt)
        gC = np.zeros_like(Ct)
        gA = np.zeros((bsz, dim, n_state), dtype=np.float32)
        gD = np.zeros((bsz, dim), dtype=np.float32)
        n_chunks = (length + CHUNK - 1) // CHUNK
        for bg in prange(bsz * groups):
            b = bg // groups
            g = bg % groups
            hs = np.empty((CHUNK + 1, n_state), dtype=np.float32)
            dts = np.empty(CHUNK, dtype=np.float32)
            sig = np.empty(CHUNK, dtype=np.float32)
            xs = np.empty(CHUNK * n_state, dtype=np.float32)
            ea = np.empty(CHUNK * n_state, dtype=np.float32)
            ki = np.empty(CHUNK * n_state, dtype=np.int32)
            gh_all = np.zeros((per, n_state), dtype=np.float32)  # adjoint state of every channel of the group
            ga_all = np.zeros((per, n_state), dtype=np.float32)
            dsum = np.zeros(per, dtype=np.float32)
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * CHUNK
                t1 = min(t0 + CHUNK, length)
                for j in range(per):
                    d = g * per + j
                    gh = gh_all[j]
                    ga = ga_all[j]
                    a_row = A[d]
                    dd = Dv[d]
                    _chunk_decay(delta, bias, A, b, d, t0, t1, dts, sig, xs, ea, ki, n_state)
                    hs[0, :] = ckpt[b, d, c, :]
                    for t in range(t0, t1):  # recompute the chunk's states from its checkpoint
                        k = t - t0
                        du = dts[k] * u[b, d, t]
                        bt = Bt[b, g, t]
                        for n in range(n_state):
                            hs[k + 1, n] = ea[k * n_state + n] * hs[k, n] + du * bt[n]
                    ds = np.float32(0.0)
                    for t in range(t1 - 1, t0 - 1, -1):
                        k = t - t0
                        dt = dts[k]
                        ut = u[b, d, t]
                        gyt = gy[b, d, t]
                        ds += gyt * ut
                        bt = Bt[b, g, t]
                        ct = Ct[b, g, t]
                        gbt = gB[b, g, t]
                        gct = gC[b, g, t]
                        gut = gyt * dd
                        gdt = np.float32(0.0)
                        for n in range(n_state):
                            e = ea[k * n_state + n]
                            h_prev = hs[k, n]
                            ghn = gh[n] + gyt * ct[n]
                            gct[n] += gyt * hs[k + 1, n]
                            q = ghn * e * h_prev
                            gdt += a_row[n] * q + ghn * bt[n] * ut
                            ga[n] += dt * q
                            gbt[n] += ghn * dt * ut
                            gut += ghn * dt * bt[n]
                            gh[n] = ghn * e
                        gu[b, d, t] = gut
                        gz[b, d, t] = gdt * sig[k]  # d softplus / dz = sigmoid(z)
                    dsum[j] += ds
            for j in range(per):
                gA[b, g * per + j, :] = ga_all[j]
                gD[b, g * per + j] = dsum[j]
        return gu, gz, gA.sum(axis=0), gB, gC, gD.sum(axis=0)

    @numba.njit(parallel=True, fastmath=FASTMATH, cache=True, error_model="numpy")
    def forward_orders(x, delta, bias, A, Bt, Ct, Dv, order):  # pragma: no cover - compiled
        """SS2D's four scans in one pass, inference only. x: (B, C, L) row-major positions; delta: (B, K, C, L) and
        Bt/Ct: (B, K, L, N) by position; A: (K*C, N); bias, Dv: (K*C,); order: (K, L) int32, the position of step t
        of scan k. Returns y (B, C, L) by position: the four scans summed (SS2D's cross-merge)."""
        bsz, chans, length = x.shape
        k_orders = order.shape[0]
        n_state = n_fixed if n_fixed else A.shape[1]
        n_blocks = (chans + DBLOCK - 1) // DBLOCK
        n_chunks = (length + CHUNK - 1) // CHUNK
        y = np.zeros_like(x)
        for task in prange(bsz * n_blocks):
            b = task // n_blocks
            c0 = (task % n_blocks) * DBLOCK
            c1 = min(c0 + DBLOCK, chans)
            h = np.zeros((DBLOCK, n_state), dtype=np.float32)
            dts = np.empty(CHUNK, dtype=np.float32)
            sig = np.empty(CHUNK, dtype=np.float32)
            xs = np.empty(CHUNK * n_state, dtype=np.float32)
            ea = np.empty(CHUNK * n_state, dtype=np.float32)
            ki = np.empty(CHUNK * n_state, dtype=np.int32)
            for k in range(k_orders):
                h[:, :] = 0.0
                for c in range(n_chunks):
                    t0 = c * CHUNK
                    t1 = min(t0 + CHUNK, length)
                    m = t1 - t0
                    for ch in range(c0, c1):
                        d = k * chans + ch
                        hd = h[ch - c0]
                        bd = bias[d]
                        for j in range(m):
                            sig[j] = delta[b, k, ch, order[k, t0 + j]] + bd
                        _decay(A, d, m, dts, sig, xs, ea, ki, n_state)
                        dd = Dv[d]
                        for j in range(m):
                            p = order[k, t0 + j]
                            ut = x[b, ch, p]
                            du = dts[j] * ut
                            bt = Bt[b, k, p]
                            ct = Ct[b, k, p]
                            acc = np.float32(0.0)
                            for n in range(n_state):
                                hn = ea[j * n_state + n] * hd[n] + du * bt[n]
                                hd[n] = hn
                                acc += ct[n] * hn
                            y[b, ch, p] += acc + dd * ut
        return y

    return forward, backward, forward_orders


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().contiguous().cpu().numpy()


def _np_t(t: torch.Tensor) -> np.ndarray:
    """(B, G, N, L) -> contiguous (B, G, L, N) numpy (no copy when the caller's tensor is already laid out so)."""
    return t.detach().float().transpose(2, 3).contiguous().cpu().numpy()


def _n_chunks(length: int) -> int:
    return (length + CHUNK - 1) // CHUNK


class _NumbaScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, bias, A, B, C, D):  # type: ignore[override]
        bsz, dim, length = u.shape
        ckpt = np.zeros((bsz, dim, _n_chunks(length), A.shape[1]), dtype=np.float32)
        Bt, Ct = _np_t(B), _np_t(C)
        y = kernels(A.shape[1])[0](_np(u), _np(delta), _np(bias), _np(A), Bt, Ct, _np(D), ckpt, True)
        ctx.save_for_backward(u, delta, bias, A, D)
        ctx.bc = (Bt, Ct)
        ctx.ckpt = ckpt
        return torch.from_numpy(y).to(u.device)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        u, delta, bias, A, D = ctx.saved_tensors
        Bt, Ct = ctx.bc
        backward = kernels(A.shape[1])[1]
        gu, gz, gA, gB, gC, gD = backward(_np(u), _np(delta), _np(bias), _np(A), Bt, Ct, _np(D), ctx.ckpt, _np(gy))
        dev = u.device
        gB = torch.from_numpy(gB).transpose(2, 3).to(dev)  # back to (B, G, N, L)
        gC = torch.from_numpy(gC).transpose(2, 3).to(dev)
        gu, gz, gA, gD = (torch.from_numpy(g).to(dev) for g in (gu, gz, gA, gD))
        return gu, gz, gz.sum((0, 2)), gA, gB, gC, gD  # z = delta + bias: both get dL/dz


def selective_scan_numba(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """Same contract as :func:`igtv.models.scan.reference.selective_scan_ref`; differentiable.

    B and C may be (B, G, N, L) views of (B, G, L, N) tensors (what SS2D passes): they are then read in place."""
    if not delta_softplus:
        raise NotImplementedError("the numba scan implements delta_softplus=True (what every SS2D uses)")
    dim = u.shape[1]
    if dim % B.shape[1]:
        raise ValueError(f"channels ({dim}) must be a multiple of B/C groups ({B.shape[1]})")
    bias = torch.zeros(dim, device=u.device) if delta_bias is None else delta_bias.float()
    D = torch.zeros(dim, device=u.device) if D is None else D.float()
    args = (u.float(), delta.float(), bias, A.float(), B.float(), C.float(), D)
    if torch.is_grad_enabled() and any(t.requires_grad for t in args):
        return _NumbaScan.apply(*args).to(u.dtype)
    u_, delta_, bias_, A_, B_, C_, D_ = args
    no_ckpt = np.zeros((1, 1, 1, 1), dtype=np.float32)
    forward = kernels(A_.shape[1])[0]
    y = forward(_np(u_), _np(delta_), _np(bias_), _np(A_), _np_t(B_), _np_t(C_), _np(D_), no_ckpt, False)
    return torch.from_numpy(y).to(u.device).to(u.dtype)


@functools.lru_cache(maxsize=32)
def scan_orders(h: int, w: int) -> np.ndarray:
    """(4, H*W) int32: the row-major position of step t of SS2D's four scans (rows, columns, both reversed), as
    :func:`igtv.models.ss2d.cross_scan` orders them."""
    t = np.arange(h * w)
    col = (t % h) * w + t // h
    return np.stack([t, col, t[::-1], col[::-1]]).astype(np.int32)


def ss2d_scan_merged(x, delta, delta_bias, A, B, C, D, h: int, w: int) -> torch.Tensor:
    """SS2D's four selective scans, summed, without gradients and without the cross-scan copies (inference).

    x: (B, C, H*W) row-major; delta: (B, 4, C, H*W), B/C: (B, 4, H*W, N), all by position; A: (4C, N); bias and
    D: (4C,). Returns (B, C, H*W) row-major: what ``cross_merge(selective_scan(cross_scan(x), ...))`` gives."""
    forward_orders = kernels(A.shape[1])[2]
    y = forward_orders(_np(x), _np(delta), _np(delta_bias), _np(A), _np(B), _np(C), _np(D), scan_orders(h, w))
    return torch.from_numpy(y).to(x.device)
