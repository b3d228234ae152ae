from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from igtv.models.scan import available_impls, selective_scan
from igtv.models.scan.reference import selective_scan_ref

CPU_IMPLS = [i for i in available_impls() if i in ("numba",)]
CUDA_IMPLS = ["triton", "mamba_ssm"]


def _inputs(b=2, d=6, length=37, n=4, groups=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, length, generator=g)
    delta = torch.randn(b, d, length, generator=g) * 0.5
    a = -torch.exp(torch.randn(d, n, generator=g) * 0.3)
    bb = torch.randn(b, groups, n, length, generator=g)
    cc = torch.randn(b, groups, n, length, generator=g)
    dd = torch.randn(d, generator=g)
    bias = torch.randn(d, generator=g) * 0.1
    return u, delta, a, bb, cc, dd, bias


def _naive(u, delta, a, bb, cc, dd, bias):
    """The recurrence written out literally, one (b, d) pair at a time."""
    delta = F.softplus(delta + bias[None, :, None])
    b, d, length = u.shape
    groups = bb.shape[1]
    y = torch.zeros_like(u)
    for i in range(b):
        for j in range(d):
            gi = j // (d // groups)
            h = torch.zeros(a.shape[1])
            for t in range(length):
                h = torch.exp(delta[i, j, t] * a[j]) * h + delta[i, j, t] * bb[i, gi, :, t] * u[i, j, t]
                y[i, j, t] = (cc[i, gi, :, t] * h).sum() + dd[j] * u[i, j, t]
    return y


def test_reference_matches_the_recurrence():
    args = _inputs()
    assert torch.allclose(selective_scan_ref(*args, chunk=8), _naive(*args), atol=1e-5)


def test_reference_chunking_does_not_change_result():
    args = _inputs(length=50)
    assert torch.allclose(selective_scan_ref(*args, chunk=7), selective_scan_ref(*args, chunk=256), atol=1e-6)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("n", [3, 4])  # 3: the generic kernels; 4: compiled with N fixed
def test_fast_paths_match_reference(impl, n):
    args = [t.clone().double().float().requires_grad_(True) for t in _inputs(length=70, n=n)]
    ref_args = [t.detach().clone().requires_grad_(True) for t in args]
    y = selective_scan(*args, impl=impl)
    y_ref = selective_scan_ref(*ref_args)
    assert torch.allclose(y, y_ref, atol=1e-5, rtol=1e-4)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    for got, want in zip(args, ref_args, strict=True):
        assert torch.allclose(got.grad, want.grad, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_fast_paths_match_reference_over_many_chunks_and_strong_decay(impl):
    """Several checkpoint chunks (CHUNK = 64), a partial last one, and decays down to exp(-60)."""
    u, delta, a, bb, cc, dd, bias = _inputs(b=1, d=4, length=200, n=4, groups=4, seed=3)
    a = a * torch.linspace(1.0, 40.0, 4)  # some Delta*A far below the polynomial's range
    args = [t.clone().requires_grad_(True) for t in (u, delta, a, bb, cc, dd, bias)]
    ref_args = [t.detach().double().requires_grad_(True) for t in args]
    y = selective_scan(*args, impl=impl)
    y_ref = selective_scan_ref(*ref_args)
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-4)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    (y * w).sum().backward()
    (y_ref * w.double()).sum().backward()
    for got, want in zip(args, ref_args, strict=True):
        torch.testing.assert_close(got.grad.double(), want.grad, atol=1e-4, rtol=1e-3)


@pytest.mark.skipif("numba" not in CPU_IMPLS, reason="numba not installed")
def test_numba_vectorised_exp_matches_numpy():
    import numpy as np

    from igtv.models.scan.numba_cpu import _vexp_array

    x = np.concatenate([np.linspace(-87.0, 88.0, 20001), [0.0, -1e-9, 1e-9, -0.3466, 0.3466]]).astype(np.float32)
    got = _vexp_array(x)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got - want) / want) < 5e-7
    assert 0.0 <= _vexp_array(np.array([-120.0], np.float32))[0] < 1e-37  # clamped, never negative or NaN


@pytest.mark.skipif("numba" not in CPU_IMPLS, reason="numba not installed")
def test_numba_vectorised_softplus_and_sigmoid_match_float64():
    import numpy as np

    from igtv.models.scan.numba_cpu import _vsoftplus_array

    z = np.concatenate([np.linspace(-90.0, 90.0, 20001), [0.0, -1e-7, 1e-7, -20.0, -7.0, 15.0]]).astype(np.float32)
    sp, sig = _vsoftplus_array(z)
    z64 = torch.from_numpy(z).double()
    want_sp, want_sig = F.softplus(z64).numpy(), torch.sigmoid(z64).numpy()
    small = want_sp > 1e-37  # below that the float32 exp is clamped
    assert np.max(np.abs(sp[small] - want_sp[small]) / want_sp[small]) < 1e-6  # relative, even where softplus ~ 1e-9
    assert np.max(np.abs(sig - want_sig)) < 1e-7


