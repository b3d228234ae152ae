"""Segmentation metrics of the paper, Eqs. 9-12, as pure functions over binary masks."""

from __future__ import annotations

import warnings

import numpy as np
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


# --- numpy masks with physical spacing (per slice or per patient in 3D) ---------------------------------------------
# ``spacing_mm`` is always the spacing of the array's own axes, in array order: (row, column) for a slice,
# (slice, row, column) for a ``[z, y, x]`` volume, i.e. ``Geometry.spacing_mm[::-1]``.


def counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    """TP, FP, FN, TN of two binary masks of the same shape."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    return tp, fp, fn, int(p.size) - tp - fp - fn


def iou(pred: np.ndarray, truth: np.ndarray, empty: float = 1.0) -> float:
    """Eq. 9, IoU = TP / (TP + FP + FN); ``empty`` when both masks are empty."""
    tp, fp, fn, _ = counts(pred, truth)
    return tp / (tp + fp + fn) if tp + fp + fn else empty


def dice(pred: np.ndarray, truth: np.ndarray, empty: float = 1.0) -> float:
    """Eq. 10, Dice = 2 TP / (2 TP + FP + FN); ``empty`` when both masks are empty."""
    tp, fp, fn, _ = counts(pred, truth)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else empty


def pixel_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Eq. 11, (TP + TN) / all pixels."""
    tp, fp, fn, tn = counts(pred, truth)
    return (tp + tn) / (tp + fp + fn + tn)


def balanced_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean of sensitivity and specificity (the CIPA authors' "Acc"); a class absent from the truth counts 1."""
    tp, fp, fn, tn = counts(pred, truth)
    sens = tp / (tp + fn) if tp + fn else 1.0
    spec = tn / (tn + fp) if tn + fp else 1.0
    return 0.5 * (sens + spec)


def hd95(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing_mm: tuple[float, ...],
    both_empty: float = 0.0,
    one_empty: float = float("nan"),
) -> float:
    """Eq. 12, symmetric 95th-percentile Hausdorff distance in mm between the mask borders (MONAI).

    Both masks empty gives ``both_empty`` (0: nothing to miss); exactly one empty gives ``one_empty`` (NaN by
    default, so the case is counted apart instead of silently averaged; callers choose a fixed penalty instead).
    """
    import torch
    from monai.metrics import compute_hausdorff_distance

    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    if len(spacing_mm) != p.ndim:
        raise ValueError(f"spacing_mm {spacing_mm} has {len(spacing_mm)} entries for a {p.ndim}D mask")
    has_p, has_t = bool(p.any()), bool(t.any())
    if not has_p and not has_t:
        return float(both_empty)
    if not has_p or not has_t:
        return float(one_empty)
    with warnings.catch_warnings():  # MONAI 1.5+ warns about its own internal use of a deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_hausdorff_distance(
            torch.from_numpy(p)[None, None],
            torch.from_numpy(t)[None, None],
            include_background=True,
            percentile=95,
            directed=False,
            spacing=[float(s) for s in spacing_mm],
        )
    return float(value.reshape(-1)[0])


def surface_dice(
    pred: np.ndarray, truth: np.ndarray, spacing_mm: tuple[float, ...], tolerance_mm: float = 2.0
) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (Nikolov et al. 2021, MONAI): the share of both borders that
    lies within the tolerance of the other. 1 when both masks are empty, 0 when exactly one is."""
    import torch
    from monai.metrics import compute_surface_dice

    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from truth shape {t.shape}")
    has_p, has_t = bool(p.any()), bool(t.any())
    if not has_p and not has_t:
        return 1.0
    if not has_p or not has_t:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_surface_dice(
            torch.from_numpy(p)[None, None],
            torch.from_numpy(t)[None, None],
            class_thresholds=[float(tolerance_mm)],
            include_background=True,
            spacing=[float(s) for s in spacing_mm],
        )
    return float(value.reshape(-1)[0])


def volume_cc(mask: np.ndarray, spacing_mm: tuple[float, ...]) -> float:
    """Volume of a 3D mask in cc (ml) with anisotropic voxels."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing_mm)) / 1000.0


def overlap_volumes_cc(pred: np.ndarray, truth: np.ndarray, spacing_mm: tuple[float, ...]) -> dict[str, float]:
    """Predicted, true, false-positive and false-negative volumes and the signed difference (pred - truth), cc."""
    tp, fp, fn, _ = counts(pred, truth)
    voxel = float(np.prod(spacing_mm)) / 1000.0
    return {
        "pred_cc": (tp + fp) * voxel,
        "truth_cc": (tp + fn) * voxel,
        "false_positive_cc": fp * voxel,
        "false_negative_cc": fn * voxel,
        "volume_difference_cc": (fp - fn) * voxel,
    }
