"""Phantom v2: the anatomy a radiologist looks for, pathology and distractors, imaging physics, randomisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from igtv.phantom import config as C
from igtv.phantom.anatomy import labels
from igtv.phantom.config import PhantomConfig
from igtv.phantom.draw import sample_anatomy
from igtv.phantom.lesion import cavity_mask, lesion_fields, lesion_volume_cc, sample_lesion
from igtv.phantom.patient import pick_scanner, simulate_patient
from tests.conftest import SMALL


def _grid(step: float = 2.0):
    x = np.arange(-300.0, 300.0, step)
    y = np.arange(-200.0, 220.0, step)
    z = np.arange(-140.0, 230.0, step)
    return x[None, None, :], y[None, :, None], z[:, None, None]


@pytest.fixture(scope="module")
def anatomy_and_labels():
    rng = np.random.default_rng(5)
    for _ in range(50):  # a patient with arms down and at least one lymph node
        anat = sample_anatomy(rng)
        if anat.arms and anat.nodes:
            break
    x, y, z = _grid()
    return anat, labels(anat, x, y, z), (x, y, z)


def test_every_structure_is_there(anatomy_and_labels):
    _, lab, _ = anatomy_and_labels
    present = set(np.unique(lab).tolist())
    for structure in (
        C.TABLE,
        C.TABLE_CORE,
        C.FAT,
        C.SOFT,
        C.MED_FAT,
        C.LUNG,
        C.LUNG_VESSEL,
        C.FISSURE,
        C.RIB,
        C.VERTEBRA,
        C.CANAL,
        C.BONE,
        C.MARROW,
        C.HEART_WALL,
        C.HEART_BLOOD,
        C.HEART_RV,
        C.AORTA,
        C.PULM_ARTERY,
        C.VEIN,
        C.OESOPHAGUS,
        C.TRACHEA,
        C.AIRWAY_WALL,
        C.LIVER,
        C.NODE_1,
    ):
        assert structure in present, C.LABEL_NAMES[structure]


def test_table_is_under_the_body_and_arms_beside_it(anatomy_and_labels):
    anat, lab, (x, y, z) = anatomy_and_labels
    body = ~np.isin(lab, (C.AIR, C.TABLE, C.TABLE_CORE))
    table = np.isin(lab, (C.TABLE, C.TABLE_CORE))
    yb = np.nonzero(body.any(axis=(0, 2)))[0].max()  # most posterior body row (+y is posterior)
    yt = np.nonzero(table.any(axis=(0, 2)))[0]
    assert yt.min() >= yb - 25 and yt.max() > yb  # the table lies behind (under) the supine body
    comps, n = ndimage.label(body[len(z.ravel()) // 2])
    assert n >= 3  # trunk and two arms in an axial slice
    humerus = np.nonzero((lab == C.MARROW).any(axis=(0, 1)))[0]
    assert x.ravel()[humerus].min() < -anat.body_ax and x.ravel()[humerus].max() > anat.body_ax


def test_airways_branch_into_both_lungs(anatomy_and_labels):
    _, lab, (x, _, z) = anatomy_and_labels
    lumen = lab == C.TRACHEA
    comps, n = ndimage.label(lumen, structure=np.ones((3, 3, 3)))
    largest = comps == (np.argmax(np.bincount(comps.ravel())[1:]) + 1)
    xs = x.ravel()[np.nonzero(largest.any(axis=(0, 1)))[0]]
    assert xs.min() < -40 and xs.max() > 40, "one connected airway tree reaching into both lungs"
    zs = z.ravel()[np.nonzero(largest.any(axis=(1, 2)))[0]]
    assert zs.max() - zs.min() > 120


def test_lung_vessels_taper_and_stay_in_the_lungs():
    anat = sample_anatomy(np.random.default_rng(8))
    radii = np.array([max(t.r0, t.r1) for t in anat.lung_tree])
    assert len(radii) > 100 and radii.max() >= 4.0 and radii.min() < 1.5
    from igtv.phantom.lesion import in_lung

    ends = np.array([t.p1 for t in anat.lung_tree])
    inside = in_lung(anat, ends[:, 0], ends[:, 1], ends[:, 2])
    assert inside.mean() > 0.9


def test_nodes_are_avid_but_not_in_the_truth():
    """A hot mediastinal node shows on PET well above the mediastinal fat and is in no IGTV (anatomy draws do not
    depend on the matrix size, so the patient is found cheaply and simulated at 256 px)."""
    from dataclasses import replace

    from igtv.geometry import resample_to
    from igtv.phantom.patient import patient_rng

    cfg = PhantomConfig(cohort="igtv", patients=30, seed=3, **SMALL)
    pick = next(
        i
        for i in range(cfg.patients)
        if any(nd.suv >= 4.0 and min(nd.radii) >= 8.0 for nd in sample_anatomy(patient_rng(cfg, i)).nodes)
    )
    p = simulate_patient(replace(cfg, matrix_scale=0.5), pick)
    nd = max(p.anatomy.nodes, key=lambda n: n.suv * min(n.radii))
    x, y, z = p.ct_geom.axis_coordinates_mm()
    o = p.offset_mm
    d = sum(((a - oo - c) / r) ** 2 for a, oo, c, r in zip((x, y, z), o, nd.centre, nd.radii, strict=True))
    inside = d <= 1.0
    assert inside.any()
    pet = resample_to(p.pet_suv, p.pet_geom, p.ct_geom)
    assert pet[inside].max() > p.anatomy.suv[C.MED_FAT] + 1.0
    assert not (p.igtv[inside] > 0).any()


def test_spicules_and_cavities():
    rng = np.random.default_rng(0)
    anat = sample_anatomy(rng)
    les = sample_lesion(anat, rng, cold=False, small=False, avoid=[])
    from dataclasses import replace

    spiky = replace(les, spikes=((1.0, 0.0, 0.0, 15.0, 1.5), (0.0, 1.0, 0.0, 15.0, 1.5)))
    assert lesion_volume_cc(spiky) > lesion_volume_cc(les)
    cav = replace(les, cavity=0.4)
    c = np.asarray(les.centre)
    g = np.arange(-3.0, 3.5, 1.0)
    x, y, z = c[0] + g[None, None, :], c[1] + g[None, :, None], c[2] + g[:, None, None]
    inside, suv = lesion_fields(cav, x, y, z)
    assert inside.all() and cavity_mask(cav, x, y, z).all()  # the cavity is part of the GTV ...
    assert (suv == 0).all()  # ... and takes up no FDG


def test_hilar_masses_are_large_and_central():
    rng = np.random.default_rng(1)
    vols, dists, others = [], [], []
    from igtv.phantom.lesion import hila

    for _ in range(200):
        anat = sample_anatomy(rng)
        les = sample_lesion(anat, rng, cold=False, small=False, avoid=[])
        if les.location == "hilar":
            vols.append(les.target_volume_cc)
            dists.append(min(np.linalg.norm(np.subtract(les.centre, h)) for h in hila(anat)))
        else:
            others.append(les.target_volume_cc)
    assert len(vols) >= 10
    assert np.median(vols) > np.median(others) and max(vols) > 100
    assert np.median(dists) < 45


def test_randomize_widens_the_ranges():
    rng_a, rng_b = np.random.default_rng(2), np.random.default_rng(2)
    real = [pick_scanner("igtv", rng_a) for _ in range(60)]
    rand = [pick_scanner("igtv", rng_b, randomize=True) for _ in range(60)]
    assert len({s["ct_pixel_mm"] for s in real}) <= 6 and len({s["ct_pixel_mm"] for s in rand}) > 50
    assert max(s["psf_fwhm_mm"] for s in rand) > 8.0 and min(s["psf_fwhm_mm"] for s in rand) < 4.0
    liver_real = [sample_anatomy(np.random.default_rng(i)).suv[C.LIVER] for i in range(40)]
    liver_rand = [sample_anatomy(np.random.default_rng(i), randomize=True).suv[C.LIVER] for i in range(40)]
    assert np.ptp(liver_rand) > 1.3 * np.ptp(liver_real)
    assert min(liver_real) >= 1.8 and max(liver_real) <= 3.0


def test_arms_outside_the_ct_field_read_low_on_pet():
    from igtv.phantom.imaging import simulate_pet
    from igtv.phantom.patient import simulate_patient as sim

    cfg = PhantomConfig(cohort="igtv", patients=40, seed=4, **SMALL)
    for i in range(cfg.patients):
        p = sim(cfg, i)
        if p.anatomy.arms:
            break
    else:
        pytest.skip("no patient with arms down")
    rng = np.random.default_rng(0)
    base = dict(p.imaging)
    full = simulate_pet(
        p.anatomy,
        [],
        p.pet_geom,
        np.asarray(p.offset_mm),
        p.scanner,
        4,
        rng,
        {**base, "ct_half_fov_mm": 1e4, "pet_noise": 0.0},
    )
    cut = simulate_pet(
        p.anatomy,
        [],
        p.pet_geom,
        np.asarray(p.offset_mm),
        p.scanner,
        4,
        rng,
        {**base, "ct_half_fov_mm": p.anatomy.body_ax + 5.0, "pet_noise": 0.0, "truncation_factor": 0.5},
    )
    x = p.pet_geom.axis_coordinates_mm()[0].ravel() - p.offset_mm[0]
    arm = np.abs(x) > p.anatomy.body_ax + 15.0
    trunk = np.abs(x) < 0.5 * p.anatomy.body_ax
    assert cut[..., arm].sum() < 0.7 * full[..., arm].sum()
    assert cut[..., trunk].sum() == pytest.approx(full[..., trunk].sum(), rel=0.02)


def test_stats_measure_what_was_drawn(capsys):
    from igtv.phantom.stats import patient_stats, phantom_stats

    cfg = PhantomConfig(cohort="igtv", patients=1, seed=6, matrix_scale=0.25, z_extent_mm=200.0)
    p = simulate_patient(cfg, 0)
    st = patient_stats(p)
    assert st["suv"]["liver"] == pytest.approx(p.anatomy.suv[C.LIVER], rel=0.15)
    assert st["suv"]["muscle"] == pytest.approx(p.anatomy.suv[C.SOFT], rel=0.3)
    assert -900 < st["hu"]["lung"][1] < -700
    assert 0.15 < st["share"]["lung"] < 0.6
    phantom_stats(cfg)
    out = capsys.readouterr().out
    assert "liver" in out and "literature" in out and "[ok]" in out


def test_drop_specks_keeps_the_tumour_and_real_pieces():
    from igtv.phantom.lesion import drop_specks

    m = np.zeros((6, 24, 24), bool)
    m[1:4, 2:10, 2:10] = True  # the tumour: 192 voxels
    m[2, 20, 20] = True  # a 1-voxel spicule tip
    m[1:5, 14:18, 14:18] = True  # a detached piece of 64 voxels = 0.32 cc at 5 mm^3 per voxel
    out = drop_specks(m, voxel_cc=0.005)
    assert not out[2, 20, 20] and out[1:4, 2:10, 2:10].all() and out[1:5, 14:18, 14:18].all()
    assert out.sum() == m.sum() - 1
    lone = np.zeros((3, 3, 3), bool)
    lone[1, 1, 1] = True  # a lesion that is only a speck is kept whole
    assert drop_specks(lone, voxel_cc=0.005).sum() == 1


def test_truth_labels_hold_one_piece_per_lesion():
    """Seed 99, patient 9 at 512 px had spicule tips of 1 voxel cut off two GTVs and an IGTV (counted as extra
    missed lesions by the lesion-level evaluation); each lesion's label is now one 26-connected piece."""
    p = simulate_patient(PhantomConfig(cohort="igtv", seed=99, patients=16), 9)
    for truth in (p.gtv, p.igtv):
        ks = np.unique(truth)[1:]
        assert len(ks) == 2
        for k in ks:
            assert ndimage.label(truth == k, structure=np.ones((3, 3, 3)))[1] == 1
