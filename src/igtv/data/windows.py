"""Intensity windows of the paper (Sec. III-B) as pure functions mapping to [0, 255]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowPreset:
    """CT window in HU and PET scaling rule of one dataset convention."""

    name: str
    ct_hu: tuple[float, float]
    pet_mode: str  # "suv": fixed SUV range; "roi_max": divide by the ROI's SUVmax
    pet_suv: tuple[float, float] = (0.0, 15.0)


LUCID = WindowPreset("lucid", (-1350.0, 150.0), "roi_max")
PCLT20K = WindowPreset("pclt20k", (-1200.0, 200.0), "suv", (0.0, 15.0))
PRESETS = {p.name: p for p in (LUCID, PCLT20K)}


def window_ct(ct_hu: np.ndarray, lo_hu: float, hi_hu: float) -> np.ndarray:
    """Linear CT window [lo_hu, hi_hu] -> float [0, 255] (clipped)."""
    return (np.clip((np.asarray(ct_hu, dtype=np.float32) - lo_hu) / (hi_hu - lo_hu), 0.0, 1.0) * 255.0).astype(
        np.float32
    )


def scale_pet_suv(pet_suv: np.ndarray, lo_suv: float, hi_suv: float) -> np.ndarray:
    """PET in SUV units, fixed range [lo_suv, hi_suv] -> float [0, 255] (PCLT20K convention)."""
    return window_ct(pet_suv, lo_suv, hi_suv)


def scale_pet_roi_max(pet_suv: np.ndarray, roi_suv_max: float) -> np.ndarray:
    """PET divided by the ROI's SUVmax -> float [0, 255] (LUCID convention: hot organs saturate, not the ROI)."""
    if roi_suv_max <= 0:
        raise ValueError(f"ROI SUVmax must be positive, got {roi_suv_max}")
    return window_ct(pet_suv, 0.0, roi_suv_max)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
