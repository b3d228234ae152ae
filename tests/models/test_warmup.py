"""Compiling the scan kernels ahead of training, in this process and in a background one."""

from __future__ import annotations

import pytest

from igtv.models.scan import numba_available
from igtv.models.warmup import start_warm_up, warm_up

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed: nothing to compile")


def test_warm_up_compiles_the_kernels_a_model_uses():
    from igtv.models.registry import model_config
    from igtv.models.scan.numba_cpu import kernels

    assert warm_up(["cipa_25d_sim_tiny"], side=32) > 0
    cfg = model_config("cipa_25d_sim_tiny")
    for n in {cfg.d_state, cfg.decoder_d_state}:
        forward, backward, forward_orders = kernels(n)
        assert forward.signatures and backward.signatures and forward_orders.signatures


def test_background_warm_up_finishes_cleanly():
    proc = start_warm_up(["cipa_2d_tiny"], side=32)
    proc.join(timeout=300)
    assert proc.exitcode == 0
