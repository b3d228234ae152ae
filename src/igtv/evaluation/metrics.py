"""Segmentation metrics of the paper, Eqs. 9-12, as pure functions over binary masks."""

from __future__ import annotations

import torch


def confusion(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(B, ...) binary masks -> (B, 4) float64 counts TP, FP, FN, TN per image."""
    p = pred.reshape(pred.shape[0], -1).bool()
    t = truth.reshape(truth.shape[0], -1).bool()
    tp = (p & t).sum(1)
    fp = (p & ~t).sum(1)
    fn = (~p & t).sum(1)
    tn = (~p & ~t).sum(1)
    return torch.stack([tp, fp, fn, tn], dim=1).double()


def iou_from_counts(c: torch.Tensor, empty: float = 1.0) -> torch.Tensor:
    """Eq. 9: TP / (TP + FP + FN); ``empty`` when prediction and truth are both empty."""
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    den = tp + fp + fn
    return torch.where(den > 0, tp / den.clamp(min=1), torch.full_like(den, empty))


def dice_from_counts(c: torch.Tensor, empty: float = 1.0) -> torch.Tensor:
    """Eq. 10: 2 TP / (2 TP + FP + FN); ``empty`` when prediction and truth are both empty."""
    tp, fp, fn = c[..., 0], c[..., 1], c[..., 2]
    den = 2 * tp + fp + fn
    return torch.where(den > 0, 2 * tp / den.clamp(min=1), torch.full_like(den, empty))


def accuracy_from_counts(c: torch.Tensor) -> torch.Tensor:
    """Eq. 11: (TP + TN) / all pixels."""
    return (c[..., 0] + c[..., 3]) / c.sum(-1)
