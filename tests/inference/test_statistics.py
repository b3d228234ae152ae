from __future__ import annotations

import numpy as np
import pytest

from igtv.geometry import Geometry
from igtv.inference import lesions
from igtv.inference.statistics import SPHERE_1CC_RADIUS_MM, lesion_statistics, sphere_kernel, suv_peak


def _brute_peak(pet, lesion, spacing_zyx, r):
    """Independent SUVpeak: for every lesion voxel, the mean of all image voxels within r mm (loops)."""
    idx = np.argwhere(np.ones(pet.shape, dtype=bool)).astype(float)
    coords = idx * np.asarray(spacing_zyx)
    flat = pet.reshape(-1)
    best = -np.inf
    for v in np.argwhere(lesion):
        d2 = ((coords - v * np.asarray(spacing_zyx)) ** 2).sum(1)
        best = max(best, flat[d2 <= r * r + 1e-9].mean())
    return best


def test_sphere_is_one_cc():
    ball = sphere_kernel((0.25, 0.25, 0.25))
    assert ball.sum() * 0.25**3 / 1000 == pytest.approx(1.0, rel=0.02)
    assert SPHERE_1CC_RADIUS_MM == pytest.approx(6.2035, abs=1e-4)


def test_stats_of_a_known_cube():
    geom = Geometry((20, 24, 24), (1.0, 1.0, 2.0), (-10.0, -20.0, 30.0))  # x, y, z spacing
    pet = np.ones(geom.shape_zyx, dtype=np.float32)
    mask = np.zeros(geom.shape_zyx, dtype=bool)
    mask[5:15, 7:17, 2:12] = True  # 10 slices x 10 rows x 10 columns
    pet[mask] = 4.0
    pet[10, 12, 6] = 6.0  # one hot voxel inside
    (s,) = lesion_statistics(mask, pet, geom)
    assert s["volume_cc"] == pytest.approx(1000 * 2.0 / 1000)
    assert s["suv_max"] == 6.0
    assert s["suv_mean"] == pytest.approx((999 * 4.0 + 6.0) / 1000)
    assert s["tlg"] == pytest.approx(2.0 * s["suv_mean"])
    # centroid: index centre (6.5, 11.5, 9.5) (x, y, z) -> origin + index * spacing
    assert s["centroid_mm"] == pytest.approx([-10.0 + 6.5, -20.0 + 11.5, 30.0 + 9.5 * 2.0])
    assert s["slice_range"] == [5, 14] and s["n_slices"] == 10
    expect = _brute_peak(pet, mask, (2.0, 1.0, 1.0), SPHERE_1CC_RADIUS_MM)
    assert s["suv_peak"] == pytest.approx(expect, rel=1e-9)
    assert 1.0 < s["suv_peak"] < 4.0  # the 12.4 mm sphere is wider than the 10 mm cube: background leaks in


def test_suv_peak_of_a_large_uniform_lesion_is_its_value():
    pet = np.full((30, 30, 30), 1.0)
    lesion = np.zeros_like(pet, dtype=bool)
    lesion[2:28, 2:28, 2:28] = True
    pet[lesion] = 7.5
    assert suv_peak(pet, lesion, (1.0, 1.0, 1.0)) == pytest.approx(7.5)


def test_statistics_stay_importable_from_lesions():
    """The statistics moved out of ``lesions`` (session 52) and are re-exported there for existing callers."""
    assert lesions.lesion_statistics is lesion_statistics and lesions.suv_peak is suv_peak
