"""``igtv predict --compare``: a predicted mask against the ROIs of a reference RTSTRUCT or SEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def compare_with_reference(
    mask: np.ndarray, reference: Path, roi_name: str | None, ct, default_roi: str
) -> tuple[dict, np.ndarray]:
    """Dice, HD95, surface Dice at 2 mm and FP/FN volumes of ``mask`` against the ROI(s) of a reference RTSTRUCT
    or SEG named like ``roi_name`` (default: like ``default_roi``, or its only ROI), read as ``prepare`` reads."""
    from igtv.dicom.index import DicomInputError, roi_matches
    from igtv.dicom.structures import read_roi_masks, structure_series
    from igtv.evaluation.metrics import dice, hd95, lesion_detection, overlap_volumes_cc, surface_dice

    info = structure_series(reference)
    wanted = roi_name or default_roi
    if roi_name is None and len(info.roi_names) == 1 and not roi_matches(info.roi_names[0], wanted):
        wanted = info.roi_names[0]
    masks = read_roi_masks(info, ct, wanted)
    if not masks:
        raise DicomInputError(
            f"{reference}: no ROI named like {wanted!r} (ROIs: {', '.join(info.roi_names) or 'none'}); "
            "use --compare-roi"
        )
    ref = np.logical_or.reduce(list(masks.values()))
    spacing = tuple(ct.geometry.spacing_mm[::-1])
    out = {
        "reference_rois": len(masks),
        "dice": dice(mask, ref),
        "hd95_mm": hd95(mask, ref, spacing),
        "surface_dice_2mm": surface_dice(mask, ref, spacing, 2.0),
        **overlap_volumes_cc(mask, ref, spacing),
        **lesion_detection(mask, ref, ct.geometry.voxel_volume_cc),
    }
    return out, ref
