"""Breathing motion (Lujan s(t) = sin^4(pi t)): phases, diaphragm shifts, and the IGTV as the union over phases."""

from __future__ import annotations

import math

import numpy as np


def breathing(t: np.ndarray | float) -> np.ndarray:
    """Lujan breathing signal sin^4(pi t): 0 at end exhale (t = 0), 1 at end inhale (t = 0.5)."""
    return np.sin(np.pi * np.asarray(t, dtype=np.float64)) ** 4


def shift_add_z(vol: np.ndarray, shifts_vox: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k w_k vol(z - s_k) with linear interpolation along axis 0 (zero outside)."""
    out = np.zeros_like(vol)
    kernel: dict[int, float] = {}
    for s, w in zip(shifts_vox, weights, strict=True):
        lo = math.floor(s)
        f = s - lo
        kernel[lo] = kernel.get(lo, 0.0) + w * (1 - f)
        kernel[lo + 1] = kernel.get(lo + 1, 0.0) + w * f
    nz = vol.shape[0]
    for n, w in kernel.items():
        if w == 0 or abs(n) >= nz:
            continue
        if n >= 0:
            out[n:] += w * vol[: nz - n]
        else:
            out[:n] += w * vol[-n:]
    return out
