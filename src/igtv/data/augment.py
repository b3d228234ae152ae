"""Training augmentation of Sec. IV-E2, each op with probability p = 0.5, the same transform for every channel and
the mask:

- affine: shift within +-10 % of the image size and isotropic scale in [0.9, 1.1] about the centre;
- horizontal flip;
- random crop of 70-90 % of the area (square side fraction sqrt(area)), resized back to the full size.

The three ops are composed into one 3x3 matrix (:func:`augmentation_matrix`, a pure function of the random
draws) and applied once with ``scipy.ndimage.affine_transform``: bilinear for images, nearest for the mask, so
image and mask stay aligned and the image is interpolated only once. Outside the image is 0 (black / background).
MONAI's ``RandAffined`` + ``RandFlipd`` + ``RandSpatialCropd`` + ``Resized`` do the same in four resamplings; one is
cheaper and sharper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _shift(dy: float, dx: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dy], [0.0, 1.0, dx], [0.0, 0.0, 1.0]])


def _scale(sy: float, sx: float) -> np.ndarray:
    return np.diag([sy, sx, 1.0])


def augmentation_matrix(
    shape_hw: tuple[int, int],
    rng: np.random.Generator,
    p: float = 0.5,
    shift: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
    crop_area: tuple[float, float] = (0.7, 0.9),
) -> tuple[np.ndarray, dict]:
    """(3x3 matrix mapping output (row, col, 1) to input coordinates, the ops drawn)."""
    h, w = shape_hw
    c = _shift((h - 1) / 2, (w - 1) / 2)
    c_inv = _shift(-(h - 1) / 2, -(w - 1) / 2)
    m = np.eye(3)
    ops: dict = {}
    if rng.random() < p:  # affine: out = s (in - c) + c + t  ->  in = c + (out - c - t) / s
        s = rng.uniform(*scale)
        ty, tx = rng.uniform(-shift, shift, size=2) * (h, w)
        m = m @ (c @ _scale(1 / s, 1 / s) @ c_inv @ _shift(-ty, -tx))
        ops["affine"] = {"scale": float(s), "shift_px": [float(ty), float(tx)]}
    if rng.random() < p:  # horizontal flip: in_col = w - 1 - out_col
        m = m @ np.array([[1.0, 0.0, 0.0], [0.0, -1.0, w - 1.0], [0.0, 0.0, 1.0]])
        ops["flip"] = True
    if rng.random() < p:  # crop a square-ish box of the area fraction, resized back
        f = float(np.sqrt(rng.uniform(*crop_area)))
        y0 = rng.uniform(0, (1 - f) * h)
        x0 = rng.uniform(0, (1 - f) * w)
        m = m @ (_shift(y0, x0) @ _scale(f, f))
        ops["crop"] = {"fraction": f * f, "origin_px": [float(y0), float(x0)]}
    return m, ops


def apply_matrix(image: np.ndarray, mask: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample (C, H, W) ``image`` bilinearly and (1, H, W) ``mask`` by nearest neighbour with matrix ``m``."""
    from scipy.ndimage import affine_transform

    if np.allclose(m, np.eye(3)):
        return image, mask
    lin, off = m[:2, :2], m[:2, 2]
    img = np.stack([affine_transform(ch, lin, off, order=1, mode="constant", cval=0.0) for ch in image])
    msk = np.stack([affine_transform(ch, lin, off, order=0, mode="constant", cval=0.0) for ch in mask])
    return img.astype(np.float32), msk.astype(np.float32)


@dataclass(frozen=True)
class Augment:
    """Sec. IV-E2 augmentation as a dataset transform: ``(image, mask, rng) -> (image, mask)``."""

    p: float = 0.5
    shift: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    crop_area: tuple[float, float] = (0.7, 0.9)

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        m, _ = augmentation_matrix(image.shape[-2:], rng, self.p, self.shift, self.scale, self.crop_area)
        return apply_matrix(image, mask, m)
