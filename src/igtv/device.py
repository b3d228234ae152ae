"""Device choice: ``auto`` takes CUDA when there is one."""

from __future__ import annotations

import torch


def pick_device(kind: str, local_rank: int = 0) -> torch.device:
    if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def auto_batch_size(device: torch.device, patch_px: int = 0) -> int:
    """Tiles (or slices) per forward pass at prediction: 8 on a CPU, where a bigger batch buys nothing; on CUDA as
    many pixels as 32 tiles of 96 px, never fewer than 8 (an H200 ran the paper-size model's network 1.8x faster
    at 32 tiles than at 8: small batches leave it waiting on kernel launches; session 27)."""
    if device.type != "cuda" or patch_px <= 0:
        return 8
    return max(8, round(32 * (96 / patch_px) ** 2))
