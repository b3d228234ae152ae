"""Validation and test metrics of a model over a loader (Eqs. 9-10 per slice and pooled), reduced over ranks."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from igtv.checkpoint import load_checkpoint
from igtv.training.builders import build_datasets, build_model, make_loader
from igtv.training.config import RunConfig
from igtv.training.distributed import DistInfo, EpochSampler, all_reduce_sum
from igtv.training.losses import DiceBCELoss
from igtv.training.optim import autocast_settings


@torch.no_grad()
def evaluate_loader(
    model: nn.Module, loader, device, loss_fn, threshold: float, amp: tuple, dist_info: DistInfo
) -> dict[str, float]:
    """Mean per-slice IoU/Dice (Eqs. 9-10), pooled IoU/Dice and the loss over a loader, reduced over ranks."""
    from igtv.evaluation.metrics import batch_counts, dice_from_counts, iou_from_counts
    from igtv.models.cipa import normalize_png

    model.eval()
    sums = torch.zeros(7, dtype=torch.float64)  # iou, dice, n, loss*n, tp, fp, fn
    for batch in loader:
        x = normalize_png(batch["image"].to(device))
        y = batch["mask"].to(device)
        with torch.autocast(device.type, dtype=amp[1], enabled=amp[0]):
            logits = model(x)
        logits = logits.float()
        c = batch_counts(torch.sigmoid(logits) > threshold, y > 0.5).cpu()
        tp, fp, fn = c[:, 0], c[:, 1], c[:, 2]
        sums[0] += iou_from_counts(tp, fp, fn).sum()
        sums[1] += dice_from_counts(tp, fp, fn).sum()
        sums[2] += len(c)
        sums[3] += float(loss_fn(logits, y)) * len(c)
        sums[4:7] += c[:, :3].sum(0)
    sums = all_reduce_sum(sums, dist_info)
    n = max(float(sums[2]), 1.0)
    tp, fp, fn = (float(v) for v in sums[4:7])
    return {
        "iou": float(sums[0]) / n,
        "dice": float(sums[1]) / n,
        "loss": float(sums[3]) / n,
        "pooled_iou": iou_from_counts(tp, fp, fn, empty=0.0),
        "pooled_dice": dice_from_counts(tp, fp, fn, empty=0.0),
        "n": int(sums[2]),
    }


def evaluate_checkpoint_split(path: Path, cfg: RunConfig, split: str, device, dist_info: DistInfo) -> dict | None:
    """Slice metrics of a checkpoint on a split of ``cfg.data.root`` (None when the split list is absent/empty)."""
    try:
        (ds,) = build_datasets(cfg, (split,))
    except FileNotFoundError:
        return None
    if len(ds) == 0:
        return None
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(path)["model"])
    model.to(device)
    sampler = EpochSampler(len(ds), cfg.seed, dist_info.rank, dist_info.world, shuffle=False)
    loader = make_loader(ds, max(1, cfg.train.batch_size // dist_info.world), sampler, cfg.data.num_workers, False)
    loss_fn = DiceBCELoss(cfg.train.batch_dice)
    amp = autocast_settings(cfg, device)
    return evaluate_loader(model, loader, device, loss_fn, cfg.train.threshold, amp, dist_info)
