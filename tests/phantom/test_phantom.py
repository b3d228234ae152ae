from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from igtv.dicom.rtstruct import rasterize_contours, read_rtstruct
from igtv.geometry import Geometry, load_nifti
from igtv.phantom.anatomy import labels
from igtv.phantom.cohort import generate_cohort
from igtv.phantom.config import LUNG, PhantomConfig
from igtv.phantom.draw import sample_anatomy
from igtv.phantom.lesion import sample_lesion
from igtv.phantom.motion import breathing
from igtv.phantom.patient import simulate_patient
from tests.conftest import SMALL


def _series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def test_dicom_read_back_with_intended_geometry(small_cohort):
    cfg, result = small_cohort
    entry = result.entries[0]
    root = result.out_dir / entry["folder"]
    ct_img = _series(root / "dicom" / "CT")
    geom = Geometry.from_sitk(ct_img)
    want = Geometry.from_dict(entry["ct"])
    assert geom.shape_zyx == want.shape_zyx
    assert np.allclose(geom.spacing_mm, want.spacing_mm, atol=1e-4)
    assert np.allclose(geom.origin_mm, want.origin_mm, atol=1e-3)
    assert np.allclose(geom.direction, want.direction)
    p = simulate_patient(cfg, 0)
    assert np.array_equal(sitk.GetArrayFromImage(ct_img), p.ct_hu)
    ds = pydicom.dcmread(next((root / "dicom" / "CT").glob("*.dcm")))
    assert ds.Modality == "CT" and ds.RescaleType == "HU"
    pet_img = _series(root / "dicom" / "PT")
    assert np.allclose(Geometry.from_sitk(pet_img).origin_mm, entry["pet"]["origin_mm"], atol=1e-3)
    pt = pydicom.dcmread(next((root / "dicom" / "PT").glob("*.dcm")))
    assert pt.FrameOfReferenceUID == ds.FrameOfReferenceUID
    assert pt.Units == "BQML" and pt.DecayCorrection == "START"


