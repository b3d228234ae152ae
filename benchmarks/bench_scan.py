"""Selective-scan and CIPA forward timings on this machine, every available scan implementation.

    .venv/bin/python benchmarks/bench_scan.py [--model-size 512] [--skip-ref-model]

Prints numbers; asserts nothing. Run on the machine whose figures you report.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from igtv.models import create_model
from igtv.models.blocks import set_scan_impl
from igtv.models.scan import available_impls, selective_scan


def _time(fn, repeat: int = 1) -> float:
    fn()  # warm-up (numba compiles here)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-size", type=int, default=512)
    ap.add_argument("--skip-ref-model", action="store_true", help="skip the (minutes-long) reference model forward")
    args = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    b, d, length, n = 2, 96, 4096, 16
    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, d, length, generator=g, requires_grad=True)
    delta = torch.randn(b, d, length, generator=g, requires_grad=True)
    a = -torch.rand(d, n, generator=g) - 0.5
    bb, cc = torch.randn(b, 1, n, length, generator=g), torch.randn(b, 1, n, length, generator=g)
    dd = torch.ones(d)
    for impl in available_impls():
        fwd = _time(lambda impl=impl: selective_scan(u, delta, a, bb, cc, dd, impl=impl).detach())
        both = _time(lambda impl=impl: selective_scan(u, delta, a, bb, cc, dd, impl=impl).sum().backward())
        print(
            f"scan {impl:6s} B={b} D={d} L={length} N={n}: forward {fwd * 1e3:8.1f} ms, forward+backward "
            f"{both * 1e3:8.1f} ms"
        )
    size = args.model_size
    model = create_model("cipa_25d_sim_t").eval()
    x = torch.randn(1, 6, size, size)
    for impl in available_impls():
        if impl == "ref" and args.skip_ref_model:
            continue
        set_scan_impl(model, impl)
        with torch.no_grad():
            t = _time(lambda: model(x))
        print(f"cipa_25d_sim_t forward, 1 slice {size}x{size}, scan {impl}: {t:.2f} s")


if __name__ == "__main__":
    main()
