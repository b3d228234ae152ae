"""Where a patient is: the body (without the table and arms) and the thorax region (lungs + mediastinum) of a CT,
found from HU alone. Post-processing keeps predicted components in the thorax region, prediction tiles it, and the
patch sampler can centre negatives in it."""

from __future__ import annotations

import numpy as np

from igtv.evaluation.metrics import CONNECTIVITY
from igtv.geometry import Geometry

LUNG_HU = -400.0


def body_mask(ct_hu: np.ndarray, pixel_mm: float = 1.0, shell_mm: float = 2.5) -> np.ndarray:
    """The patient's body with its air spaces: the largest connected region of CT > -400 HU after an in-plane
    opening that cuts shells thinner than about 2 ``shell_mm`` (a carbon-fibre table top, a blanket) off it, grown
    back and with each slice's holes (lungs, airways) filled. Arms and the table, not joined to the trunk, are
    left out."""
    from scipy import ndimage

    solid = (np.asarray(ct_hu) > LUNG_HU).view(np.uint8)
    r = int(shell_mm / pixel_mm)
    k = (1, 2 * r + 1, 2 * r + 1)
    opened = ndimage.maximum_filter(ndimage.minimum_filter(solid, k), k) if r else solid  # separable: fast
    lab, n = ndimage.label(opened, structure=CONNECTIVITY)
    if n == 0:
        return np.zeros(solid.shape, bool)
    largest = (lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)).view(np.uint8)
    grown = (ndimage.maximum_filter(largest, k) & solid).astype(bool)
    filled = np.zeros(grown.shape, bool)
    for z in range(grown.shape[0]):  # each slice's holes (lungs, airways), in the body's box
        ys, xs = np.nonzero(grown[z])
        if ys.size:
            box = (z, slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            filled[box] = ndimage.binary_fill_holes(grown[box])
    return filled


def thorax_region(ct_hu: np.ndarray, geom: Geometry, margin_mm: float = 10.0, min_lung_cc: float = 50.0) -> np.ndarray:
    """Lungs + mediastinum: per axial slice, the convex hull of the lung voxels, grown by ``margin_mm`` in-plane.

    Lungs are the connected air regions (CT < -400 HU) inside the body (:func:`body_mask`: the patient table's
    foam core is not) that do not touch the slice border and hold at least ``min_lung_cc``; the hull of both
    lungs on a slice covers the mediastinum between them (heart, great vessels, hilum) and the tumours inside or
    against the lungs. Slices without lung (neck, abdomen below the lung bases) get no region.
    """
    from scipy import ndimage
    from skimage.morphology import convex_hull_image

    air = (np.asarray(ct_hu) < LUNG_HU) & body_mask(ct_hu, min(geom.spacing_mm[:2]))
    lab, n = ndimage.label(air, structure=CONNECTIVITY)
    edges = (lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1])
    border = set(np.unique(np.concatenate([e.ravel() for e in edges])).tolist())
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:] * geom.voxel_volume_cc  # every labelled voxel is air
    keep = [i + 1 for i, v in enumerate(sizes) if v >= min_lung_cc and (i + 1) not in border]
    lungs = np.isin(lab, keep)
    region = np.zeros(lungs.shape, dtype=bool)
    sx, sy = geom.spacing_mm[0], geom.spacing_mm[1]
    ry, rx = int(np.ceil(margin_mm / sy)) + 1, int(np.ceil(margin_mm / sx)) + 1
    ny, nx = lungs.shape[1:]
    for z in range(lungs.shape[0]):
        ys, xs = np.nonzero(lungs[z])
        if ys.size == 0:
            continue
        # work in the lungs' box grown by the margin: the hull lies inside the box, its growth inside the margin
        y0, y1 = max(ys.min() - ry, 0), min(ys.max() + ry + 1, ny)
        x0, x1 = max(xs.min() - rx, 0), min(xs.max() + rx + 1, nx)
        hull = convex_hull_image(lungs[z, y0:y1, x0:x1])
        if margin_mm <= 0:
            region[z, y0:y1, x0:x1] = hull
            continue
        # grow by margin_mm with a distance transform (a dilation with a disk of ~20 px is 30x slower)
        region[z, y0:y1, x0:x1] = ndimage.distance_transform_edt(~hull, sampling=(sy, sx)) <= margin_mm
    return region


def uptake_region(pet_suv: np.ndarray, geom: Geometry, min_suv: float, reach_mm: float) -> np.ndarray:
    """Voxels within ``reach_mm`` of a voxel of SUV >= ``min_suv`` along every axis (a box around each hot voxel,
    so a superset of the ball of that radius)."""
    from scipy import ndimage

    hot = (np.asarray(pet_suv) >= min_suv).view(np.uint8)
    if not hot.any():
        return np.zeros(hot.shape, dtype=bool)
    sx, sy, sz = geom.spacing_mm
    size = tuple(2 * int(np.ceil(reach_mm / s)) + 1 for s in (sz, sy, sx))
    return ndimage.maximum_filter(hot, size=size).astype(bool)  # a box: three 1D passes


def tile_region(
    thorax: np.ndarray | None, pet_suv: np.ndarray, geom: Geometry, min_suv: float, reach_mm: float
) -> np.ndarray | None:
    """Where the sliding window must look (None: everywhere): ``thorax`` (None: no limit) and, with ``min_suv`` and
    ``reach_mm`` > 0, within ``reach_mm`` of uptake of at least ``min_suv``. Post-processing drops every component
    whose SUVmax is below ``min_suv`` (:func:`igtv.inference.lesions.prediction_tiles`), and each kept one
    holds such a voxel, so tiles farther from all of them change only components that reach farther than
    ``reach_mm`` from their own uptake."""
    if min_suv <= 0 or reach_mm <= 0:
        return thorax
    near = uptake_region(pet_suv, geom, min_suv, reach_mm)
    return near if thorax is None else thorax & near
