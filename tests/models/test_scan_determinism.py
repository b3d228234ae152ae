"""The numba scan gives the same bits whether its kernels were compiled in this process or loaded from cache.

With fastmath's "reassoc", the two summed the N states in different orders, so a training run that compiled the
kernels and its resumed twin that loaded them from numba's on-disk cache drifted apart (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from igtv.models.scan import numba_available

SCRIPT = """
import sys, numpy as np, torch
from igtv.models.scan.numba_cpu import selective_scan_numba
g = torch.Generator().manual_seed(0)
b, d, l, n, grp = 2, 16, 300, 16, 2
u = torch.randn(b, d, l, generator=g, requires_grad=True)
delta = torch.randn(b, d, l, generator=g, requires_grad=True)
A = (-torch.rand(d, n, generator=g) * 3).requires_grad_()
B = torch.randn(b, grp, n, l, generator=g, requires_grad=True)
C = torch.randn(b, grp, n, l, generator=g, requires_grad=True)
D = torch.randn(d, generator=g, requires_grad=True)
bias = torch.randn(d, generator=g, requires_grad=True)
y = selective_scan_numba(u, delta, A, B, C, D, bias)
(y * torch.linspace(0, 1, l)).sum().backward()
np.savez(sys.argv[1], y.detach().numpy(), *[t.grad.numpy() for t in (u, delta, A, B, C, D, bias)])
"""


@pytest.mark.slow
@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_fresh_and_cached_kernels_give_identical_bits(tmp_path: Path) -> None:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    outs = []
    for run in ("compiled", "cached"):  # the first run compiles and writes the cache, the second loads it
        out = tmp_path / f"{run}.npz"
        subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, check=True, timeout=600)
        outs.append(np.load(out))
    assert any((tmp_path / "numba_cache").rglob("*.nbi")), "the second run did not load from numba's cache"
    for name in outs[0].files:  # y and the seven gradients
        assert np.array_equal(outs[0][name], outs[1][name]), name
