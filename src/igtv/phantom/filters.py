"""Gaussian blur of the phantom's volumes: ``scipy.ndimage.gaussian_filter``'s result, bit for bit.

scipy filters one axis at a time and walks every axis but the last with a stride, which on a C-ordered
(z, y, x) volume makes the z and y passes 3-4x slower than the x pass. With numba installed, those passes go
through :func:`igtv.phantom.fast.blur_middle_axis_kernel`, which does scipy's arithmetic in scipy's order with the
contiguous axis innermost, and the x pass through :func:`~igtv.phantom.fast.blur_last_axis_kernel`, scipy's line
buffer in vectorised loops. ``tests/phantom/test_fast.py`` checks the bits.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from igtv.phantom import kernels as switch


def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The normalised float64 kernel scipy uses for ``sigma`` (radius ``int(truncate * sigma + 0.5)``)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    return phi / phi.sum()


def gaussian_blur(
    vol: np.ndarray, sigma_vox: tuple[float, ...], mode: str = "reflect", fast: bool = True
) -> np.ndarray:
    """``ndimage.gaussian_filter(vol, sigma_vox, mode=mode)`` of a float32 volume ('reflect' or 'constant' with
    zeros); ``fast=False`` (or no numba) runs scipy itself."""
    if mode not in ("reflect", "constant"):
        raise ValueError(f"gaussian_blur: mode {mode!r} (reflect or constant)")
    kernels = switch.fast() if fast else None
    if kernels is None or vol.dtype != np.float32 or vol.ndim != 3:
        return ndimage.gaussian_filter(vol, sigma_vox, mode=mode)
    out = vol
    for axis, sigma in enumerate(sigma_vox):
        if sigma <= 1e-15:  # scipy skips these axes too
            continue
        src = np.ascontiguousarray(out)
        if axis == 2:
            res = np.empty_like(src)
            kernels.blur_last_axis_kernel(src.reshape(-1, src.shape[2]), gaussian_weights(sigma), mode == "reflect",
                                          res.reshape(-1, src.shape[2]))  # fmt: skip
            out = res
            continue
        view = src.reshape(1, src.shape[0], -1) if axis == 0 else src  # (1, z, y*x) or (z, y, x)
        res = np.empty_like(view)
        kernels.blur_middle_axis_kernel(view, gaussian_weights(sigma), mode == "reflect", res)
        out = res.reshape(vol.shape)
    return out if out is not vol else vol.copy()