@pytest.mark.skipif("numba" not in CPU_IMPLS, reason="numba not installed")
def test_numba_inference_path_blocks_and_bc_layout():
    """Without gradients the kernel writes no checkpoints; channels per group (11) span a full and a partial
    block of DBLOCK = 8; B/C passed as (B, G, N, L) views of (B, G, L, N) tensors, as SS2D passes them."""
    u, delta, a, bb, cc, dd, bias = _inputs(b=2, d=22, length=150, n=5, groups=2, seed=5)
    want = selective_scan_ref(*(t.double() for t in (u, delta, a, bb, cc, dd, bias)))
    bt, ct = bb.transpose(2, 3).contiguous().transpose(2, 3), cc.transpose(2, 3).contiguous().transpose(2, 3)
    with torch.no_grad():
        got = selective_scan(u, delta, a, bt, ct, dd, bias, impl="numba")
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)
    with_grad = selective_scan(u.requires_grad_(True), delta, a, bb, cc, dd, bias, impl="numba")
    torch.testing.assert_close(with_grad.detach(), got, atol=0, rtol=0)


@pytest.mark.skipif("numba" not in CPU_IMPLS, reason="numba not installed")
def test_numba_kernels_with_fixed_state_count_match_the_generic_ones():
    """The kernels compiled with N a constant (the state loops unrolled) against the generic kernels that read N at
    run time: training forward and its checkpoints, backward, and the inference scan of four orders. N = 4, which
    the tiny test models compile anyway: each kernel set costs ~25 s of compilation on a fresh clone, so the suite
    uses N = 4 (fixed), 8 (fixed, the learning test's cipa_2d_s) and generic N only."""
    import numpy as np

    from igtv.models.scan.numba_cpu import _make_kernels, kernels, scan_orders

    assert kernels(4) is _make_kernels(4) and kernels(5) is _make_kernels(0)
    fixed, generic = kernels(4), _make_kernels(0)
    u, delta, a, bb, cc, dd, bias = (t.numpy() for t in _inputs(b=2, d=16, length=150, n=4, groups=2, seed=7))
    bt, ct = (np.ascontiguousarray(x.transpose(0, 1, 3, 2)) for x in (bb, cc))
    ckpts = [np.zeros((2, 16, 3, 4), np.float32) for _ in range(2)]
    ys = [k[0](u, delta, bias, a, bt, ct, dd, ck, True) for k, ck in zip((fixed, generic), ckpts, strict=True)]
    np.testing.assert_allclose(ys[0], ys[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ckpts[0], ckpts[1], rtol=1e-5, atol=1e-6)
    gy = np.random.default_rng(0).standard_normal(u.shape).astype(np.float32)
    grads = [k[1](u, delta, bias, a, bt, ct, dd, ckpts[1], gy) for k in (fixed, generic)]
    for got, want in zip(*grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    h, w, chans = 6, 5, 4  # inference: x (B, C, H*W), delta (B, 4, C, H*W), B/C (B, 4, H*W, N), A (4C, N)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, chans, h * w)).astype(np.float32)
    dl = (rng.standard_normal((2, 4, chans, h * w)) * 0.5).astype(np.float32)
    b4, c4 = (rng.standard_normal((2, 4, h * w, 4)).astype(np.float32) for _ in range(2))
    a4 = -np.exp(rng.standard_normal((4 * chans, 4)) * 0.3).astype(np.float32)
    bias4, d4 = (rng.standard_normal(4 * chans).astype(np.float32) for _ in range(2))
    merged = [k[2](x, dl, bias4, a4, b4, c4, d4, scan_orders(h, w)) for k in (fixed, generic)]
    np.testing.assert_allclose(merged[0], merged[1], rtol=1e-5, atol=1e-6)


def test_unknown_impl_is_an_error():
    with pytest.raises(ValueError, match="unknown selective-scan"):
        selective_scan(*_inputs(), impl="magic")


def test_scan_runs_in_float32_under_autocast():
    args = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = selective_scan(*args, impl="ref")
    assert y.dtype == torch.float32


def _check_cuda_path(impl, shape, atol=2e-4, rtol=2e-3):
    """The CUDA path on the GPU against the float64 reference on the CPU: outputs and every gradient."""
    if impl not in available_impls():
        pytest.skip(f"{impl} scan not available here")
    b, d, length, n, groups = shape
    cpu = [t.double().requires_grad_(True) for t in _inputs(b=b, d=d, length=length, n=n, groups=groups, seed=length)]
    gpu = [t.detach().float().cuda().requires_grad_(True) for t in cpu]
    y_ref = selective_scan_ref(*cpu)
    y = selective_scan(*gpu, impl=impl)
    w = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (y_ref * w).sum().backward()
    (y * w.float().cuda()).sum().backward()
    assert y.dtype == torch.float32 and y.is_cuda
    torch.testing.assert_close(y.cpu().double(), y_ref, atol=atol, rtol=rtol)
    for name, got, want in zip("u delta A B C D bias".split(), gpu, cpu, strict=True):
        scale = want.grad.abs().max().item() + 1e-12
        torch.testing.assert_close(got.grad.cpu().double() / scale, want.grad / scale, atol=atol, rtol=rtol, msg=name)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", CUDA_IMPLS)
@pytest.mark.parametrize(
    "shape",
    [
        (2, 6, 70, 4, 2),  # 3 channels per group: one-channel blocks; length not a multiple of any chunk
        (1, 64, 1000, 16, 4),  # 8-channel blocks, 32 chunks, N = 16 as in CIPA's encoder
        (2, 16, 5, 5, 1),  # shorter than one chunk, N not a power of two
        (1, 8, 4096, 16, 1),  # long sequence: the state carried over many chunks
    ],
)
def test_cuda_paths_match_reference(impl, shape):
    _check_cuda_path(impl, shape)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "config",
    [
        dict(block_d_max=1, block_t_fwd=16, warps_fwd=1, warps_bwd=1),  # one channel per program, shortest chunks
        dict(block_d_max=8, min_programs=1, block_t_fwd=64, warps_fwd=8, warps_bwd=8),  # widest blocks, long chunks
        dict(block_d_max=8, min_programs=10_000, warps_fwd=2, warps_bwd=2),  # halved down to one channel by the grid
        dict(block_d_max=4, min_programs=1, warps_fwd=4, warps_bwd=2),  # the tuned default's widest blocks
    ],
)
def test_triton_launch_settings_leave_the_result_unchanged(config, monkeypatch):
    """Every launch setting the tuning benchmark sweeps computes the same scan: outputs and all gradients."""
    if "triton" not in available_impls():
        pytest.skip("triton scan not available here")
    from igtv.models.scan import triton_gpu

    monkeypatch.setattr(triton_gpu, "CONFIG", triton_gpu.TritonScanConfig(**config))
    _check_cuda_path("triton", (2, 16, 200, 16, 2))


@pytest.mark.gpu
@pytest.mark.parametrize("impl", CUDA_IMPLS)
def test_cuda_path_under_autocast_returns_input_dtype_and_scans_in_fp32(impl):
    if impl not in available_impls():
        pytest.skip(f"{impl} scan not available here")
    args = [t.cuda() for t in _inputs(length=300)]
    u16 = args[0].half()
    with torch.autocast("cuda", dtype=torch.float16):
        y = selective_scan(u16, *args[1:], impl=impl)
    want = selective_scan_ref(u16.float().cpu(), *[t.cpu() for t in args[1:]])
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float().cpu(), want, atol=2e-3, rtol=2e-3)


