"""Patch geometry of the sampler: one affine per patch (centre, scale, rotation, flip) and the resampling of a
slice onto it, a plain crop when the affine is an integer shift (:mod:`igtv.data.sampling` draws with these)."""

from __future__ import annotations

import numpy as np


def patch_matrix(
    centre_yx: tuple[float, float], patch: int, scale: float = 1.0, angle_rad: float = 0.0, flip: bool = False
) -> np.ndarray:
    """3x3 matrix mapping patch (row, col, 1) to slice coordinates: the patch centre lands on ``centre_yx``,
    the patch is magnified by ``scale`` (> 1 zooms in), rotated by ``angle_rad`` and mirrored left-right."""
    c = (patch - 1) / 2.0
    to_centre = np.array([[1.0, 0.0, -c], [0.0, 1.0, -c], [0.0, 0.0, 1.0]])
    f = np.diag([1.0, -1.0 if flip else 1.0, 1.0])
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    rot = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    sc = np.diag([1.0 / scale, 1.0 / scale, 1.0])
    back = np.array([[1.0, 0.0, centre_yx[0]], [0.0, 1.0, centre_yx[1]], [0.0, 0.0, 1.0]])
    return back @ rot @ sc @ f @ to_centre


def is_crop(m: np.ndarray) -> bool:
    """Whether patch matrix ``m`` is a pure integer shift, which :func:`extract` cuts out with no interpolation."""
    return bool(np.allclose(m[:2, :2], np.eye(2)) and np.allclose(m[:2, 2], np.round(m[:2, 2])))


def extract(
    slice_yx: np.ndarray, m: np.ndarray, patch: int, order: int, cval: float, crop: bool | None = None
) -> np.ndarray:
    """Resample ``slice_yx`` on the patch grid given by matrix ``m`` (see :func:`patch_matrix`); ``crop`` is
    ``is_crop(m)`` when the caller extracts several slices with one matrix (else it is computed here)."""
    from scipy.ndimage import affine_transform

    if is_crop(m) if crop is None else crop:
        y0, x0 = int(round(m[0, 2])), int(round(m[1, 2]))  # pure integer shift: a crop, no interpolation
        out = np.full((patch, patch), cval, dtype=np.float32)
        ys = slice(max(y0, 0), min(y0 + patch, slice_yx.shape[0]))
        xs = slice(max(x0, 0), min(x0 + patch, slice_yx.shape[1]))
        if ys.stop > ys.start and xs.stop > xs.start:
            out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = slice_yx[ys, xs]
        return out
    return affine_transform(
        np.asarray(slice_yx, dtype=np.float32), m[:2, :2], m[:2, 2], output_shape=(patch, patch), order=order,
        mode="constant", cval=cval,
    )  # fmt: skip