def _suv_from_headers(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Body-weight SUV recomputed independently of igtv: BQML, decay corrected to series start."""
    from datetime import datetime

    files = [pydicom.dcmread(f) for f in folder.glob("*.dcm")]
    files.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    vols = []
    for d in files:
        rp = d.RadiopharmaceuticalInformationSequence[0]
        inj = datetime.strptime(rp.RadiopharmaceuticalStartDateTime, "%Y%m%d%H%M%S.%f")
        start = datetime.strptime(d.SeriesDate + d.SeriesTime, "%Y%m%d%H%M%S.%f")
        decayed = float(rp.RadionuclideTotalDose) * 2 ** (
            -(start - inj).total_seconds() / float(rp.RadionuclideHalfLife)
        )
        bqml = d.pixel_array.astype(np.float64) * float(d.RescaleSlope) + float(d.RescaleIntercept)
        vols.append(bqml * float(d.PatientWeight) * 1000.0 / decayed)
    return np.stack(vols), np.array([float(d.ImagePositionPatient[2]) for d in files])


def test_suv_from_headers_matches_ground_truth(small_cohort):
    _, result = small_cohort
    for entry in result.entries:
        root = result.out_dir / entry["folder"]
        suv, _ = _suv_from_headers(root / "dicom" / "PT")
        truth, _ = load_nifti(root / "truth" / "pet_suv.nii.gz")
        sel = truth > 0.2
        rel = np.abs(suv[sel] - truth[sel]) / truth[sel]
        assert rel.max() < 0.005, rel.max()


def test_igtv_contains_gtv_and_grows_with_amplitude(small_cohort):
    cfg, result = small_cohort
    for entry in result.entries:
        root = result.out_dir / entry["folder"]
        gtv, geom = load_nifti(root / "truth" / "gtv.nii.gz")
        igtv, _ = load_nifti(root / "truth" / "igtv.nii.gz")
        dz = geom.spacing_mm[2]
        for les in entry["lesions"]:
            g, i = gtv == les["lesion"], igtv == les["lesion"]
            assert g.any()
            assert not (g & ~i).any(), "IGTV must contain the GTV"
            zg, zi = np.nonzero(g.any(axis=(1, 2)))[0], np.nonzero(i.any(axis=(1, 2)))[0]
            extra_mm = ((zi.max() - zi.min()) - (zg.max() - zg.min())) * dz
            amp = les["amplitude_mm"]["si"]
            # the IGTV's superior-inferior extent exceeds the GTV's by the drawn amplitude (within one slice + 2 mm)
            assert abs(extra_mm - amp) <= dz + 2.0, (extra_mm, amp)
            assert les["igtv_cc"] > les["gtv_cc"]


def test_rtstruct_round_trip_dice(small_cohort):
    _, result = small_cohort
    for entry in result.entries:
        root = result.out_dir / entry["folder"]
        rs = read_rtstruct(root / "dicom" / "RTSTRUCT_truth.dcm")
        geom = Geometry.from_sitk(_series(root / "dicom" / "CT"))
        ct_uids = {
            pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in (root / "dicom" / "CT").glob("*")
        }
        assert rs.referenced_sop_uids == ct_uids
        for name in ("GTV", "IGTV"):
            truth, _ = load_nifti(root / "truth" / f"{name.lower()}.nii.gz")
            mask = rasterize_contours(rs.rois[name], geom, name)
            assert _dice(mask, truth == 1) >= 0.95


def test_same_seed_same_bytes(tmp_path):
    cfg = PhantomConfig(cohort="gtv", patients=1, seed=11, **SMALL)

    def digest(folder: Path) -> dict[str, str]:
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    a = generate_cohort(cfg, tmp_path / "a", progress=False)
    b = generate_cohort(cfg, tmp_path / "b", progress=False)
    da, db = digest(a.out_dir), digest(b.out_dir)
    assert da == db and len(da) > 50
    other = simulate_patient(PhantomConfig(cohort="gtv", patients=1, seed=12, **SMALL), 0)
    assert simulate_patient(cfg, 0).lesions != other.lesions


def test_rerun_skips_and_refuses_other_settings(small_cohort):
    cfg, result = small_cohort
    again = generate_cohort(cfg, result.out_dir, progress=False)
    assert again.generated == 0 and again.skipped == cfg.patients
    with pytest.raises(ValueError, match="other settings"):
        generate_cohort(PhantomConfig(cohort="igtv", patients=3, seed=8, **SMALL), result.out_dir, progress=False)


def test_pclt_layout(small_cohort):
    from PIL import Image

    _, result = small_cohort
    root = result.out_dir / "pclt"
    train = (root / "train.txt").read_text().split()
    test = (root / "test.txt").read_text().split()
    assert train and test
    assert not {t.split("_")[0] for t in train} & {t.split("_")[0] for t in test}, "split must be patient-level"
    for item in train + test:
        folder = root / item.split("_")[0]
        for suffix in ("CT", "PET", "mask"):
            img = np.asarray(Image.open(folder / f"{item}_{suffix}.png"))
            assert img.shape == (64, 64) and img.dtype == np.uint8
        mask = np.asarray(Image.open(folder / f"{item}_mask.png"))
        assert set(np.unique(mask)) <= {0, 255} and mask.max() == 255


def test_preview_written(small_cohort):
    _, result = small_cohort
    from PIL import Image

    img = Image.open(result.out_dir / "preview.png")
    assert img.size[0] > 600


def test_cohort_json_has_no_identifiers(small_cohort):
    _, result = small_cohort
    text = (result.out_dir / "cohort.json").read_text()
    assert "Phantom^" not in text and "IGTV-PH-" not in text
    assert json.loads(text)["patients"][0]["lesions"]


def test_anatomy_values_in_realistic_ranges(small_cohort):
    cfg, _ = small_cohort
    p = simulate_patient(cfg, 1)
    x, y, z = p.ct_geom.axis_coordinates_mm()
    lab = labels(p.anatomy, x - p.offset_mm[0], y - p.offset_mm[1], z - p.offset_mm[2])
    from scipy import ndimage

    core = ndimage.binary_erosion(lab == LUNG, structure=np.ones((1, 3, 3), bool))  # 7.8 mm voxels: no edges
    lung = p.ct_hu[core & (p.gtv == 0)]
    assert -900 < np.median(lung) < -750
    assert p.ct_hu.min() >= -1024 and p.ct_hu.max() > 300  # bone present
    assert p.pet_suv.min() >= 0
    from igtv.phantom import config as C
    from igtv.phantom.literature import SUV_LITERATURE

    organ = {
        "liver": C.LIVER,
        "blood_pool": C.AORTA,
        "spleen": C.SPLEEN,
        "bone_marrow": C.VERTEBRA,
        "muscle": C.SOFT,
        "myocardium": C.HEART_WALL,
    }
    rng = np.random.default_rng(3)
    for _ in range(20):  # every drawn organ SUV lies in its literature range (realistic mode)
        anat = sample_anatomy(rng)
        for name, lab_k in organ.items():
            lo, hi = SUV_LITERATURE[name][0]
            assert lo <= anat.suv[lab_k] <= hi, (name, anat.suv[lab_k])


def test_lesion_population_spans_paper_ranges():
    rng = np.random.default_rng(0)
    vols, amps, locs = [], [], set()
    for i in range(40):
        anat = sample_anatomy(rng)
        les = sample_lesion(anat, rng, cold=False, small=(i % 8 == 0), avoid=[])
        vols.append(les.target_volume_cc)
        amps.append(les.amp_si)
        locs.add(les.location)
    vols, amps = np.array(vols), np.array(amps)
    assert vols.min() < 3.0 and vols.max() > 40 and 5 < np.median(vols) < 25
    assert amps.min() >= 3.0 and amps.max() <= 25.0 and amps.max() > 10
    assert {"juxta-cardiac", "juxta-diaphragmatic"} & locs


def test_breathing_signal():
    assert breathing(0.0) == 0.0 and abs(breathing(0.5) - 1.0) < 1e-12
    t = np.linspace(0, 1, 1001)
    assert np.mean(breathing(t) < 0.5) > 0.5  # more time near exhale (Lujan)


def test_free_breathing_ct_relabels_only_what_moves():
    """A free-breathing CT relabels a slice only below the diaphragm's reach or inside the heart's box: the same
    label map as labelling every slice at its own phase."""
    from igtv.phantom import imaging

    rng = np.random.default_rng(0)
    anat = sample_anatomy(rng, False)
    geom = Geometry((70, 128, 128), (3.6, 3.6, 4.0), (-230.0, -230.0, -150.0))
    phase = rng.uniform(0.0, 1.0, 70)
    captured = []
    real = imaging.labels
    try:
        imaging.labels = lambda *a, **k: captured.append(real(*a, **k)) or captured[-1]
        imaging.simulate_ct(anat, [], geom, np.zeros(3), np.random.default_rng(1), {"ct_slice_phase": phase})
    finally:
        imaging.labels = real
    x, y, z = geom.axis_coordinates_mm()
    s = breathing(phase)
    amp = anat.diaphragm_amp_mm
    every = np.concatenate(
        [labels(anat, x, y, z[k : k + 1], diaphragm_dz=-amp * s[k], heart_dz=-0.35 * amp * s[k]) for k in range(70)]
    )
    assert 1 < len(captured) < 71  # fewer label calls than slices
    assert np.array_equal(captured[0], every)
    assert not np.array_equal(every, labels(anat, x, y, z))  # the motion did change the map


def test_ct_noise_sd_after_the_blur_is_the_requested_one():
    """The CT noise is drawn before the scanner blur at the SD that the blur brings down to ct_noise_sd."""
    from igtv.phantom import imaging

    rng = np.random.default_rng(0)
    anat = sample_anatomy(rng, False)
    geom = Geometry((6, 160, 160), (3.0, 3.0, 3.0), (-240.0, -240.0, -40.0))
    quiet = imaging.simulate_ct(anat, [], geom, np.zeros(3), np.random.default_rng(5), {"ct_noise_hu": 0.0})[0]
    noisy = imaging.simulate_ct(anat, [], geom, np.zeros(3), np.random.default_rng(5), {"ct_noise_hu": 20.0})[0]
    diff = (noisy.astype(np.float64) - quiet)[(quiet > -900) & (quiet < 2000)]
    want = imaging.ct_noise_sd(anat, 20.0)
    assert diff.size > 10000 and abs(diff.std() / want - 1.0) < 0.05


def test_pet_sub_voxel_means_are_the_block_means():
    from igtv.phantom.imaging import _mean_blocks

    vol = np.random.default_rng(0).random((12, 18, 10), dtype=np.float32)
    for s_z, s_xy in ((1, 1), (2, 3), (3, 2), (4, 1)):
        cz, cy, cx = 12 // s_z, 18 // s_xy, 10 // s_xy
        want = vol[: cz * s_z, : cy * s_xy, : cx * s_xy].reshape(cz, s_z, cy, s_xy, cx, s_xy).mean(axis=(1, 3, 5))
        got = _mean_blocks(vol, s_z, s_xy)
        assert got.dtype == np.float32 and np.allclose(got, want, rtol=1e-6, atol=1e-7)