@pytest.mark.gpu
def test_auto_picks_a_cuda_kernel_for_cuda_tensors():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from igtv.models import scan

    picked = []
    real = scan.selective_scan_ref
    scan.selective_scan_ref = lambda *a, **k: picked.append("ref") or real(*a, **k)
    try:
        selective_scan(*[t.cuda() for t in _inputs()], impl="auto")
    finally:
        scan.selective_scan_ref = real
    assert picked == [] or not any(i in available_impls() for i in CUDA_IMPLS)


@pytest.mark.skipif("numba" not in CPU_IMPLS, reason="numba not installed")
def test_ss2d_fused_inference_matches_the_cross_scan_path():
    """Without gradients SS2D scans its four orders in one numba kernel through index maps (no cross-scan copies,
    no flips): same output as cross_scan -> reference scan -> cross_merge, on a non-square grid."""
    from igtv.models.ss2d import SS2D, set_scan_impl

    torch.manual_seed(0)
    block = SS2D(24).eval()
    x = torch.randn(2, 9, 13, 24)
    with torch.no_grad():
        fused = block(x)  # auto -> numba, fused
        assert block._fused_inference(x)
        set_scan_impl(block, "ref")
        assert not block._fused_inference(x)
        want = block(x)
    torch.testing.assert_close(fused, want, atol=2e-5, rtol=1e-4)
    set_scan_impl(block, "auto")
    with_grad = block(x.requires_grad_(True))  # training path: not fused, differentiable
    assert with_grad.requires_grad
    torch.testing.assert_close(with_grad.detach(), want, atol=2e-5, rtol=1e-4)
