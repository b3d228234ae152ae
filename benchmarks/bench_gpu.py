"""GPU figures for the selective scan and CIPA-T at 512x512: every CUDA scan path, forward and training step.

    python benchmarks/bench_gpu.py [--batch 1 4 8] [--skip-ref-model]

Prints numbers only (CUDA events, after warm-up); asserts nothing. Run on the GPU whose figures you report.
"""

from __future__ import annotations

import argparse

import torch

from igtv.models import create_model
from igtv.models.scan import available_impls, selective_scan
from igtv.models.ss2d import set_scan_impl


def _cuda_time(fn, repeat: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeat / 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--skip-ref-model", action="store_true")
    args = ap.parse_args()
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    impls = [i for i in available_impls() if i != "numba"]
    # stage 1 of CIPA-T at 512x512 for one image: 4 orders x 192 channels, L = 128 * 128, N = 16
    b, d, length, n, k = 1, 768, 16384, 16, 4
    g = torch.Generator(device=dev).manual_seed(0)
    u = torch.randn(b, d, length, device=dev, generator=g, requires_grad=True)
    delta = torch.randn(b, d, length, device=dev, generator=g, requires_grad=True)
    a = -torch.rand(d, n, device=dev, generator=g) - 0.5
    bb = torch.randn(b, k, n, length, device=dev, generator=g)
    cc = torch.randn(b, k, n, length, device=dev, generator=g)
    for impl in impls:
        rep = 1 if impl == "ref" else 10
        fwd = _cuda_time(lambda impl=impl: selective_scan(u, delta, a, bb, cc, impl=impl), repeat=rep, warmup=1)
        both = _cuda_time(
            lambda impl=impl: selective_scan(u, delta, a, bb, cc, impl=impl).sum().backward(), repeat=rep, warmup=1
        )
        print(
            f"scan {impl:9s} B={b} D={d} L={length} N={n} (stage 1, one 512x512 image): forward {fwd * 1e3:9.2f} ms, "
            f"forward+backward {both * 1e3:9.2f} ms"
        )
    model = create_model("cipa_25d_sim_t").to(dev)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for impl in impls:
        if impl == "ref" and args.skip_ref_model:
            continue
        set_scan_impl(model, impl)
        for bsz in args.batch if impl != "ref" else args.batch[:1]:
            x = torch.randn(bsz, 6, args.size, args.size, device=dev)
            y = (torch.rand(bsz, 1, args.size, args.size, device=dev) > 0.95).float()
            model.eval()
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                t_fwd = _cuda_time(lambda x=x: model(x), repeat=1 if impl == "ref" else 5, warmup=1)

            def step(x=x, y=y) -> None:
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = loss_fn(model(x).float(), y)
                loss.backward()
                opt.step()

            model.train()
            torch.cuda.reset_peak_memory_stats()
            t_step = _cuda_time(step, repeat=1 if impl == "ref" else 5, warmup=1)
            mem = torch.cuda.max_memory_allocated() / 2**30
            print(
                f"cipa_25d_sim_t {args.size}x{args.size} batch {bsz}, scan {impl}: inference {t_fwd * 1e3:8.1f} ms "
                f"({bsz / t_fwd:6.1f} img/s), train step {t_step * 1e3:8.1f} ms ({bsz / t_step:6.1f} img/s), "
                f"peak {mem:5.1f} GiB"
            )


if __name__ == "__main__":
    main()
