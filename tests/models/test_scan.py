from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from igtv.models.scan import available_impls, selective_scan, selective_scan_ref


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


@pytest.mark.parametrize("impl", [i for i in available_impls() if i != "ref"])
def test_fast_paths_match_reference(impl):
    args = [t.clone().double().float().requires_grad_(True) for t in _inputs(length=70)]
    ref_args = [t.detach().clone().requires_grad_(True) for t in args]
    y = selective_scan(*args, impl=impl)
    y_ref = selective_scan_ref(*ref_args)
    assert torch.allclose(y, y_ref, atol=1e-5, rtol=1e-4)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    for got, want in zip(args, ref_args, strict=True):
        assert torch.allclose(got.grad, want.grad, atol=1e-4, rtol=1e-3)


def test_unknown_impl_is_an_error():
    with pytest.raises(ValueError, match="unknown selective-scan"):
        selective_scan(*_inputs(), impl="magic")


def test_scan_runs_in_float32_under_autocast():
    args = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = selective_scan(*args, impl="ref")
    assert y.dtype == torch.float32
