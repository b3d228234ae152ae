"""``igtv prepare`` on the phantom against its ground truth, splits, the dataset API, augmentation, exports."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from igtv.data.augment import Augment, apply_matrix, augmentation_matrix
from igtv.data.datasets import SliceDataset, load_png, neighbour_names, parse_item, split_items
from igtv.data.prepare import PrepareConfig, prepare_dataset, pseudonym, redact
from igtv.data.qc import roi_qc
from igtv.data.split import patient_split
from igtv.geometry import load_nifti


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def truth_by_pseudonym(qc_cohort, out: Path) -> dict[str, dict]:
    """Map each phantom patient's cohort.json entry to its pseudonym in the prepared dataset."""
    cfg, result = qc_cohort
    key = bytes.fromhex((out / ".pseudonym_key").read_text().strip())
    out_map = {}
    for entry in result.entries:
        pid = str(pydicom.dcmread(result.out_dir / entry["folder"] / "dicom" / "RTSTRUCT_truth.dcm").PatientID)
        out_map[pseudonym(pid, key)] = entry
    return out_map


def test_prepare_matches_phantom_truth(qc_cohort, prepared):
    cfg, result = prepared
    out = result.out_dir
    assert result.failed == [] and result.processed == 4
    truth = truth_by_pseudonym(qc_cohort, out)
    roi_rows = rows(out / "rois.csv")
    assert len(roi_rows) == sum(len(e["lesions"]) for e in truth.values())
    statuses = set()
    for r in roi_rows:
        lesion = truth[r["patient"]]["lesions"][int(r["roi"]) - 1]
        assert r["roi_name"] == lesion["roi_names"][1]
        assert float(r["volume_cc"]) == pytest.approx(lesion["igtv_cc"], rel=0.02)
        assert float(r["suv_max"]) == pytest.approx(lesion["igtv_suv_max"], rel=0.005)
        assert (r["status"] == "excluded") == lesion["below_qc"], r  # QC drops exactly the small/cold ones
        statuses.add(r["status"])
    assert statuses == {"kept", "excluded"}  # the fixture has both
    qc = rows(out / "qc_report.csv")
    assert all(q["reason"] for q in qc if q["status"] == "excluded")


def test_mask_pngs_match_ground_truth(qc_cohort, prepared):
    from igtv.data.png import resize_slice

    cfg, result = prepared
    out = result.out_dir
    truth = truth_by_pseudonym(qc_cohort, out)
    checked = 0
    for s in rows(out / "slices.csv"):
        igtv, _ = load_nifti(qc_cohort[1].out_dir / truth[s["patient"]]["folder"] / "truth" / "igtv.nii.gz")
        expected = resize_slice((igtv[int(s["slice_index"])] == int(s["roi"])).astype(np.float32), 64, True) > 0.5
        got = load_png(out / s["patient"] / f"{s['item']}_mask.png") > 127
        assert np.array_equal(got, expected), s["item"]
        assert (s["role"] == "sample") == bool(int(s["mask_pixels"]))
        checked += 1
    assert checked > 0


def test_png_windows_and_volumes(prepared):
    cfg, result = prepared
    out = result.out_dir
    samples = [r for r in rows(out / "slices.csv") if r["role"] == "sample"]
    s = samples[0]
    pet = load_png(out / s["patient"] / f"{s['item']}_PET.png")
    ct = load_png(out / s["patient"] / f"{s['item']}_CT.png")
    assert pet.shape == ct.shape == (64, 64) and pet.dtype == np.uint8
    # [-1350, 150] HU: air (-1000 HU) near 59.5 on every slice; bone saturates at 255 somewhere (not on every slice:
    # at 64 px a pixel averages 8 x 8 of the CT, and a thin cortex can stay below 150 HU; the pseudonym key, and so
    # which patient comes first, is random here)
    cts = [load_png(out / r["patient"] / f"{r['item']}_CT.png") for r in samples]
    assert all(45 <= c.min() <= 70 for c in cts) and max(int(c.max()) for c in cts) == 255
    labels, geom = load_nifti(out / "volumes" / s["patient"] / "labels.nii.gz")
    ct_hu, geom2 = load_nifti(out / "volumes" / s["patient"] / "ct_hu.nii.gz")
    assert geom == geom2 and labels.max() >= 1 and ct_hu.min() <= -900


def test_splits_and_lists(prepared):
    cfg, result = prepared
    out = result.out_dir
    splits = json.loads((out / "splits.json").read_text())
    patients = [p for s in ("train", "val", "test") for p in splits[s]]
    assert len(patients) == len(set(patients))  # disjoint at patient level
    for name in ("train", "val", "test"):
        for line in (out / f"{name}.txt").read_text().split():
            assert line.split("_")[0] in splits[name]


