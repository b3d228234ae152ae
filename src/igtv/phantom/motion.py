"""Breathing motion (Lujan s(t) = sin^4(pi t)): phases, diaphragm shifts, and the IGTV as the union over phases."""

from __future__ import annotations

import math

import numpy as np

from igtv.geometry import bounding_box


def breathing(t: np.ndarray | float) -> np.ndarray:
    """Lujan breathing signal sin^4(pi t): 0 at end exhale (t = 0), 1 at end inhale (t = 0.5)."""
    return np.sin(np.pi * np.asarray(t, dtype=np.float64)) ** 4


def shift_add_z(vol: np.ndarray, shifts_vox: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k w_k vol(z - s_k) with linear interpolation along axis 0 (zero outside).

    Computed over the box of ``vol``'s non-zero voxels only (the moving organs' excess activity fills a small part
    of the PET grid), with the same additions in the same order as over the whole volume: the same bits.
    """
    kernel: dict[int, float] = {}
    for s, w in zip(shifts_vox, weights, strict=True):
        lo = math.floor(s)
        f = s - lo
        kernel[lo] = kernel.get(lo, 0.0) + w * (1 - f)
        kernel[lo + 1] = kernel.get(lo + 1, 0.0) + w * f
    nz = vol.shape[0]
    out = np.zeros_like(vol)
    taps = [(n, w) for n, w in kernel.items() if w != 0 and abs(n) < nz]
    box = bounding_box(vol != 0)
    if not taps or box is None:
        return out
    (z0, z1), (y0, y1), (x0, x1) = ((sl.start, sl.stop) for sl in box)
    n_lo, n_hi = min(n for n, _ in taps), max(n for n, _ in taps)
    sub = vol[z0:z1, y0:y1, x0:x1]
    acc = np.zeros((z1 - z0 + n_hi - n_lo, y1 - y0, x1 - x0), dtype=vol.dtype)  # acc[a] is out[z0 + n_lo + a]
    for n, w in taps:
        acc[n - n_lo : n - n_lo + (z1 - z0)] += w * sub
    a0 = max(0, -(z0 + n_lo))  # what falls outside [0, nz) is dropped, as the zero padding of the definition says
    a1 = min(acc.shape[0], nz - (z0 + n_lo))
    if a1 > a0:
        out[z0 + n_lo + a0 : z0 + n_lo + a1, y0:y1, x0:x1] = acc[a0:a1]
    return out
