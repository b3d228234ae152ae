"""Launch settings of the Triton selective scan, swept at the encoder-stage sizes of a 512x512 input (CIPA-T).

    python benchmarks/tune_triton.py [--batch 1 8] [--max-seconds 150] [--json OUT]

For each stage and batch, times the forward of every (channels per program, steps per chunk, warps) setting and
the forward+backward of every (channels per program, warps): median of 5 after a warm-up, synchronised. Prints one
Markdown table per pass: the best setting, the setting used before tuning (8 channels, 32 steps, 4 warps) and
the shipped ``triton_gpu.CONFIG``, with times in ms. Prints numbers only; asserts nothing. Run it on the GPU whose
figures you report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from igtv.experiments.benchmark import SCAN_GROUPS, SCAN_N, encoder_scan_shapes, time_call
from igtv.models.scan import selective_scan
from igtv.models.scan import triton_gpu as tg

BEFORE = tg.TritonScanConfig(block_d_max=8, min_programs=0, block_t_fwd=32, warps_fwd=4, warps_bwd=4)


def scan_inputs(bsz: int, dim: int, length: int, grad: bool) -> list[torch.Tensor]:
    g = torch.Generator(device="cuda").manual_seed(0)
    kw = dict(device="cuda", generator=g)
    u = torch.randn(bsz, dim, length, **kw)
    delta = torch.randn(bsz, dim, length, **kw) * 0.5 - 2.0
    A = -torch.exp(torch.rand(dim, SCAN_N, **kw) * 2.0)
    B = torch.randn(bsz, SCAN_GROUPS, SCAN_N, length, **kw)
    C = torch.randn(bsz, SCAN_GROUPS, SCAN_N, length, **kw)
    D = torch.ones(dim, device="cuda")
    bias = torch.randn(dim, **kw) * 0.1
    return [t.requires_grad_(grad) for t in (u, delta, A, B, C, D, bias)]


def cuda_ms(fn, repeats: int = 5) -> float:
    """Median ms of ``repeats`` calls after one warm-up (``igtv bench``'s timer, synchronised with the GPU)."""
    return time_call(fn, torch.device("cuda"), repeats) * 1e3


def time_config(cfg: tg.TritonScanConfig, args: list[torch.Tensor], backward: bool) -> float:
    tg.CONFIG = cfg
    if not backward:
        with torch.no_grad():
            return cuda_ms(lambda: selective_scan(*args, impl="triton"))
    return cuda_ms(lambda: selective_scan(*args, impl="triton").sum().backward())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--max-seconds", type=float, default=75.0, help="stop sweeping a pass after this long")
    ap.add_argument("--json", help="write every timing here")
    opt = ap.parse_args()
    shipped = tg.CONFIG
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, shipped {shipped}")
    fwd_grid = [
        tg.TritonScanConfig(block_d_max=d, min_programs=0, block_t_fwd=t, warps_fwd=w)
        for d, t, w in itertools.product([1, 2, 4, 8], [16, 32, 64], [1, 2, 4, 8])
    ]
    bwd_grid = [
        tg.TritonScanConfig(block_d_max=d, min_programs=0, warps_fwd=4, warps_bwd=w)
        for d, w in itertools.product([1, 2, 4, 8], [1, 2, 4, 8])
    ]
    rows = []
    for backward, grid in ((False, fwd_grid), (True, bwd_grid)):
        t0 = time.monotonic()
        for bsz in opt.batch:
            for stage, dim, length in encoder_scan_shapes(512, "t"):
                args = scan_inputs(bsz, dim, length, grad=backward)
                for label, cfg in [("before", BEFORE), ("shipped", shipped)] + [("sweep", c) for c in grid]:
                    if time.monotonic() - t0 > opt.max_seconds and label == "sweep":
                        break
                    try:
                        ms = time_config(cfg, args, backward)
                    except Exception as err:  # noqa: BLE001 - a setting that fails to compile is reported, not fatal
                        print(f"  {stage} B={bsz} {cfg}: failed ({type(err).__name__}: {str(err)[:120]})")
                        continue
                    rows.append({"pass": "fwd+bwd" if backward else "forward", "batch": bsz, "stage": stage,
                                 "D": dim, "L": length, "label": label, "ms": ms, **cfg.__dict__})  # fmt: skip
                print(f"{'fwd+bwd' if backward else 'forward'} {stage} B={bsz}: done ({time.monotonic() - t0:.0f} s)",
                      flush=True)  # fmt: skip
    tg.CONFIG = shipped
    print()
    for pas in ("forward", "fwd+bwd"):
        print(f"#### {pas}, ms (median of 5)\n")
        print("| batch | stage | D | L | before tuning | shipped | best swept | best (block_d, block_t, warps) |")
        print("|---|---|---|---|---|---|---|---|")
        for bsz in opt.batch:
            for stage, dim, length in encoder_scan_shapes(512, "t"):
                sel = [r for r in rows if r["pass"] == pas and r["batch"] == bsz and r["stage"] == stage]
                if not sel:
                    continue
                get = {r["label"]: r for r in sel}
                sweep = [r for r in sel if r["label"] == "sweep"]
                best = min(sweep, key=lambda r: r["ms"]) if sweep else None
                warps = "warps_bwd" if pas == "fwd+bwd" else "warps_fwd"
                setting = f"{best['block_d_max']}, {best['block_t_fwd']}, {best[warps]}" if best else "-"
                print(f"| {bsz} | {stage} | {dim} | {length} | {get.get('before', {}).get('ms', float('nan')):.3f} | "
                      f"{get.get('shipped', {}).get('ms', float('nan')):.3f} | "
                      f"{best['ms'] if best else float('nan'):.3f} | {setting} |")  # fmt: skip
        print()
    if opt.json:
        with open(opt.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