def test_same_dicom_and_seed_give_the_same_split(small_cohort, tmp_path):
    # each prepare draws a new pseudonym key; the patients in each split must not change with it
    cfg = PrepareConfig(size=32, workers=1, split=(0.34, 0.33, 0.33), min_suv_max=0.5, write_volumes=False)
    seen = []
    for run in range(3):
        out = tmp_path / f"run{run}"
        prepare_dataset(small_cohort[1].out_dir, out, cfg, progress=False)
        key = bytes.fromhex((out / ".pseudonym_key").read_text().strip())
        folder_of = {}
        for entry in small_cohort[1].entries:
            ds = pydicom.dcmread(small_cohort[1].out_dir / entry["folder"] / "dicom" / "RTSTRUCT_truth.dcm")
            folder_of[pseudonym(str(ds.PatientID), key)] = entry["folder"]
        splits = json.loads((out / "splits.json").read_text())
        seen.append({s: sorted(folder_of[p] for p in splits[s]) for s in ("train", "val", "test")})
    assert all(len(v) == 1 for v in seen[0].values())  # three patients, one per split: the test can fail
    assert seen[1] == seen[0] and seen[2] == seen[0]


def test_patient_split_order_key():
    ids = [f"P{i:08x}" for i in range(12)]
    order = {p: f"{(7 * i) % 12:02d}" for i, p in enumerate(ids)}  # a key unrelated to the pseudonyms' order
    renamed = {p: "Q" + p[1:][::-1] for p in ids}  # other pseudonyms for the same patients
    a = patient_split(ids, (0.5, 0.25, 0.25), 0, order)
    b = patient_split(list(renamed.values()), (0.5, 0.25, 0.25), 0, {renamed[p]: order[p] for p in ids})
    assert {k: sorted(renamed[p] for p in v) for k, v in a.items()} == {k: sorted(v) for k, v in b.items()}


def test_patient_split_deterministic_and_fractions():
    ids = [f"P{i:08x}" for i in range(20)]
    a = patient_split(ids, (0.7, 0.15, 0.15), seed=3)
    assert a == patient_split(list(reversed(ids)), (0.7, 0.15, 0.15), seed=3)  # input order does not matter
    assert [len(a[k]) for k in ("train", "val", "test")] == [14, 3, 3]
    assert a != patient_split(ids, (0.7, 0.15, 0.15), seed=4)
    assert set().union(*a.values()) == set(ids)
    small = patient_split(["Pa", "Pb", "Pc"], (0.7, 0.15, 0.15), seed=0)
    assert [len(small[k]) for k in ("train", "val", "test")] == [1, 1, 1]
    with pytest.raises(ValueError, match="sum to 1"):
        patient_split(ids, (0.7, 0.2, 0.2), seed=0)


def test_rerun_skips_and_no_identifiers_in_output(qc_cohort, prepared):
    cfg, result = prepared
    again = prepare_dataset(qc_cohort[1].out_dir, result.out_dir, cfg, progress=False)
    assert again.skipped == 4 and again.processed == 0 and again.samples == result.samples
    for path in result.out_dir.rglob("*"):
        if path.suffix in (".csv", ".json", ".txt", ".yaml") or path.is_dir():
            text = path.read_text() if path.is_file() else path.name
            assert "IGTV-PH" not in text and "Phantom" not in text, path


def test_bad_patient_is_reported_and_skipped(small_cohort, tmp_path):
    _, cohort = small_cohort
    root = tmp_path / "root"
    for folder in ("I0001", "I0002"):
        shutil.copytree(cohort.out_dir / folder / "dicom", root / folder)
    for p in (root / "I0002" / "PT").glob("*.dcm"):
        ds = pydicom.dcmread(p)
        del ds.PatientWeight
        ds.save_as(p)
    (root / "notes.txt").write_text("not DICOM")
    r = prepare_dataset(root, tmp_path / "ds", PrepareConfig(size=32, min_suv_max=0.0), progress=False)
    assert r.processed == 1 and len(r.failed) == 1
    msg = r.failed[0]["error"]
    assert "PatientWeight" in msg and "IGTV-PH" not in msg and "<ROOT>" in msg
    qc = rows(tmp_path / "ds" / "qc_report.csv")
    assert any(q["status"] == "failed" and "PatientWeight" in q["reason"] for q in qc)


