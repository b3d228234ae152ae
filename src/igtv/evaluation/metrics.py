"""Segmentation metrics of the paper, Eqs. 9-12, as pure functions over binary masks."""

from __future__ import annotations

import warnings

import numpy as np
import torch

# --- the core: counts -> scores. Every score in igtv comes from these, on floats, numpy arrays or torch tensors ---
# The paper's empty-slice rule lives here: IoU and Dice are ``empty`` (1 by default: nothing to find, nothing
# found) when prediction and truth are both empty; a class absent from the truth counts 1 in the balanced accuracy.


def _ratio(num, den, empty: float):
    """num / den where den > 0, else ``empty``; counts are integers, so den > 0 means den >= 1."""
    if isinstance(den, torch.Tensor):
        return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(den, float(empty)))
    den_a = np.asarray(den, dtype=np.float64)
    out = np.where(den_a > 0, np.asarray(num, dtype=np.float64) / np.maximum(den_a, 1.0), float(empty))
    return float(out) if out.ndim == 0 else out


def iou_from_counts(tp, fp, fn, empty: float = 1.0):
    """Eq. 9: TP / (TP + FP + FN)."""
    return _ratio(tp, tp + fp + fn, empty)


def dice_from_counts(tp, fp, fn, empty: float = 1.0):
    """Eq. 10: 2 TP / (2 TP + FP + FN)."""
    return _ratio(2 * tp, 2 * tp + fp + fn, empty)


def accuracy_from_counts(tp, fp, fn, tn):
    """Eq. 11: (TP + TN) / all pixels."""
    return _ratio(tp + tn, tp + fp + fn + tn, 1.0)


def balanced_accuracy_from_counts(tp, fp, fn, tn):
    """Mean of sensitivity and specificity (the CIPA authors' "Acc")."""
    return 0.5 * (_ratio(tp, tp + fn, 1.0) + _ratio(tn, tn + fp, 1.0))


def batch_counts(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(B, ...) binary masks -> (B, 4) float64 counts TP, FP, FN, TN per image (torch, on the masks' device)."""
    p = pred.reshape(pred.shape[0], -1).bool()
    t = truth.reshape(truth.shape[0], -1).bool()
    tp = (p & t).sum(1)
    fp = (p & ~t).sum(1)
    fn = (~p & t).sum(1)
    tn = (~p & ~t).sum(1)
    return torch.stack([tp, fp, fn, tn], dim=1).double()


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
    """Eq. 9 of two masks; ``empty`` when both are empty."""
    tp, fp, fn, _ = counts(pred, truth)
    return iou_from_counts(tp, fp, fn, empty)


def dice(pred: np.ndarray, truth: np.ndarray, empty: float = 1.0) -> float:
    """Eq. 10 of two masks; ``empty`` when both are empty."""
    tp, fp, fn, _ = counts(pred, truth)
    return dice_from_counts(tp, fp, fn, empty)


def pixel_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Eq. 11 of two masks."""
    return accuracy_from_counts(*counts(pred, truth))


def balanced_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Balanced accuracy of two masks (see :func:`balanced_accuracy_from_counts`)."""
    return balanced_accuracy_from_counts(*counts(pred, truth))


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

    from igtv.geometry import bounding_box

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
    # both masks cut to their union's box + 2 voxels (clipped at the volume's edge) before MONAI, which crops to that
    # box + 1 itself: the same borders and distances, without converting and scanning a whole-body volume
    box = tuple(
        slice(max(b.start - 2, 0), min(b.stop + 2, n)) for b, n in zip(bounding_box(p | t), p.shape, strict=True)
    )
    p, t = p[box], t[box]
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


# --- lesions (26-connected components) ---------------------------------------------------------------------------
CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity: faces, edges and corners


def label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of a 3D mask: (int32 labels, count).

    Only the mask's bounding box is labelled (lesions are small next to a whole-body volume: 0.13 s -> a few ms for
    512 x 512 x 125); raster order inside the box is the volume's, so the labels are those of the whole volume."""
    labels, boxes = label_lesions_boxed(mask)
    return labels, len(boxes)


def label_lesions_boxed(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, ...]]]:
    """:func:`label_lesions` with each component's bounding box in the volume (``boxes[k - 1]`` is label ``k``'s),
    as ``scipy.ndimage.find_objects`` of the labels gives them, read on the mask's box only: find_objects over a
    whole 512 x 512 x 130 label volume takes ~45 ms, and post-processing asks once per rule set."""
    from scipy import ndimage

    from igtv.geometry import bounding_box

    mask = np.asarray(mask, dtype=bool)
    labels = np.zeros(mask.shape, dtype=np.int32)
    box = bounding_box(mask)
    if box is None:
        return labels, []
    sub, _ = ndimage.label(mask[box], structure=CONNECTIVITY)
    labels[box] = sub
    boxes = [  # labels are consecutive: find_objects has a box for every one
        tuple(slice(b.start + o.start, b.stop + o.start) for b, o in zip(found, box, strict=True))
        for found in ndimage.find_objects(sub)
    ]
    return labels, boxes


def lesion_detection(pred: np.ndarray, truth: np.ndarray, voxel_cc: float, avoid: np.ndarray | None = None) -> dict:
    """Lesion-level counts: true lesions hit / missed, false lesions (predicted components touching no true
    lesion), and the volume in cc of the false lesions and of the missed ones: autoPET's false-positive and
    false-negative volumes (``val_script.py`` of lab-midas/autoPET, with 18-connected components there), whereas
    :func:`overlap_volumes_cc` counts every wrong voxel, the edges of found lesions too. Components are 26-connected.
    With ``avoid`` (structures marked to be left out: the phantom's lymph nodes), ``false_lesions_avoid`` counts the
    false lesions touching one."""
    t_lab, n_t = label_lesions(truth)
    p_lab, n_p = label_lesions(pred)
    both = (t_lab > 0) & (p_lab > 0)
    hit_ids = np.unique(t_lab[both])
    hit = hit_ids.size
    touching = set(np.unique(p_lab[both]).tolist())
    false = [k for k in range(1, n_p + 1) if k not in touching]
    false_cc = float(np.isin(p_lab, false).sum()) * voxel_cc if false else 0.0
    missed_cc = float(((t_lab > 0) & ~np.isin(t_lab, hit_ids)).sum()) * voxel_cc
    out = {
        "lesions_true": int(n_t),
        "lesions_hit": int(hit),
        "lesions_missed": int(n_t - hit),
        "lesions_predicted": int(n_p),
        "false_lesions": len(false),
        "false_lesion_cc": false_cc,
        "missed_lesion_cc": missed_cc,
    }
    if avoid is not None:
        out["false_lesions_avoid"] = len(set(false) & set(np.unique(p_lab[avoid]).tolist()))
    return out
