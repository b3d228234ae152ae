"""Selective scan on CUDA with Triton: chunked parallel scan, forward and backward kernels of our own.

Imported only when Triton and a CUDA device are there (any CUDA build of PyTorch ships Triton);
:mod:`igtv.models.scan` falls back to the PyTorch reference otherwise, and ``import igtv`` never needs it.

Layout: one program per (batch, block of BLOCK_D channels of one B/C group). It walks the sequence in chunks of
BLOCK_T steps; inside a chunk the recurrence h_t = a_t h_{t-1} + b_t (a_t = exp(Delta_t A), b_t = Delta_t B_t u_t)
is an associative scan over the affine maps (a, b), so every (channel, state, step) of the (BLOCK_D, N, BLOCK_T)
tile is computed in parallel, and the state is carried from chunk to chunk in registers. Only the states at chunk
starts are stored (B, D, L / BLOCK_T_BWD, N) for the backward pass, which recomputes h inside each chunk and runs the
adjoint recurrence q_t = C_t dy_t + a_{t+1} q_{t+1} as a reverse associative scan. B/C gradients are reduced over
the block's channels and added atomically, so memory stays O(B D L) however long the sequence is.

The idea of a chunked two-level scan is the one of Mamba's CUDA kernel (Gu & Dao 2023) and of mamba.py's pscan
(Torres 2024); this code is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from igtv.models.scan.inputs import fused_kernel_inputs

BLOCK_T_BWD = 16  # steps per backward chunk, and between the forward's stored states


@dataclass(frozen=True)
class TritonScanConfig:
    """Launch settings of the Triton scan (``benchmarks/tune_triton.py`` measures them).

    Each program walks the whole sequence, so the grid is the parallelism: ``bsz * dim / block_d`` programs. Blocks
    of up to ``block_d_max`` channels are halved until the grid has ``min_programs`` programs (at batch 1 the
    encoder's first stage has only 768 channels, 96 programs of 8 for the GPU's 132 SMs).
    """

    block_d_max: int = 4
    min_programs: int = 528  # 4 per SM of an H100 / H200
    block_t_fwd: int = 32  # steps per forward chunk: a multiple of BLOCK_T_BWD
    warps_fwd: int = 4
    warps_bwd: int = 2

    def __post_init__(self) -> None:
        if self.block_t_fwd % BLOCK_T_BWD or self.block_t_fwd & (self.block_t_fwd - 1):
            raise ValueError(f"block_t_fwd must be a power of two multiple of {BLOCK_T_BWD}, got {self.block_t_fwd}")
        if self.block_d_max < 1 or self.block_d_max & (self.block_d_max - 1):
            raise ValueError(f"block_d_max must be a power of two, got {self.block_d_max}")


CONFIG = TritonScanConfig()


@triton.jit
def _compose(a_l, b_l, a_r, b_r):
    """Affine maps h -> a h + b: apply the left (earlier) one, then the right one."""
    return a_l * a_r, a_r * b_l + b_r


@triton.jit
def _softplus(x):
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))


@triton.jit
def _block(
    a_ptr, d_ptr, dim, length, n_state, groups, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr
):
    """This program's batch, channel block (inside one B/C group: the host sees to it), masks and A/D rows."""
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_t = tl.arange(0, BLOCK_T)
    mask_d = offs_d < dim
    mask_n = offs_n < n_state
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A = tl.load(a_ptr + offs_d[:, None] * n_state + offs_n[None, :], mask=mask_dn, other=0.0)  # (BD, BN)
    Dv = tl.load(d_ptr + offs_d, mask=mask_d, other=0.0)
    row = pid_b * dim + offs_d  # (BD,) rows of u, delta, y in (B * D, L)
    g = (pid_d * BLOCK_D) // (dim // groups)
    bc_base = (pid_b * groups + g) * n_state * length  # start of this (batch, group)'s B/C
    return pid_b, offs_d, offs_n, offs_t, mask_d, mask_n, mask_dn, A, Dv, row, bc_base