def test_empty_roi_is_listed_not_dropped(small_cohort, tmp_path):
    _, cohort = small_cohort
    root = tmp_path / "root"
    shutil.copytree(cohort.out_dir / "I0001" / "dicom", root / "I0001")
    rs = pydicom.dcmread(root / "I0001" / "RTSTRUCT_truth.dcm")
    names = {int(r.ROINumber): r.ROIName for r in rs.StructureSetROISequence}
    for rc in rs.ROIContourSequence:
        if names[int(rc.ReferencedROINumber)] == "IGTV":
            del rc.ContourSequence
    rs.save_as(root / "I0001" / "RTSTRUCT_truth.dcm")
    prepare_dataset(root, tmp_path / "ds", PrepareConfig(size=32), progress=False)
    qc = rows(tmp_path / "ds" / "qc_report.csv")
    assert qc[0]["status"] == "excluded" and "empty ROI" in qc[0]["reason"]


def test_qc_rule_and_redaction():
    assert roi_qc(3.0, 3.0, 3.0, 3.0) == ""
    assert "volume" in roi_qc(2.99, 10, 3.0, 3.0) and "SUVmax" in roi_qc(10, 2.5, 3.0, 3.0)
    assert "empty" in roi_qc(0.0, 0.0, 3.0, 3.0)
    assert redact("/data/DOE^JOHN/ID123/x.dcm", ["ID123", "DOE^JOHN"], "P1") == "/data/P1/P1/x.dcm"


# --- dataset API ----------------------------------------------------------------------------------------------------
def test_neighbours_replicate_at_edges():
    avail = {"A_r1_0009", "A_r1_0010", "A_r1_0011", "B_0000", "B_0001"}
    assert parse_item("A_r1_0010") == ("A_r1", 10)
    assert neighbour_names("A_r1_0010", avail) == ["A_r1_0009", "A_r1_0010", "A_r1_0011"]
    assert neighbour_names("A_r1_0011", avail) == ["A_r1_0010", "A_r1_0011", "A_r1_0011"]  # top edge
    assert neighbour_names("B_0000", avail) == ["B_0000", "B_0000", "B_0001"]  # bottom edge, no index -1
    assert neighbour_names("nonumber", {"nonumber"}) == ["nonumber"] * 3


def test_slice_dataset_25d_uses_real_context_slices(prepared):
    _, result = prepared
    ds = SliceDataset(result.out_dir, "train", "25d")
    d2 = SliceDataset(result.out_dir, "train", "2d")
    assert len(ds) == len(d2) > 0
    sample = ds[0]
    assert sample["image"].shape == (6, 64, 64) and sample["mask"].shape == (1, 64, 64)
    assert d2[0]["image"].shape == (2, 64, 64)
    # the first ROI slice's lower neighbour is a context slice written by prepare, not a replica
    names = ds.names(0)
    assert names[0] != names[1] and parse_item(names[0])[1] == parse_item(names[1])[1] - 1
    assert np.array_equal(sample["image"][1].numpy(), d2[0]["image"][0].numpy())  # CT t
    assert np.array_equal(sample["image"][4].numpy(), d2[0]["image"][1].numpy())  # PET t


def test_pclt20k_layout_read_as_is(small_cohort):
    _, cohort = small_cohort
    root = cohort.out_dir / "pclt"
    assert not (root / "val.txt").exists()
    train, val = split_items(root, "train"), split_items(root, "val")
    test = split_items(root, "test")
    assert {r.folder for r in train}.isdisjoint({r.folder for r in val})
    assert len(train) + len(val) == len((root / "train.txt").read_text().split())
    ds = SliceDataset(root, "test", "25d")
    assert len(ds) == len(test) and ds[0]["image"].shape == (6, 64, 64)


def test_listed_but_missing_file_is_an_error(tmp_path):
    (tmp_path / "train.txt").write_text("X_0001\n")
    with pytest.raises(FileNotFoundError, match="X_0001_CT.png"):
        SliceDataset(tmp_path, "train")


# --- augmentation ---------------------------------------------------------------------------------------------------
def test_augmentation_keeps_image_and_mask_aligned():
    yy, xx = np.mgrid[:64, :64]
    mask = (((yy - 20) ** 2 + (xx - 40) ** 2) < 100).astype(np.float32)[None]
    image = np.concatenate([mask * 255, mask * 255, np.random.default_rng(0).random((4, 64, 64)) * 255])
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        m, ops = augmentation_matrix((64, 64), rng)
        seen.update(ops)
        img, msk = apply_matrix(image.astype(np.float32), mask, m)
        from_image = img[0] > 127.5
        disagree = np.logical_xor(from_image, msk[0] > 0.5).sum()
        assert disagree <= 0.15 * max(1, msk.sum()) + 3, (seed, ops)  # only boundary pixels may differ
    assert seen == {"affine", "flip", "crop"}


