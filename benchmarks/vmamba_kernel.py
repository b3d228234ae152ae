"""The CIPA / VMamba authors' CUDA selective scan ("oflex") beside ours, on the same GPU and inputs.

    python benchmarks/vmamba_kernel.py build   SRC BUILD   # compile it (SRC: VMamba's kernels/selective_scan)
    python benchmarks/vmamba_kernel.py compare SRC BUILD [--batch 1 8]

igtv never ships or needs this kernel: VMamba (github.com/MzeroMiko/VMamba, MIT licence, the scan CIPA uses) is
checked out by whoever runs this, and the extension is built with ``torch.utils.cpp_extension`` for this GPU only.
``compare`` first checks its output and gradients against our Triton scan, then prints forward and forward+backward
ms (median of 5) at the encoder-stage sizes of a 512x512 input, and the ratio Triton / VMamba.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

NVCC_FLAGS = [  # those of VMamba's kernels/selective_scan/setup.py
    "-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "-U__CUDA_NO_BFLOAT162_OPERATORS__",
    "-U__CUDA_NO_BFLOAT162_CONVERSIONS__", "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
    "-lineinfo", "--threads", "4",
]  # fmt: skip


def load(src: Path, build: Path):
    from torch.utils.cpp_extension import load as load_ext

    root = src / "csrc" / "selective_scan"
    major, minor = torch.cuda.get_device_capability()
    build.mkdir(parents=True, exist_ok=True)
    return load_ext(
        name="selective_scan_cuda_oflex",
        sources=[str(root / "cusoflex" / f) for f in
                 ("selective_scan_oflex.cpp", "selective_scan_core_fwd.cu", "selective_scan_core_bwd.cu")],
        extra_include_paths=[str(root)],
        extra_cflags=["-O3", "-std=c++17"],
        extra_cuda_cflags=[*NVCC_FLAGS, f"-arch=sm_{major}{minor}"],
        build_directory=str(build),
        verbose=True,
    )  # fmt: skip


def vmamba_scan(ext):
    class _Scan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, delta, A, B, C, D, bias):  # type: ignore[override]
            out, x, *_ = ext.fwd(u, delta, A, B, C, D, bias, True, 1, True)
            ctx.save_for_backward(u, delta, A, B, C, D, bias, x)
            return out

        @staticmethod
        def backward(ctx, dout):  # type: ignore[override]
            u, delta, A, B, C, D, bias, x = ctx.saved_tensors
            grads = ext.bwd(u, delta, A, B, C, D, bias, dout.contiguous(), x, True, 1)
            return tuple(grads[:7])

    return _Scan.apply


def compare(src: Path, build: Path, batches: list[int]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from tune_triton import cuda_ms, scan_inputs

    from igtv.experiments.benchmark import encoder_scan_shapes
    from igtv.models.scan import selective_scan

    scan = vmamba_scan(load(src, build))
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    # correctness first, on a small stage-4-like shape
    ours = scan_inputs(2, 64, 256, grad=True)
    theirs = [t.detach().clone().requires_grad_(True) for t in ours]
    y1, y2 = selective_scan(*ours, impl="triton"), scan(*theirs)
    w = torch.randn_like(y1)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    err = {"y": ((y1 - y2).abs().max() / y1.abs().max()).item()}
    for name, a, b in zip("u delta A B C D bias".split(), ours, theirs, strict=True):
        err[name] = ((a.grad - b.grad).abs().max() / (a.grad.abs().max() + 1e-12)).item()
    print("max |triton - vmamba| / max |triton|: " + ", ".join(f"{k} {v:.1e}" for k, v in err.items()))
    print("\n| batch | stage | D | L | triton fwd | vmamba fwd | ratio | triton fwd+bwd | vmamba fwd+bwd | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for bsz in batches:
        for stage, dim, length in encoder_scan_shapes(512, "t"):
            a = scan_inputs(bsz, dim, length, grad=False)
            g = scan_inputs(bsz, dim, length, grad=True)
            with torch.no_grad():
                tf = cuda_ms(lambda a=a: selective_scan(*a, impl="triton"))
                vf = cuda_ms(lambda a=a: scan(*a))
            tb = cuda_ms(lambda g=g: selective_scan(*g, impl="triton").sum().backward())
            vb = cuda_ms(lambda g=g: scan(*g).sum().backward())
            print(f"| {bsz} | {stage} | {dim} | {length} | {tf:.3f} | {vf:.3f} | {tf / vf:.2f} | {tb:.3f} | {vb:.3f} | "
                  f"{tb / vb:.2f} |", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["build", "compare"])
    ap.add_argument("src", type=Path)
    ap.add_argument("build", type=Path)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    opt = ap.parse_args()
    if opt.what == "build":
        load(opt.src, opt.build)
        print("built")
    else:
        compare(opt.src, opt.build, opt.batch)


if __name__ == "__main__":
    main()
