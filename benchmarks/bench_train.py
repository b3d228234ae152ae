"""Training throughput (images/s) of a registered model: forward + Dice/BCE loss + backward + AdamW step.

    python benchmarks/bench_train.py --model cipa_25d_sim_tiny --size 512 --batch 2 --steps 3
    python benchmarks/bench_train.py --model cipa_25d_sim_t --size 512 --batch 1 --steps 1 --device cuda

Prints numbers only; nothing here is asserted. On CUDA, AMP (bf16 where supported) is on, as in training.
"""

from __future__ import annotations

import argparse
import time

import torch

from igtv.models import create_model
from igtv.training.loop import DiceBCELoss, model_input_slices


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cipa_25d_sim_tiny")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    model = create_model(args.model).to(device)
    ch = 2 * model_input_slices(args.model)
    x = torch.randn(args.batch, ch, args.size, args.size, device=device)
    y = (torch.rand(args.batch, 1, args.size, args.size, device=device) > 0.95).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = DiceBCELoss()
    amp = device.type == "cuda"
    dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (numba compilation, cudnn autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    n = sum(q.numel() for q in model.parameters())
    print(
        f"{args.model} ({n / 1e6:.2f} M params) {args.size}x{args.size} batch {args.batch} on {device}: "
        f"{args.batch * args.steps / dt:.3f} img/s ({dt / args.steps:.2f} s/step, torch threads "
        f"{torch.get_num_threads()})"
    )


if __name__ == "__main__":
    main()