@triton.jit
def _fwd_kernel(
    u_ptr,
    z_ptr,
    a_ptr,
    b_ptr,
    c_ptr,
    d_ptr,
    y_ptr,
    ckpt_ptr,
    dim,
    length,
    n_state,
    groups,
    n_chunks,
    n_ckpt,
    CKPT_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    pid_b, offs_d, offs_n, offs_t, mask_d, mask_n, mask_dn, A, Dv, row, bc_base = _block(
        a_ptr, d_ptr, dim, length, n_state, groups, BLOCK_D, BLOCK_N, BLOCK_T
    )
    ckpt_rows = (row[:, None] * n_ckpt) * n_state + offs_n[None, :]  # (BD, BN), checkpoint 0
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(n_chunks):
        t = c * BLOCK_T + offs_t
        mask_t = t < length
        m2 = mask_d[:, None] & mask_t[None, :]
        p2 = row[:, None] * length + t[None, :]  # (BD, BT)
        u = tl.load(u_ptr + p2, mask=m2, other=0.0)
        dt = _softplus(tl.load(z_ptr + p2, mask=m2, other=0.0))
        mnt = mask_n[:, None] & mask_t[None, :]
        pbc = bc_base + offs_n[:, None] * length + t[None, :]  # (BN, BT)
        Bm = tl.load(b_ptr + pbc, mask=mnt, other=0.0)
        Cm = tl.load(c_ptr + pbc, mask=mnt, other=0.0)
        a = tl.exp(dt[:, None, :] * A[:, :, None])  # (BD, BN, BT)
        b = (dt * u)[:, None, :] * Bm[None, :, :]
        a = tl.where(mask_t[None, None, :], a, 1.0)
        a_cum, b_cum = tl.associative_scan((a, b), axis=2, combine_fn=_compose)
        hs = a_cum * h[:, :, None] + b_cum  # (BD, BN, BT): h_t for every step of the chunk
        # store the state entering every CKPT_T-step sub-chunk (the backward's chunk)
        for j in tl.static_range(BLOCK_T // CKPT_T):
            k = c * (BLOCK_T // CKPT_T) + j
            if j == 0:
                h_in = h
            else:
                h_in = tl.sum(tl.where(offs_t[None, None, :] == j * CKPT_T - 1, hs, 0.0), axis=2)
            if k < n_ckpt:
                tl.store(ckpt_ptr + ckpt_rows + k * n_state, h_in, mask=mask_dn)
        y = tl.sum(hs * Cm[None, :, :], axis=1) + u * Dv[:, None]  # (BD, BT)
        tl.store(y_ptr + p2, y, mask=m2)
        h = tl.sum(tl.where(offs_t[None, None, :] == BLOCK_T - 1, hs, 0.0), axis=2)


@triton.jit
def _bwd_kernel(
    u_ptr,
    z_ptr,
    a_ptr,
    b_ptr,
    c_ptr,
    d_ptr,
    dy_ptr,
    ckpt_ptr,
    du_ptr,
    dz_ptr,
    da_ptr,
    db_ptr,
    dc_ptr,
    dd_ptr,
    dim,
    length,
    n_state,
    groups,
    n_chunks,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    pid_b, offs_d, offs_n, offs_t, mask_d, mask_n, mask_dn, A, Dv, row, bc_base = _block(
        a_ptr, d_ptr, dim, length, n_state, groups, BLOCK_D, BLOCK_N, BLOCK_T
    )
    first = offs_t[None, None, :] == 0
    q_carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # adjoint of h at the start of the next chunk
    gA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    gD = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for ci in range(n_chunks):
        c = n_chunks - 1 - ci
        t = c * BLOCK_T + offs_t
        mask_t = t < length
        m2 = mask_d[:, None] & mask_t[None, :]
        p2 = row[:, None] * length + t[None, :]
        u = tl.load(u_ptr + p2, mask=m2, other=0.0)
        zt = tl.load(z_ptr + p2, mask=m2, other=0.0)
        dt = _softplus(zt)
        dy = tl.load(dy_ptr + p2, mask=m2, other=0.0)
        mnt = mask_n[:, None] & mask_t[None, :]
        pbc = bc_base + offs_n[:, None] * length + t[None, :]
        Bm = tl.load(b_ptr + pbc, mask=mnt, other=0.0)
        Cm = tl.load(c_ptr + pbc, mask=mnt, other=0.0)
        # h_{t-1} for every step: scan from the stored state, one step behind (the first element resets to it)
        h0 = tl.load(ckpt_ptr + (row[:, None] * n_chunks + c) * n_state + offs_n[None, :], mask=mask_dn, other=0.0)
        tp = t - 1
        m2p = mask_d[:, None] & (tp >= 0)[None, :] & mask_t[None, :]
        p2p = row[:, None] * length + tp[None, :]
        u_p = tl.load(u_ptr + p2p, mask=m2p, other=0.0)
        dt_p = _softplus(tl.load(z_ptr + p2p, mask=m2p, other=0.0))
        B_p = tl.load(
            b_ptr + bc_base + offs_n[:, None] * length + tp[None, :], mask=mnt & (tp >= 0)[None, :], other=0.0
        )
        a_p = tl.where(first, 0.0, tl.exp(dt_p[:, None, :] * A[:, :, None]))
        b_p = tl.where(first, h0[:, :, None], (dt_p * u_p)[:, None, :] * B_p[None, :, :])
        _, h_prev = tl.associative_scan((a_p, b_p), axis=2, combine_fn=_compose)  # (BD, BN, BT)
        a = tl.exp(dt[:, None, :] * A[:, :, None])
        h = a * h_prev + (dt * u)[:, None, :] * Bm[None, :, :]
        # adjoint: q_t = C_t dy_t + a_{t+1} q_{t+1}, a reverse scan with a_{t+1} read one step ahead
        tn = t + 1
        m2n = mask_d[:, None] & (tn < length)[None, :]
        dt_n = _softplus(tl.load(z_ptr + row[:, None] * length + tn[None, :], mask=m2n, other=0.0))
        a_n = tl.where((tn < length)[None, None, :], tl.exp(dt_n[:, None, :] * A[:, :, None]), 0.0)
        cdy = Cm[None, :, :] * dy[:, None, :]
        a_rev, b_rev = tl.associative_scan((a_n, cdy), axis=2, combine_fn=_compose, reverse=True)
        q = b_rev + a_rev * q_carry[:, :, None]  # (BD, BN, BT)
        q_carry = tl.sum(tl.where(first, q, 0.0), axis=2)
        # gradients
        g_pre = q * h_prev * a  # d loss / d (Delta A)
        qb = tl.sum(q * Bm[None, :, :], axis=1)  # (BD, BT)
        gdt = tl.sum(g_pre * A[:, :, None], axis=1) + qb * u
        gu = qb * dt + dy * Dv[:, None]
        gA += tl.sum(g_pre * dt[:, None, :], axis=2)
        gD += tl.sum(dy * u, axis=1)
        tl.atomic_add(db_ptr + pbc, tl.sum(q * (dt * u)[:, None, :], axis=0), mask=mnt)
        tl.atomic_add(dc_ptr + pbc, tl.sum(h * dy[:, None, :], axis=0), mask=mnt)
        tl.store(du_ptr + p2, gu, mask=m2)
        tl.store(dz_ptr + p2, gdt * tl.sigmoid(zt), mask=m2)  # d softplus / dz = sigmoid(z)
    tl.store(da_ptr + (pid_b * dim + offs_d[:, None]) * n_state + offs_n[None, :], gA, mask=mask_dn)
    tl.store(dd_ptr + pid_b * dim + offs_d, gD, mask=mask_d)


def _block_d(per_group: int, cap: int, programs: int = 0, min_programs: int = 0) -> int:
    """Largest power of two <= cap dividing the channels of one group (so a block never straddles two groups),
    halved while the grid (``programs`` channel rows / block) has fewer than ``min_programs`` programs."""
    block = 1
    while block * 2 <= cap and per_group % (block * 2) == 0:
        block *= 2
    while block > 1 and programs // block < min_programs:
        block //= 2
    return block


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, z, A, B, C, D):  # type: ignore[override]
        bsz, dim, length = u.shape
        groups, n_state = B.shape[1], A.shape[1]
        cfg = CONFIG
        block_d = _block_d(dim // groups, cfg.block_d_max, bsz * dim, cfg.min_programs)
        block_n = max(triton.next_power_of_2(n_state), 2)
        n_chunks = triton.cdiv(length, cfg.block_t_fwd)
        n_ckpt = triton.cdiv(length, BLOCK_T_BWD)  # one state per backward chunk
        y = torch.empty_like(u)
        ckpt = torch.empty(bsz, dim, n_ckpt, n_state, device=u.device, dtype=torch.float32)
        grid = (bsz, triton.cdiv(dim, block_d))
        _fwd_kernel[grid](
            u, z, A, B, C, D, y, ckpt, dim, length, n_state, groups, n_chunks, n_ckpt,
            CKPT_T=BLOCK_T_BWD, BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=cfg.block_t_fwd, num_warps=cfg.warps_fwd,
        )  # fmt: skip
        ctx.save_for_backward(u, z, A, B, C, D, ckpt)
        ctx.blocks = (block_d, block_n, cfg.warps_bwd)
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[override]
        u, z, A, B, C, D, ckpt = ctx.saved_tensors
        block_d, block_n, warps = ctx.blocks
        bsz, dim, length = u.shape
        groups, n_state = B.shape[1], A.shape[1]
        du, dz = torch.empty_like(u), torch.empty_like(z)
        dA = torch.empty(bsz, dim, n_state, device=u.device, dtype=torch.float32)
        dD = torch.empty(bsz, dim, device=u.device, dtype=torch.float32)
        dB, dC = torch.zeros_like(B), torch.zeros_like(C)
        grid = (bsz, triton.cdiv(dim, block_d))
        _bwd_kernel[grid](
            u, z, A, B, C, D, dy.float().contiguous(), ckpt, du, dz, dA, dB, dC, dD,
            dim, length, n_state, groups, triton.cdiv(length, BLOCK_T_BWD),
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=BLOCK_T_BWD, num_warps=warps,
        )  # fmt: skip
        return du, dz, dA.sum(0), dB, dC, dD.sum(0)


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> torch.Tensor:
    """Same contract as :func:`igtv.models.scan.reference.selective_scan_ref`; differentiable; CUDA tensors only."""
    if not u.is_cuda:
        raise ValueError("the Triton selective scan needs CUDA tensors")
    args = fused_kernel_inputs("Triton", u, delta, A, B, C, D, delta_bias, delta_softplus)
    return _TritonScan.apply(*args).to(u.dtype)
