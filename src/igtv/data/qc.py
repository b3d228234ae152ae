"""The paper's quality control of an ROI (volume >= 3 cc, SUVmax >= 3) and the statistics it is judged on."""

from __future__ import annotations

import numpy as np


def roi_qc(volume_cc: float, suv_max: float, min_volume_cc: float, min_suv_max: float) -> str:
    """'' when an ROI passes quality control, else the reason it is excluded."""
    if volume_cc <= 0:
        return "empty ROI (no voxels on the CT grid)"
    reasons = []
    if volume_cc < min_volume_cc:
        reasons.append(f"volume {volume_cc:.2f} cc < {min_volume_cc:g} cc")
    if suv_max < min_suv_max:
        reasons.append(f"SUVmax {suv_max:.2f} < {min_suv_max:g}")
    return "; ".join(reasons)


def roi_statistics(mask: np.ndarray, pet_suv_on_ct: np.ndarray, geom) -> dict:
    """Volume (cc, anisotropic voxels), SUVmax/mean, slice extent and centroid (patient mm) of a 3D mask."""
    n = int(mask.sum())
    if n == 0:
        return {"volume_cc": 0.0, "suv_max": 0.0, "suv_mean": 0.0, "n_slices": 0, "slices": [], "centroid_mm": None}
    zz, yy, xx = np.nonzero(mask)
    values = pet_suv_on_ct[mask]
    centroid = geom.index_to_patient(np.array([xx.mean(), yy.mean(), zz.mean()]))
    slices = sorted(set(int(z) for z in zz))
    return {
        "volume_cc": n * geom.voxel_volume_cc,
        "suv_max": float(values.max()),
        "suv_mean": float(values.mean()),
        "n_slices": len(slices),
        "slices": slices,
        "centroid_mm": [round(float(v), 2) for v in centroid],
    }


# --- one patient --------------------------------------------------------------------------------------------------