def test_flip_is_exact_and_probabilities_respected():
    image = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    mask = (image[:1] > 60).astype(np.float32)
    img, msk = Augment(p=0.0)(image, mask, np.random.default_rng(0))
    assert np.array_equal(img, image) and np.array_equal(msk, mask)
    m, ops = augmentation_matrix((8, 8), np.random.default_rng(0), p=1.0, shift=0.0, scale=(1, 1), crop_area=(1, 1))
    img, msk = apply_matrix(image, mask, m)
    assert set(ops) == {"affine", "flip", "crop"}
    np.testing.assert_allclose(img, image[:, :, ::-1], atol=1e-4)
    assert np.array_equal(msk, mask[:, :, ::-1])


# --- exports --------------------------------------------------------------------------------------------------------
def test_dataset_report_and_nnunet_export(prepared, tmp_path):
    from igtv.cli import main

    _, result = prepared
    assert main(["dataset-report", str(result.out_dir), "--out", str(tmp_path / "fig2.png")]) == 0
    assert (tmp_path / "fig2.png").stat().st_size > 10_000
    assert main(["export-nnunet", str(result.out_dir), "--out", str(tmp_path / "raw"), "--id", "7"]) == 0
    target = tmp_path / "raw" / "Dataset007_IGTV"
    meta = json.loads((target / "dataset.json").read_text())
    splits = json.loads((result.out_dir / "splits.json").read_text())
    assert meta["channel_names"] == {"0": "CT", "1": "PET"} and meta["labels"]["IGTV"] == 1
    assert meta["numTraining"] == len(splits["train"]) + len(splits["val"])
    case = splits["train"][0]
    ct, g0 = load_nifti(target / "imagesTr" / f"{case}_0000.nii.gz")
    pet, g1 = load_nifti(target / "imagesTr" / f"{case}_0001.nii.gz")
    lab, g2 = load_nifti(target / "labelsTr" / f"{case}.nii.gz")
    assert g0 == g1 == g2 and set(np.unique(lab)) <= {0, 1} and lab.sum() > 0


def test_prepare_cli(small_cohort, tmp_path, capsys):
    from igtv.cli import main

    _, cohort = small_cohort
    assert main(["prepare", "--dicom", str(cohort.out_dir), "--out", str(tmp_path / "d"), "--size", "32"]) == 0
    assert "ROIs kept" in capsys.readouterr().out
    assert main(["prepare", "--dicom", str(tmp_path / "none"), "--out", str(tmp_path / "e")]) == 2


def test_a_given_pseudonym_key_gives_the_same_dataset(small_cohort, tmp_path, capsys):
    """Two datasets prepared with one key file share pseudonyms, splits and sample lists (hence training order);
    a dataset refuses another key, and a bad key file is a clear error."""
    from igtv.cli import main

    key = tmp_path / "key.txt"
    key.write_text("ab" * 32 + "\n")
    (tmp_path / "prep.yaml").write_text("min_suv_max: 0.5\nwrite_volumes: false\nsplit: [0.34, 0.33, 0.33]\n")
    base = ["prepare", "--dicom", str(small_cohort[1].out_dir), "--size", "32", "--config", str(tmp_path / "prep.yaml")]
    base += ["--pseudonym-key", str(key)]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    for name in ("splits.json", "train.txt", "val.txt", "test.txt", "slices.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    key_id = pseudonym(str(pydicom.dcmread(next(small_cohort[1].out_dir.rglob("RTSTRUCT_truth.dcm"))).PatientID),
                       bytes.fromhex("ab" * 32))  # fmt: skip
    assert (tmp_path / "a" / "patients" / f"{key_id}.json").exists()  # the HMAC of the PatientID under the key
    assert len((tmp_path / "a" / "train.txt").read_text().split()) > 0
    other = tmp_path / "other.txt"
    other.write_text("cd" * 32 + "\n")
    capsys.readouterr()
    args = [*base[:-2], "--out", str(tmp_path / "a")]
    assert main([*args, "--pseudonym-key", str(other)]) == 2
    assert "prepared with another pseudonym key" in capsys.readouterr().err
    other.write_text("not hex\n")
    assert main([*args[:-2], "--out", str(tmp_path / "c"), "--pseudonym-key", str(other)]) == 2
    assert "not a pseudonym key file" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
