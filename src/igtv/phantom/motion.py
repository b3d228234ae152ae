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
    out = np.zeros_like(vol)
    add_shift_z(out, vol, shifts_vox, weights)
    return out


def add_shift_z(
    target: np.ndarray,
    part: np.ndarray,
    shifts_vox: np.ndarray,
    weights: np.ndarray,
    origin: tuple[int, ...] = (0, 0, 0),
) -> None:
    """``target += shift_add_z(vol)``, where ``vol`` is zero but for ``part`` at ``origin`` (z, y, x) of a volume
    of ``target``'s shape, touching only the voxels the shifted part reaches: the same bits as adding the whole
    shifted volume (adding the zeros elsewhere changes nothing)."""
    kernel: dict[int, float] = {}
    for s, w in zip(shifts_vox, weights, strict=True):
        lo = math.floor(s)
        f = s - lo
        kernel[lo] = kernel.get(lo, 0.0) + w * (1 - f)
        kernel[lo + 1] = kernel.get(lo + 1, 0.0) + w * f
    nz = target.shape[0]
    taps = [(n, w) for n, w in kernel.items() if w != 0 and abs(n) < nz]
    box = bounding_box(part != 0)
    if not taps or box is None:
        return
    (z0, z1), (y0, y1), (x0, x1) = ((sl.start + o, sl.stop + o) for sl, o in zip(box, origin, strict=True))
    n_lo, n_hi = min(n for n, _ in taps), max(n for n, _ in taps)
    sub = part[box]
    acc = np.zeros((z1 - z0 + n_hi - n_lo, y1 - y0, x1 - x0), dtype=part.dtype)  # acc[a] is out[z0 + n_lo + a]
    for n, w in taps:
        acc[n - n_lo : n - n_lo + (z1 - z0)] += w * sub
    a0 = max(0, -(z0 + n_lo))  # what falls outside [0, nz) is dropped, as the zero padding of the definition says
    a1 = min(acc.shape[0], nz - (z0 + n_lo))
    if a1 > a0:
        target[z0 + n_lo + a0 : z0 + n_lo + a1, y0:y1, x0:x1] += acc[a0:a1]
