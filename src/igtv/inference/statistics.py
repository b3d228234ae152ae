"""Per-lesion PET statistics of a mask: MTV, SUVmax/mean/peak, TLG.

Lesions are 26-connected components of the mask. SUVpeak follows PERCIST: the highest mean SUV in a 1 cc sphere
(radius 6.2 mm) centred on a voxel of the lesion, the sphere built in millimetres on the (anisotropic) CT grid.
"""

from __future__ import annotations

import numpy as np

from igtv.evaluation.metrics import label_lesions
from igtv.geometry import Geometry

SPHERE_1CC_RADIUS_MM = (3.0 / (4.0 * np.pi)) ** (1.0 / 3.0) * 10.0  # 6.2035 mm


def sphere_kernel(spacing_zyx_mm: tuple[float, float, float], radius_mm: float = SPHERE_1CC_RADIUS_MM) -> np.ndarray:
    """Boolean ball of ``radius_mm`` on a grid of the given spacing (voxel centres inside the sphere)."""
    half = [int(np.floor(radius_mm / s)) for s in spacing_zyx_mm]
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, spacing_zyx_mm, strict=True)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    return zz**2 + yy**2 + xx**2 <= radius_mm**2 + 1e-9


def suv_peak(
    pet_suv: np.ndarray,
    lesion: np.ndarray,
    spacing_zyx_mm: tuple[float, float, float],
    radius_mm: float = SPHERE_1CC_RADIUS_MM,
) -> float:
    """Highest mean SUV of a ``radius_mm`` sphere centred on a lesion voxel (the sphere may reach outside the
    lesion, as in PERCIST; outside the image it is cut)."""
    from scipy import ndimage

    ball = sphere_kernel(spacing_zyx_mm, radius_mm)
    pad = [k // 2 for k in ball.shape]
    zz, yy, xx = np.nonzero(lesion)
    if zz.size == 0:
        return 0.0
    lo = [max(int(a.min()) - p, 0) for a, p in zip((zz, yy, xx), pad, strict=True)]
    hi = [min(int(a.max()) + p + 1, n) for a, p, n in zip((zz, yy, xx), pad, pet_suv.shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    sub = pet_suv[box].astype(np.float64)
    inside = np.ones_like(sub)
    sums = ndimage.correlate(sub, ball.astype(np.float64), mode="constant", cval=0.0)
    n = ndimage.correlate(inside, ball.astype(np.float64), mode="constant", cval=0.0)
    means = sums / np.maximum(n, 1.0)
    return float(means[lesion[box]].max())


def lesion_statistics(mask: np.ndarray, pet_suv: np.ndarray, geom: Geometry) -> list[dict]:
    """Per lesion (largest first): MTV cc, SUVmax, SUVmean, SUVpeak, TLG (= MTV x SUVmean, cc x SUV), centroid in
    patient mm (LPS), slice index range and the number of slices."""
    from igtv.data.qc import roi_statistics

    labels, n = label_lesions(mask)
    spacing_zyx = tuple(geom.spacing_mm[::-1])
    out = []
    for lab in range(1, n + 1):
        comp = labels == lab
        st = roi_statistics(comp, pet_suv, geom)  # volume, SUVmax/mean, centroid, slices: as prepare's QC
        out.append(
            {
                "volume_cc": st["volume_cc"],
                "suv_max": st["suv_max"],
                "suv_mean": st["suv_mean"],
                "suv_peak": suv_peak(pet_suv, comp, spacing_zyx),
                "tlg": st["volume_cc"] * st["suv_mean"],
                "centroid_mm": st["centroid_mm"],
                "slice_range": [st["slices"][0], st["slices"][-1]],
                "n_slices": st["n_slices"],
            }
        )
    out.sort(key=lambda r: -r["volume_cc"])
    return [{**r, "lesion": i} for i, r in enumerate(out, start=1)]
