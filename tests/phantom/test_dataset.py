"""``igtv phantom --prepared``: a cohort simulated straight into a prepared dataset has the layout, pseudonyms,
split and samples of the same cohort exported as DICOM and run through ``igtv prepare``, with the same CT, the
same masks (the exact labels against the RTSTRUCT's rasterised contours) and the same SUV to within the DICOM
route's integer storage; it resumes, refuses other settings, and is what the CLI writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from igtv.cli import main
from igtv.data.prepare import PrepareConfig, prepare_dataset, pseudonym
from igtv.geometry import load_nifti
from igtv.phantom.cohort import generate_cohort
from igtv.phantom.config import PHANTOM_PSEUDONYM_KEY, PhantomConfig
from igtv.phantom.dataset import write_prepared_cohort
from tests.conftest import SMALL
from tests.privacy import identifier_hits, phantom_identifiers


def test_prepared_cohort_equals_dicom_route(tmp_path):
    cfg = PhantomConfig(cohort="igtv", patients=3, seed=7, write_pclt=False, **SMALL)
    prep = PrepareConfig(preset="pclt20k", roi="IGTV", size=64)
    generate_cohort(cfg, tmp_path / "dicom", progress=False)
    a = prepare_dataset(tmp_path / "dicom", tmp_path / "a", prep, progress=False, pseudonym_key=PHANTOM_PSEUDONYM_KEY)
    b = write_prepared_cohort(cfg, tmp_path / "b", prep, progress=False)
    assert (b.processed, b.skipped, b.failed) == (3, 0, [])
    assert (a.samples, a.rois_kept, a.rois_excluded) == (b.samples, b.rois_kept, b.rois_excluded) and b.samples > 0
    assert json.loads((tmp_path / "a" / "splits.json").read_text()) == json.loads(
        (tmp_path / "b" / "splits.json").read_text()
    )
    for name in ("train.txt", "val.txt", "test.txt"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    folders = sorted(p.name for p in (tmp_path / "a" / "volumes").iterdir())
    assert folders == sorted(p.name for p in (tmp_path / "b" / "volumes").iterdir()) and len(folders) == 3
    for f in folders:
        va, vb = tmp_path / "a" / "volumes" / f, tmp_path / "b" / "volumes" / f
        ct_a, geom_a = load_nifti(va / "ct_hu.nii.gz")
        ct_b, geom_b = load_nifti(vb / "ct_hu.nii.gz")
        assert np.array_equal(ct_a, ct_b) and np.allclose(geom_a.origin_mm, geom_b.origin_mm)
        lab_a, lab_b = load_nifti(va / "labels.nii.gz")[0] > 0, load_nifti(vb / "labels.nii.gz")[0] > 0
        assert lab_b.sum() > 0 and 2 * (lab_a & lab_b).sum() / (lab_a.sum() + lab_b.sum()) >= 0.95
        pet_a, pet_b = load_nifti(va / "pet_suv.nii.gz")[0], load_nifti(vb / "pet_suv.nii.gz")[0]
        assert np.abs(pet_a - pet_b).max() <= 1e-3 * max(1.0, float(pet_b.max()))
    summary = json.loads((tmp_path / "b" / "dataset.json").read_text())
    assert summary["format"] == "igtv-prepared-1" and "no DICOM" in summary["source"]
    assert not list((tmp_path / "b").rglob("*.dcm"))
    assert identifier_hits(tmp_path / "b", phantom_identifiers(tmp_path / "dicom")) == []  # no name, ID or birth date

    again = write_prepared_cohort(cfg, tmp_path / "b", prep, progress=False)  # resumes: nothing left to do
    assert (again.processed, again.skipped, again.samples) == (0, 3, b.samples)
    with pytest.raises(ValueError, match="other settings"):
        write_prepared_cohort(cfg, tmp_path / "b", PrepareConfig(preset="lucid", roi="IGTV", size=64), progress=False)


def test_cli_phantom_prepared(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["phantom", "--out", str(out), "--patients", "2", "--seed", "4", "--cohort", "gtv", "--matrix-scale",
               "0.125", "--prepared", "--preset", "pclt20k", "--size", "64"])  # fmt: skip
    assert rc == 0 and "no DICOM" in capsys.readouterr().out
    rois = (out / "rois.csv").read_text()
    assert "GTV" in rois and "IGTV" not in rois  # the GTV cohort's dataset holds the GTVs
    assert len(list((out / "volumes").iterdir())) == 2 and (out / "dataset.json").exists()


def test_prepared_cohort_marks_the_lymph_nodes(tmp_path):
    """avoid.nii.gz holds a patient's nodes (none for a patient without), on no tumour, on the CT grid, and the
    sampler reads it back; at a resolution where the PET resolves a node, its SUV is there (the node's own, through
    the PET's blur)."""
    from igtv.data.cases import load_case
    from igtv.geometry import resample_to
    from igtv.phantom.cohort import patient_folder, patient_id
    from igtv.phantom.dataset import node_mask
    from igtv.phantom.patient import simulate_patient

    cfg = PhantomConfig(cohort="igtv", patients=4, seed=3, write_pclt=False, **SMALL)
    write_prepared_cohort(cfg, tmp_path, PrepareConfig(preset="pclt20k", roi="IGTV", size=64), progress=False)
    with_nodes = 0
    for i in range(cfg.patients):
        p = simulate_patient(cfg, i)
        folder = tmp_path / "volumes" / pseudonym(patient_id(patient_folder(cfg.cohort, i)), PHANTOM_PSEUDONYM_KEY)
        avoid, geom = load_nifti(folder / "avoid.nii.gz")
        labels = load_nifti(folder / "labels.nii.gz")[0]
        assert avoid.shape == labels.shape and np.allclose(geom.origin_mm, p.ct_geom.origin_mm)
        assert (avoid > 0).any() == bool(p.anatomy.nodes) and not ((avoid > 0) & (labels > 0)).any()
        with_nodes += bool(p.anatomy.nodes)
        assert load_case(folder, 0.0).avoid is not None
    assert with_nodes >= 2  # the seed gives the test nodes to check

    p = simulate_patient(PhantomConfig(cohort="igtv", patients=2, seed=3, matrix_scale=0.5, z_extent_mm=200.0), 1)
    pet = resample_to(p.pet_suv, p.pet_geom, p.ct_geom, order=1)
    hottest = max(nd.suv for nd in p.anatomy.nodes)
    assert hottest >= 4.0 and 0.8 * hottest <= pet[node_mask(p)].max() <= 1.3 * hottest
