"""Patch sampler: geometry of the patches, foreground share, negatives on hot organs, windows, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from igtv.data.affine import extract, is_crop, patch_matrix
from igtv.data.sampling import (
    PatchDataset,
    PatchSpec,
    build_case,
    draw_centre,
    hot_weights,
    resample_inplane,
    resample_to_shape,
    sample_patch,
)


def synthetic_case(name="P1"):
    """A 20 x 120 x 100 body at 1 mm: soft tissue, a hot 'organ' (SUV 6, not target) and a target sphere."""
    z, y, x = np.mgrid[0:20, 0:120, 0:100]
    ct = np.full((20, 120, 100), -1000.0, np.float32)
    ct[:, 10:110, 10:90] = 40.0
    pet = np.full(ct.shape, 1.0, np.float32)
    organ = (y - 80) ** 2 + (x - 30) ** 2 < 12**2
    pet[organ] = 6.0
    target = ((z - 10) ** 2 * 4 + (y - 40) ** 2 + (x - 65) ** 2) < 8**2
    pet[target] = 9.0
    return build_case(name, ct, pet, target, (2.0, 1.0, 1.0), 2.0), organ


def test_resample_inplane_halves_and_round_trips():
    vol = np.zeros((2, 40, 60), np.float32)
    vol[:, 10:30, 20:40] = 1.0
    small = resample_inplane(vol, (1.0, 1.0), 2.0)
    assert small.shape == (2, 20, 30)
    assert small.sum() == pytest.approx(vol.sum() / 4, rel=1e-5)  # area averaging keeps the mean
    back = resample_to_shape(small, (40, 60))
    assert back.shape == vol.shape and np.abs(back - vol).mean() < 0.05
    mask = resample_inplane(vol, (1.0, 1.0), 2.0, kind="mask")
    assert mask.dtype == bool and mask.sum() == 2 * 10 * 10


def test_patch_matrix_centres_and_flips():
    img = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    m = patch_matrix((50.0, 60.0), 16)
    p = extract(img, m, 16, 1, -1.0)
    assert p.shape == (16, 16)
    assert np.isclose(p[7:9, 7:9].mean(), img[50, 60])  # the patch centre (7.5, 7.5) lands on the slice point
    flipped = extract(img, patch_matrix((50.0, 60.0), 16, flip=True), 16, 1, -1.0)
    assert np.allclose(flipped, p[:, ::-1])
    edge = extract(img, patch_matrix((2.0, 2.0), 16), 16, 1, -7.0)  # outside the slice: the fill value
    assert (edge[:4, :4] == -7.0).all()
    # a pure integer shift is cut out, anything else interpolated; the caller may decide once for several slices
    rotated = patch_matrix((50.0, 60.0), 16, angle_rad=0.3)
    assert is_crop(patch_matrix((50.5, 60.5), 16)) and not is_crop(rotated) and not is_crop(m)
    for mat in (patch_matrix((50.5, 60.5), 16), rotated):
        assert np.array_equal(extract(img, mat, 16, 1, -1.0, is_crop(mat)), extract(img, mat, 16, 1, -1.0))


def test_foreground_share_negatives_and_geometry():
    case, _ = synthetic_case()
    assert len(case.lesions) == 1 and len(case.hot) == 1
    spec = PatchSpec(patch=32, in_slices=3, fg_fraction=0.5, hot_fraction=0.3, augment=False)
    ds = PatchDataset([case], spec, n=400, seed=3)
    kinds = {"lesion": 0, "hot": 0, "body": 0}
    fg_in_lesion_patches = []
    for i in range(len(ds)):
        s = ds[i]
        assert tuple(s["image"].shape) == (6, 32, 32) and tuple(s["mask"].shape) == (1, 32, 32)
        assert float(s["image"].min()) >= 0.0 and float(s["image"].max()) <= 255.0
        kind = s["item"].split("/")[1]
        kinds[kind] += 1
        if kind == "lesion":
            fg_in_lesion_patches.append(float(s["mask"].sum()) > 0)
        else:
            pet_centre = s["image"][4]  # PET slice t
            if kind == "hot":  # centred on the hot organ: hot PET in the patch, no target
                assert float(pet_centre.max()) >= 6.0 / 15.0 * 255 - 1
    assert 0.4 < kinds["lesion"] / 400 < 0.6
    assert 0.2 < kinds["hot"] / 400 < 0.4
    assert kinds["body"] > 40
    assert np.mean(fg_in_lesion_patches) > 0.9  # the jitter never throws the lesion out of the patch
    # deterministic in (seed, epoch, index), different across epochs
    a, b = ds[5]["image"], ds[5]["image"]
    assert np.array_equal(a, b)
    ds.set_epoch(1)
    assert not np.array_equal(a, ds[5]["image"])


def test_lucid_window_divides_by_the_reference():
    case, _ = synthetic_case()
    spec = PatchSpec(patch=32, in_slices=1, preset="lucid", fg_fraction=1.0, hot_fraction=0.0, augment=False)
    img, mask, _ = sample_patch(case, spec, np.random.default_rng(0))
    assert img.shape == (2, 32, 32)
    assert img[1].max() == pytest.approx(255.0, abs=1.0)  # lesion SUVmax 9 -> 255


def test_mask_follows_the_augmentation():
    case, _ = synthetic_case()
    spec = PatchSpec(patch=32, in_slices=1, fg_fraction=1.0, hot_fraction=0.0, augment=True)
    rng = np.random.default_rng(11)
    for _ in range(20):
        img, mask, _ = sample_patch(case, spec, rng)
        pet = img[1]
        if mask.any():  # the target is where the PET is 9 SUV: mask and image stay aligned under the affine
            assert pet[mask[0] > 0].mean() > pet[mask[0] == 0].mean() + 50


def test_make_cold_lowers_the_tumour_only():
    from igtv.data.sampling import make_cold

    pet = np.full((3, 40, 40), 1.0, np.float32)
    pet[:, 5:10, 5:10] = 6.0  # a hot organ far from the lesion
    yy, xx = np.mgrid[0:40, 0:40]
    lesion = np.broadcast_to(((yy - 25) ** 2 + (xx - 25) ** 2 < 6**2).astype(np.float32), pet.shape).copy()
    pet[lesion > 0] = 8.0
    cold, factor = make_cold(pet, lesion, 2.0, pixel_mm=2.0)
    assert factor == pytest.approx(0.25)
    assert cold[lesion > 0].max() == pytest.approx(2.0, rel=1e-5)  # the tumour's SUVmax is the one asked for
    assert np.array_equal(cold[:, 5:10, 5:10], pet[:, 5:10, 5:10])  # the organ keeps its uptake
    assert np.all(cold <= pet + 1e-6) and np.all(cold >= pet * factor - 1e-6)  # a smooth fade, nothing new
    same, f1 = make_cold(pet, lesion, 9.0, pixel_mm=2.0)  # already colder than asked: unchanged
    assert f1 == 1.0 and same is pet


def test_cold_patches_keep_the_target_and_lose_its_uptake():
    case, _ = synthetic_case()
    spec = PatchSpec(patch=32, in_slices=1, fg_fraction=1.0, hot_fraction=0.0, augment=False, cold_p=1.0)
    spec_aug = PatchSpec(patch=32, in_slices=1, fg_fraction=1.0, hot_fraction=0.0, augment=True, cold_p=1.0)
    img_off, mask_off, _ = sample_patch(case, spec, np.random.default_rng(5))  # augment off: cold_p unused
    img_on, mask_on, _ = sample_patch(case, spec_aug, np.random.default_rng(5))
    assert mask_on.sum() > 0 and mask_off.sum() > 0
    pet_on = img_on[1][mask_on[0] > 0]
    # PCLT20K window (0-15 SUV): 9 SUV is grey 153; made cold (SUVmax <= 2.5 x a PET gain of at most 1.25) it is dark
    assert img_off[1][mask_off[0] > 0].max() > 140
    assert pet_on.max() < 255 * 2.5 * 1.25 / 15 + 1


def test_thorax_negatives_are_centred_where_post_processing_keeps_components():
    """negatives="thorax" centres the non-lesion, non-hot patches in the lungs + mediastinum region (the region whose
    components prediction keeps); the default draws them anywhere in the body, mostly outside it here."""
    from igtv.data.regions import thorax_region
    from igtv.data.sampling import draw_centre
    from igtv.geometry import Geometry

    z, y, x = np.mgrid[0:24, 0:140, 0:140]
    ct = np.full((24, 140, 140), -1000.0, np.float32)
    ct[((y - 70) / 60.0) ** 2 + ((x - 70) / 65.0) ** 2 <= 1] = 40.0  # the body, 2 mm pixels
    for cx in (45, 95):  # two lungs of ~100 cc each
        ct[(z >= 2) & (z < 22) & (((y - 65) / 25.0) ** 2 + ((x - cx) / 14.0) ** 2 <= 1)] = -850.0
    pet = np.ones(ct.shape, np.float32)
    case = build_case("P1", ct, pet, np.zeros(ct.shape, bool), (2.0, 2.0, 2.0), 0.0)
    region = thorax_region(ct, Geometry(ct.shape, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)))
    assert 0.05 < region.mean() < 0.5  # lungs and the mediastinum between them, not the whole body
    assert region[tuple(case.thorax().T)].all()
    rng = np.random.default_rng(0)
    inside = {}
    for mode in ("thorax", "body"):
        spec = PatchSpec(fg_fraction=0.0, hot_fraction=0.0, negatives=mode)
        centres = [draw_centre(case, spec, rng) for _ in range(300)]
        assert {k for k, _, _ in centres} == {mode}
        inside[mode] = np.mean([region[tuple(np.round(v).astype(int))] for _, v, _ in centres])
    assert inside["thorax"] == 1.0 and inside["body"] < 0.5


def test_hot_regions_are_drawn_by_size_when_asked():
    """With hot_size_power 0.5 a big hot organ gets its share of negatives among many noise specks; 0 is uniform."""
    ct = np.full((10, 200, 200), 40.0, np.float32)
    pet = np.full(ct.shape, 1.0, np.float32)
    pet[2:8, 20:80, 20:80] = 6.0  # the "heart": 6 x 60 x 60 voxels
    specks = [(z, y, x) for z in (1, 6) for y in range(110, 190, 20) for x in range(110, 190, 20)]  # 32 specks
    for z, y, x in specks:
        pet[z : z + 3, y : y + 9, x : x + 9] = 4.0  # 243 voxels: above the 0.2 cc floor for organs
    case = build_case("P", ct, pet, np.zeros(ct.shape, bool), (1.0, 1.0, 1.0), 0.0)
    assert len(case.hot) == 33
    sizes = np.array([r.size for r in case.hot])
    assert sorted(sizes)[-1] == 6 * 60 * 60 and (np.sort(sizes)[:-1] == 243).all()
    w = hot_weights(case.hot, 0.5)
    assert w.sum() == pytest.approx(1.0) and w[sizes.argmax()] == pytest.approx(147 / (147 + 32 * 15.59), rel=1e-3)
    assert np.allclose(hot_weights(case.hot, 0.0), 1 / 33)

    def heart_share(power: float) -> float:
        spec = PatchSpec(patch=32, in_slices=1, fg_fraction=0.0, hot_fraction=1.0, hot_size_power=power)
        rng = np.random.default_rng(0)
        centres = [draw_centre(case, spec, rng)[1] for _ in range(600)]
        return float(np.mean([20 <= c[1] < 80 and 20 <= c[2] < 80 for c in centres]))

    assert heart_share(0.0) < 0.1  # 1 in 33 (jitter may move a centre out of the box, never a speck's into it)
    assert 0.17 < heart_share(0.5) < 0.30  # sqrt(21600) / (sqrt(21600) + 32 sqrt(243)) = 0.23


def test_hot_regions_below_an_suv_floor_are_not_drawn_when_asked():
    """hot_min_suv_max 3: hot patches go only to regions post-processing can keep (the heart, a node), never to the
    faint specks (SUVmax 2.5-3) that outnumber them; 0 draws every region, and a patient with none left gets the
    body negative instead."""
    ct = np.full((10, 200, 200), 40.0, np.float32)
    pet = np.full(ct.shape, 1.0, np.float32)
    pet[2:8, 20:80, 20:80] = 6.0  # the "heart"
    pet[3:6, 120:130, 30:40] = 4.0  # an avid "node"
    for y in range(110, 190, 20):  # 4 faint specks
        pet[6:9, y : y + 9, 150:159] = 2.8
    case = build_case("P", ct, pet, np.zeros(ct.shape, bool), (1.0, 1.0, 1.0), 0.0)
    assert sorted(r.suv_max for r in case.hot) == pytest.approx([2.8] * 4 + [4.0, 6.0])

    def kinds_and_speck_share(floor: float, c=case) -> tuple[set, float]:
        spec = PatchSpec(patch=32, in_slices=1, fg_fraction=0.0, hot_fraction=1.0, hot_min_suv_max=floor)
        rng = np.random.default_rng(0)
        draws = [draw_centre(c, spec, rng) for _ in range(400)]
        specks = [v[2] >= 140 and v[1] >= 100 for _, v, _ in draws]
        return {k for k, _, _ in draws}, float(np.mean(specks))

    assert kinds_and_speck_share(0.0) == ({"hot"}, pytest.approx(4 / 6, abs=0.08))
    assert kinds_and_speck_share(3.0) == ({"hot"}, 0.0)
    faint = build_case("F", ct, np.minimum(pet, 2.8), np.zeros(ct.shape, bool), (1.0, 1.0, 1.0), 0.0)
    assert kinds_and_speck_share(3.0, faint)[0] == {"body"}
    assert kinds_and_speck_share(0.0, faint)[0] == {"hot"}


def test_avoid_regions_get_their_share_and_change_nothing_at_zero():
    """avoid_fraction 0.3: 30 % of patches are centred on the avid part of the structures marked to leave out (a
    node), none on its cold part; a patient with no avid one, or avoid_fraction 0, draws exactly what it drew
    before the option existed."""
    ct = np.full((10, 200, 200), 40.0, np.float32)
    pet = np.full(ct.shape, 1.0, np.float32)
    pet[2:8, 20:80, 20:80] = 6.0  # the "heart"
    pet[3:6, 120:130, 30:40] = 4.0  # an avid node
    avoid = np.zeros(ct.shape, bool)
    avoid[3:6, 118:132, 28:42] = True  # marked with a margin; the margin (SUV 1) is no avoid region
    avoid[3:6, 150:160, 150:160] = True  # a cold node: marked, never drawn
    target = np.zeros(ct.shape, bool)
    args = ("P", ct, pet, target, (1.0, 1.0, 1.0), 0.0)
    case, plain = build_case(*args, avoid), build_case(*args)
    assert [r.suv_max for r in case.avoid] == [4.0] and case.avoid[0].size == 3 * 10 * 10 and plain.avoid == []

    def draws(c, share: float, n: int = 1000) -> list:
        spec = PatchSpec(patch=32, in_slices=1, fg_fraction=0.0, hot_fraction=0.3, avoid_fraction=share)
        rng = np.random.default_rng(0)
        return [draw_centre(c, spec, rng) for _ in range(n)]

    got = draws(case, 0.3)
    kinds = [k for k, _, _ in got]
    assert kinds.count("avoid") / len(kinds) == pytest.approx(0.3, abs=0.04)
    assert all(3 <= v[0] < 6 and 112 <= v[1] < 138 and 22 <= v[2] < 48 for k, v, _ in got if k == "avoid")
    assert all(ref == 4.0 for k, _, ref in got if k == "avoid")  # windowed by the node's own SUVmax (LUCID)
    same = [(k, tuple(v), r) for k, v, r in draws(plain, 0.0)]
    assert (
        [(k, tuple(v), r) for k, v, r in draws(case, 0.0)]
        == same
        == [(k, tuple(v), r) for k, v, r in draws(plain, 0.3)]
    )


def _lesion_case(name: str, radius: int) -> object:
    """A 12 x 80 x 80 body at 1 mm with one spherical target of ``radius`` voxels at its centre."""
    z, y, x = np.mgrid[0:12, 0:80, 0:80]
    ct = np.full((12, 80, 80), 40.0, np.float32)
    target = (z - 6) ** 2 + (y - 40) ** 2 + (x - 40) ** 2 <= radius**2
    pet = np.where(target, 8.0, 1.0).astype(np.float32)
    return build_case(name, ct, pet, target, (1.0, 1.0, 1.0), 0.0)


def test_lesion_patches_are_drawn_across_patients_by_size_when_asked():
    """lesion_size_power > 0: a lesion patch comes from a lesion drawn over all patients by size (one big lesion
    among small ones gets its share), other kinds still from the patient drawn first; 0 keeps the earlier patches."""
    cases = [_lesion_case("big", 5)] + [_lesion_case(f"small{i}", 1) for i in range(7)]
    sizes = np.array([c.lesions[0].size for c in cases], dtype=float)
    assert sizes[0] > 20 * sizes[1]

    def shares(power: float) -> tuple[float, int]:
        spec = PatchSpec(patch=16, in_slices=1, fg_fraction=0.5, hot_fraction=0.0, lesion_size_power=power)
        ds = PatchDataset(cases, spec, 800, seed=3)
        items = [ds[i]["item"].split("/") for i in range(len(ds))]
        assert all(ds.patient_of(i) == items[i][0] for i in range(0, len(ds), 7))  # patient_of agrees with the draw
        lesion = [name for name, kind, _ in items if kind == "lesion"]
        assert 0.4 < len(lesion) / len(items) < 0.6  # the foreground share is unchanged
        others = [name for name, kind, _ in items if kind != "lesion"]
        return lesion.count("big") / len(lesion), others.count("big")

    big_uniform, _ = shares(0.0)
    big_by_size, big_negatives = shares(1.0)
    assert 0.06 < big_uniform < 0.2  # 1 patient in 8
    expected = sizes[0] / sizes.sum()
    assert abs(big_by_size - expected) < 0.06 and big_by_size > 0.6
    assert 20 < big_negatives < 80  # negatives still 1 patient in 8 (~50 of ~400)

    spec = PatchSpec(patch=16, in_slices=1)  # power 0: the same patches as before the option existed
    ds = PatchDataset(cases, spec, 4, seed=1)
    rng = np.random.default_rng([1, 1, 2])
    case = cases[rng.integers(len(cases))]
    image, mask, item = sample_patch(case, spec, rng)
    assert ds[2]["item"] == item and np.array_equal(ds[2]["image"].numpy(), image)
