"""The phantom's numba kernels give the NumPy reference's bits: lesion fields on random lesions (lobes,
satellites, spicules, necrosis, cavities; float32 and float64 boxes, shifted or not), the cropped ``shift_add_z``,
and whole patients with and without the kernels."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from igtv.phantom import kernels
from igtv.phantom.config import LUNG, PhantomConfig
from igtv.phantom.draw import sample_anatomy
from igtv.phantom.lesion import lesion_fields, sample_lesion
from igtv.phantom.motion import shift_add_z
from igtv.phantom.patient import simulate_patient
from tests.conftest import SMALL

pytest.importorskip("numba")


def _lesions(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    anat = sample_anatomy(rng, False)
    out = []
    for i in range(n):
        les = sample_lesion(anat, rng, cold=False, small=False, avoid=[], randomize=bool(i % 2))
        if i % 3 == 0:
            les = replace(les, necrosis=0.6)
        if i % 4 == 1:
            les = replace(les, cavity=0.4)
        if i % 5 == 2 and not les.spikes:
            les = replace(les, spikes=((0.6, 0.8, 0.0, 9.0, 2.5), (0.0, 0.0, 1.0, 6.0, 1.5)))
        out.append(les)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lesion_fields_kernel_matches_numpy_bitwise(dtype):
    features = set()
    for les in _lesions(12):
        r = les.radius + 4.0
        g = np.arange(-r, r, 1.37)
        x = (les.centre[0] + g).astype(dtype)[None, None, :]
        y = (les.centre[1] + g[::-1]).astype(dtype)[None, :, None]
        z = (les.centre[2] + g).astype(dtype)[:, None, None]
        for shift in ((0.0, 0.0, 0.0), les.displacement(0.37)):
            for uptake in (True, False):
                ref_in, ref_suv = lesion_fields(les, x, y, z, shift=shift, uptake=uptake, fast=False)
                fast_in, fast_suv = lesion_fields(les, x, y, z, shift=shift, uptake=uptake)
                assert ref_in.any() and ref_in.shape == fast_in.shape
                assert np.array_equal(ref_in, fast_in)
                if uptake:
                    assert ref_suv.dtype == fast_suv.dtype and np.array_equal(ref_suv, fast_suv)
        features |= {k for k, on in (("necrosis", les.necrosis), ("cavity", les.cavity), ("spikes", les.spikes),
                                     ("satellites", les.satellites)) if on}  # fmt: skip
    assert features == {"necrosis", "cavity", "spikes", "satellites"}  # every branch of the kernel was compared


def _shift_add_reference(vol, shifts_vox, weights):
    """The whole-volume loop that the cropped version replaced."""
    out = np.zeros_like(vol)
    kernel: dict[int, float] = {}
    for s, w in zip(shifts_vox, weights, strict=True):
        lo = math.floor(s)
        kernel[lo] = kernel.get(lo, 0.0) + w * (1 - (s - lo))
        kernel[lo + 1] = kernel.get(lo + 1, 0.0) + w * (s - lo)
    nz = vol.shape[0]
    for n, w in kernel.items():
        if w == 0 or abs(n) >= nz:
            continue
        if n >= 0:
            out[n:] += w * vol[: nz - n]
        else:
            out[:n] += w * vol[-n:]
    return out


def test_shift_add_z_crop_matches_whole_volume_bitwise():
    rng = np.random.default_rng(1)
    for _ in range(300):
        nz = int(rng.integers(1, 30))
        vol = np.zeros((nz, 9, 11), np.float32)
        if rng.random() < 0.9:  # otherwise all zero
            z0 = int(rng.integers(0, nz))
            z1 = int(rng.integers(z0 + 1, nz + 1))
            vol[z0:z1, 2:7, 3:9] = rng.normal(size=(z1 - z0, 5, 6))
        t = rng.uniform(0, 1, 16)
        shifts = (rng.uniform(-40, 40) * np.sin(np.pi * t) ** 4 + rng.uniform(-20, 20)) / rng.uniform(0.5, 3)
        weights = np.full(16, 1 / 16)
        assert np.array_equal(shift_add_z(vol, shifts, weights), _shift_add_reference(vol, shifts, weights))


def test_add_shift_z_of_a_part_adds_the_whole_volumes_shift_bitwise():
    """add_shift_z(target, part at origin) touches only where the shifted part reaches and leaves exactly the bits
    of target + shift_add_z(the whole volume), including parts shifted partly out of the volume."""
    from igtv.phantom.motion import add_shift_z

    rng = np.random.default_rng(2)
    for _ in range(200):
        nz = int(rng.integers(2, 25))
        target = rng.normal(size=(nz, 8, 10)).astype(np.float32)
        z0, y0, x0 = int(rng.integers(0, nz)), int(rng.integers(0, 4)), int(rng.integers(0, 5))
        part = rng.normal(size=(int(rng.integers(1, nz - z0 + 1)), 4, 5)).astype(np.float32)
        part[:, 0] = 0.0  # zero rows inside the part: its own non-zero box is smaller
        vol = np.zeros_like(target)
        vol[z0 : z0 + part.shape[0], y0 : y0 + 4, x0 : x0 + 5] = part
        t = rng.uniform(0, 1, 16)
        shifts = (rng.uniform(-30, 30) * np.sin(np.pi * t) ** 4 + rng.uniform(-10, 10)) / rng.uniform(0.5, 3)
        weights = np.full(16, 1 / 16)
        want = target + shift_add_z(vol, shifts, weights)
        add_shift_z(target, part, shifts, weights, (z0, y0, x0))
        assert np.array_equal(target, want)


def test_ct_finish_kernel_gives_the_numpy_paths_bits(monkeypatch):
    """finish_ct with numba (noise drawn slice by slice, one fused pass per slice) against NumPy's whole-volume
    noise, scipy's blur, rint and clip: the same int16 bits and the same generator state after, on values that
    reach both clip limits and on slices narrower than the filter."""
    from igtv.phantom.imaging import finish_ct

    for shape in ((5, 37, 29), (3, 2, 3), (2, 64, 64)):
        ct = np.random.default_rng(4).uniform(-1500, 3500, shape).astype(np.float32)
        ct[1], ct[-1, : shape[1] // 2] = -3000.0, 6000.0  # beyond both clip limits after the blur
        rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
        a = finish_ct(ct, rng_a, 37.0)
        with monkeypatch.context() as m:
            m.setattr(kernels, "fast", lambda: None)
            b = finish_ct(ct, rng_b, 37.0)
        assert a.dtype == b.dtype == np.int16 and np.array_equal(a, b)
        assert a.min() == -1024 and a.max() == 3071
        assert rng_a.random() == rng_b.random()


def test_whole_patient_identical_with_and_without_numba(monkeypatch):
    cfg = PhantomConfig(cohort="igtv", patients=2, seed=3, randomize=True, **SMALL)
    fast = [simulate_patient(cfg, i) for i in range(2)]
    monkeypatch.setattr(kernels, "fast", lambda: None)
    for i, a in enumerate(fast):
        b = simulate_patient(cfg, i)
        for field in ("ct_hu", "pet_suv", "gtv", "igtv"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        assert (a.igtv > 0).any()


def test_flag_reach_bounds_every_label_the_flags_change():
    """simulate_pet relabels only below flag_reach's z and inside its heart box: the flags must change nothing
    elsewhere, for anatomies with effusion, organs and both heart sizes (a 4 mm grid over the whole trunk)."""
    from igtv.phantom.anatomy import flag_reach, labels

    g = np.arange(-260.0, 260.0, 4.0, dtype=np.float32)
    x, y, z = g[None, None, :], g[None, :, None], np.arange(-160.0, 260.0, 4.0, dtype=np.float32)[:, None, None]
    effusions = 0
    for seed in range(6):
        anat = sample_anatomy(np.random.default_rng(seed), bool(seed % 2))
        if seed % 3 == 0:
            anat = replace(anat, effusion=((1.0, 40.0, 110.0), (-1.0, 30.0, 60.0)))
        effusions += bool(anat.effusion)
        none = labels(anat, x, y, z, heart=False, diaphragm=False)
        dia = labels(anat, x, y, z, heart=False)
        full = labels(anat, x, y, z)
        z_top, (lo, hi) = flag_reach(anat, margin_mm=0.0)
        changed = np.nonzero(none != dia)
        assert changed[0].size and z.ravel()[changed[0]].max() <= z_top
        zz, yy, xx = np.nonzero(dia != full)
        assert zz.size
        for axis, idx in ((x, xx), (y, yy), (z, zz)):
            k = {id(x): 0, id(y): 1, id(z): 2}[id(axis)]
            assert lo[k] <= axis.ravel()[idx].min() and axis.ravel()[idx].max() <= hi[k]
    assert effusions >= 2


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_gaussian_blur_gives_scipys_bits(mode):
    """The numba z and y passes do scipy's arithmetic in scipy's order: identical float32 bits, including axes
    shorter than the filter (reflected more than once) and skipped zero sigmas."""
    from scipy import ndimage

    from igtv.phantom.filters import gaussian_blur

    rng = np.random.default_rng(1)
    for shape, sigma in (((9, 40, 33), (1.7, 0.65, 2.2)), ((3, 5, 4), (2.5, 3.0, 0.7)), ((12, 17, 8), (0.0, 1.1, 1.1))):
        vol = (rng.standard_normal(shape) * 300).astype(np.float32)
        got = gaussian_blur(vol, sigma, mode=mode)
        assert got.dtype == np.float32 and np.array_equal(got, ndimage.gaussian_filter(vol, sigma, mode=mode))
        assert np.array_equal(vol, gaussian_blur(vol, (0.0, 0.0, 0.0), mode=mode))


def test_paint_tubes_culls_without_changing_a_label():
    """paint_tubes drops the branches outside the grid and paints the rest in one numba call: the same map as
    painting every tube with NumPy, with and without ``where``, on a whole grid, one slice and a sub-box."""
    from igtv.phantom.anatomy import labels
    from igtv.phantom.shapes import Points, paint_tube, paint_tubes

    anat = sample_anatomy(np.random.default_rng(4), False)
    assert len(anat.lung_tree) > 50
    g = np.arange(-200.0, 200.0, 3.0, dtype=np.float32)
    zs = np.arange(-60.0, 160.0, 5.0, dtype=np.float32)
    airway_painted = False
    for x, y, z in ((g[None, None, :], g[None, :, None], zs[:, None, None]),
                    (g[None, None, :], g[None, :, None], zs[20:21, None, None]),
                    (g[None, None, 40:70], g[None, 30:60, None], zs[5:30, None, None])):  # fmt: skip
        base = labels(anat, x, y, z)
        culled, every = base.copy(), base.copy()
        pts = Points(x, y, z)
        paint_tubes(culled, pts, anat.lung_tree, 99, grow=1.0)
        paint_tubes(culled, pts, anat.airways, 98, where=(LUNG, 99))
        for t in anat.lung_tree:
            paint_tube(every, pts, t, 99, grow=1.0)
        for t in anat.airways:
            paint_tube(every, pts, t, 98, where=(LUNG, 99))
        assert np.array_equal(culled, every) and (every == 99).any()
        airway_painted = airway_painted or bool((every == 98).any())
    assert airway_painted
