"""Classic PET threshold contouring, the rows of Table II that need no training.

Both act inside the lesion's neighbourhood, as a physician's volume of interest would: the bounding box of the
true contour on the slice, widened by 15 mm (or by 1/32 of the image side when the pixel size is unknown).

- ``pet41``: SUV >= 41 % of the lesion's SUVmax (the EANM recommendation for FDG; the 3D ROI SUVmax from
  ``rois.csv`` when the dataset has it, else the neighbourhood's maximum on the slice);
- ``suv25``: SUV >= 2.5 (absolute threshold).

SUV is recovered from the PET PNGs: LUCID windows store SUV / ROI SUVmax x 255 (hotter organs saturate, which
does not change either threshold below the ROI SUVmax), PCLT20K windows store SUV / 15 x 255.
"""

from __future__ import annotations

import numpy as np

RULES = ("pet41", "suv25")
MARGIN_MM = 15.0


def neighbourhood(truth: np.ndarray, margin_px: int) -> np.ndarray:
    """Boolean box around the true contour of a slice widened by ``margin_px`` (empty when the truth is)."""
    box = np.zeros_like(truth, dtype=bool)
    rows, cols = np.nonzero(truth)
    if rows.size == 0:
        return box
    r0, r1 = max(rows.min() - margin_px, 0), min(rows.max() + margin_px + 1, truth.shape[0])
    c0, c1 = max(cols.min() - margin_px, 0), min(cols.max() + margin_px + 1, truth.shape[1])
    box[r0:r1, c0:c1] = True
    return box


def threshold_mask(
    pet_suv: np.ndarray, truth: np.ndarray, rule: str, margin_px: int, roi_suv_max: float | None = None
) -> np.ndarray:
    """One slice's threshold contour (see the module docstring)."""
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; expected one of {RULES}")
    voi = neighbourhood(truth, margin_px)
    if not voi.any():
        return voi
    if rule == "suv25":
        return voi & (pet_suv >= 2.5)
    ref = roi_suv_max if roi_suv_max else float(pet_suv[voi].max())
    return voi & (pet_suv >= 0.41 * ref)


def threshold_volume(
    pet_suv: np.ndarray,
    truth: np.ndarray,
    spacing_zyx_mm: tuple[float, float, float],
    rule: str,
    margin_mm: float = MARGIN_MM,
) -> np.ndarray:
    """3D threshold contour for the whole-patient reading: for each true lesion (26-connected), its bounding box
    widened by ``margin_mm`` is the volume of interest and the rule is applied inside it (41 % of the box's
    SUVmax, or SUV >= 2.5); the union over lesions. The truth only places the boxes, as a physician's VOI would."""
    from scipy import ndimage

    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; expected one of {RULES}")
    lab, _ = ndimage.label(truth, structure=np.ones((3, 3, 3), dtype=bool))
    out = np.zeros(truth.shape, dtype=bool)
    for box in ndimage.find_objects(lab):
        if box is None:
            continue
        grown = tuple(
            slice(max(b.start - int(np.ceil(margin_mm / s)), 0), min(b.stop + int(np.ceil(margin_mm / s)), n))
            for b, s, n in zip(box, spacing_zyx_mm, truth.shape, strict=True)
        )
        voi = pet_suv[grown]
        cut = 2.5 if rule == "suv25" else 0.41 * float(voi.max())
        out[grown] |= voi >= cut
    return out
