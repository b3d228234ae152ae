"""Parameter and FLOP counts of registered models (``igtv model-info``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from igtv.models import scan as scan_module


@contextlib.contextmanager
def _count_scan_flops() -> Iterator[list[int]]:
    """Count the selective scan's work as VMamba's fvcore hook does: 9 * B * D * L * N per call."""
    total = [0]
    original = scan_module.selective_scan

    def counting(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, impl="auto"):
        total[0] += 9 * u.shape[0] * u.shape[1] * u.shape[2] * A.shape[1]
        return original(u, delta, A, B, C, D, delta_bias, delta_softplus, impl=impl)

    import igtv.models.ss2d as blocks

    blocks.selective_scan = counting
    fused = None
    if scan_module.numba_available():  # SS2D's inference kernel scans its 4 orders without selective_scan
        import igtv.models.scan.numba_cpu as scan_numba

        fused = scan_numba.ss2d_scan_merged

        def counting_fused(x, delta, delta_bias, A, *rest):  # 4 orders x C channels = A's rows
            total[0] += 9 * x.shape[0] * A.shape[0] * x.shape[2] * A.shape[1]
            return fused(x, delta, delta_bias, A, *rest)

        scan_numba.ss2d_scan_merged = counting_fused
    try:
        yield total
    finally:
        blocks.selective_scan = original
        if fused is not None:
            scan_numba.ss2d_scan_merged = fused


def model_info(name: str, size: int = 512, batch: int = 1) -> dict:
    """Parameters (M) and forward GFLOPs (multiply-adds counted once, as papers report) at ``size`` x ``size``."""
    from torch.utils.flop_counter import FlopCounterMode

    from igtv.models import create_model

    model = create_model(name).eval()
    params = sum(p.numel() for p in model.parameters())
    in_ch = getattr(model, "in_channels", 6)
    x = torch.zeros(batch, in_ch, size, size)
    with torch.no_grad(), _count_scan_flops() as scan_flops, FlopCounterMode(display=False) as counter:
        model(x)
    dense = counter.get_total_flops() / 2  # FlopCounterMode counts a multiply-add as 2
    return {
        "model": name,
        "size": size,
        "params_m": params / 1e6,
        "gflops": (dense + scan_flops[0]) / 1e9 / batch,
        "gflops_dense": dense / 1e9 / batch,
        "gflops_scan": scan_flops[0] / 1e9 / batch,
    }
