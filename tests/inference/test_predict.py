from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from igtv.checkpoint import CheckpointError
from igtv.dicom.index import DicomInputError, scan_dicom, select_exam
from igtv.dicom.rtstruct import rasterize_contours, read_rtstruct
from igtv.dicom.series import read_image_series
from igtv.evaluation.metrics import dice
from igtv.geometry import load_nifti
from igtv.inference.predict import predict_dicom
from tests.inference.conftest import write_test_checkpoint
from tests.privacy import identifier_hits, phantom_identifiers


def _patient(cohort, index=0):
    cfg, result = cohort
    return result.out_dir / f"I{index + 1:04d}" / "dicom"


def _hot_patient(qc_cohort):
    """The first 128 px phantom patient with a lesion that passes QC (SUVmax >= 3)."""
    for folder in sorted(qc_cohort[1].out_dir.glob("I*")):
        truth = json.loads((folder / "truth.json").read_text())
        if any(not lesion["below_qc"] for lesion in truth["lesions"]):
            return folder / "dicom"
    raise AssertionError("no QC-passing lesion in the cohort")


@pytest.fixture(scope="module")
def predicted(qc_cohort, halfmax_ckpt, tmp_path_factory):
    dicom = _hot_patient(qc_cohort)
    out = tmp_path_factory.mktemp("pred") / "out"
    res = predict_dicom(dicom, halfmax_ckpt, out, device="cpu", compare=dicom / "RTSTRUCT_truth.dcm", progress=False)
    return dicom, out, res


def _ct(dicom):
    series = next(iter(scan_dicom(dicom).values()))
    return read_image_series(select_exam(series).ct)


def test_writes_every_output(predicted):
    _, out, res = predicted
    names = {"RTSTRUCT_igtv.dcm", "mask.nii.gz", "probability.nii.gz", "pet_suv.nii.gz", "stats.json", "report.html"}
    assert {p.name for p in out.iterdir()} == names
    assert not list(out.parent.glob(".*partial*"))  # staging folder cleaned up
    assert res.stats["lesions"], "the half-max stand-in must find the phantom tumour"
    prob, _ = load_nifti(out / "probability.nii.gz")
    assert prob.dtype == np.uint8


def test_rtstruct_matches_mask_and_references_ct(predicted):
    dicom, out, _ = predicted
    ct = _ct(dicom)
    mask, _ = load_nifti(out / "mask.nii.gz")
    rs = read_rtstruct(out / "RTSTRUCT_igtv.dcm")
    assert list(rs.rois) == ["IGTV"]
    raster = rasterize_contours(rs.rois["IGTV"], ct.geometry)
    assert mask.sum() > 0
    assert dice(raster, mask > 0) >= 0.98
    assert rs.referenced_sop_uids and rs.referenced_sop_uids <= set(ct.sop_uids)
    ds = pydicom.dcmread(out / "RTSTRUCT_igtv.dcm")
    ct0 = ct.datasets[0]
    for kw in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID", "StudyDate"):
        assert str(getattr(ds, kw)) == str(getattr(ct0, kw)), kw
    for c in ds.ROIContourSequence[0].ContourSequence:
        assert int(c.NumberOfContourPoints) >= 3
        assert all(len(str(v)) <= 16 for v in c.ContourData)
        sop = c.ContourImageSequence[0].ReferencedSOPInstanceUID
        assert sop in set(ct.sop_uids)


def test_nifti_affine_matches_dicom(predicted):
    dicom, out, _ = predicted
    ct = _ct(dicom)
    import nibabel as nib

    img = nib.load(str(out / "mask.nii.gz"))
    for i, j, k in [(0, 0, 0), (5, 17, 3), (40, 2, len(ct.datasets) - 1)]:
        ras = img.affine @ np.array([i, j, k, 1.0])
        lps = np.array([-ras[0], -ras[1], ras[2]])
        ds = ct.datasets[k]
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        expect = ipp + iop[:3] * col_mm * i + iop[3:] * row_mm * j  # DICOM C.7.6.2.1.1
        np.testing.assert_allclose(lps, expect, atol=1e-3)


def test_rtstruct_passes_dicom_validator(predicted):
    _, out, _ = predicted
    path = out / "RTSTRUCT_igtv.dcm"
    ds = pydicom.dcmread(path)
    for kw in ("OperatorsName", "FrameOfReferenceUID", "PositionReferenceIndicator", "StructureSetLabel"):
        assert kw in ds, kw
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) not installed; attribute checks above ran")
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    lines = (report.stdout + report.stderr).splitlines()
    assert not [ln for ln in lines if ln.startswith("Error")], "\n".join(lines)


def test_no_identifiers_outside_the_rtstruct(predicted):
    dicom, out, _ = predicted
    ct0 = _ct(dicom).datasets[0]
    secrets = [str(ct0.PatientID), str(ct0.PatientName), str(ct0.PatientName).split("^")[-1]]
    for name in ("stats.json", "report.html"):
        text = (out / name).read_text()
        for s in secrets:
            assert s not in text, (name, s)
    for name in ("mask.nii.gz", "pet_suv.nii.gz", "probability.nii.gz"):
        import nibabel as nib

        header = nib.load(str(out / name)).header
        assert str(ct0.PatientID) not in str(header["descrip"]), name
    ids = phantom_identifiers(dicom.parent.parent)
    assert identifier_hits(out, ids) == []  # every file, birth date too
    assert identifier_hits(dicom, ids, skip_parts=())  # the scan finds them where they are: the input DICOM


def test_stats_and_compare(predicted):
    dicom, out, res = predicted
    stats = json.loads((out / "stats.json").read_text())
    truth, _ = load_nifti(dicom.parent / "truth" / "igtv.nii.gz")
    mask, _ = load_nifti(out / "mask.nii.gz")
    assert stats["compare"]["dice"] == pytest.approx(dice(mask > 0, truth > 0), abs=1e-9)
    assert 0.0 < stats["compare"]["dice"] <= 1.0
    total = sum(lesion["volume_cc"] for lesion in stats["lesions"])
    assert total == pytest.approx(stats["prediction"]["total_volume_cc"])
    steps = stats["prediction"]["timings"]  # the steps, in order, inside the run's seconds
    assert list(steps) == ["models_s", "read_s", "network_s", "postprocess_s"] and min(steps.values()) >= 0
    assert steps["network_s"] > 0 and sum(steps.values()) <= stats["prediction"]["seconds"] + 0.01
    assert stats["prediction"]["batch_size"] == 8  # igtv.device.auto_batch_size on a CPU
    for lesion in stats["lesions"]:
        assert lesion["suv_max"] >= lesion["suv_peak"] >= 0
        assert lesion["suv_max"] >= lesion["suv_mean"]
        assert lesion["tlg"] == pytest.approx(lesion["volume_cc"] * lesion["suv_mean"])
    html = (out / "report.html").read_text()
    assert "NOT FOR CLINICAL USE" in html and "data:image/png;base64," in html


def test_threshold_override_draws_the_tighter_contour(predicted, halfmax_ckpt, tmp_path):
    """``--threshold`` replaces the checkpoint's: the stand-in's probability is sigmoid(40 (grey - 1/2)), so 0.99
    keeps only voxels above ~61 % of each candidate's SUVmax instead of 50 %. Without the PET completion the contour
    shrinks inside the default one. (With it, a smaller seed can end larger: its growth at 25 % of SUVmax stays inside
    the 10 mm reach where the larger seed's ran into it, so the completion is not a subset rule.)"""
    from dataclasses import replace

    from igtv.cli import main
    from igtv.inference.lesions import PostprocessConfig

    dicom, out, _ = predicted
    args = ["predict", "--dicom", str(dicom), "--model", halfmax_ckpt, "--out", str(tmp_path / "cli")]
    assert main([*args, "--threshold", "0.99"]) == 0
    assert json.loads((tmp_path / "cli" / "stats.json").read_text())["prediction"]["threshold"] == 0.99
    no_completion = replace(PostprocessConfig(), hull_fill_suv_fraction=0.0, grow_suv_fraction=0.0)
    masks = []
    for thr in (None, 0.99):
        res = predict_dicom(dicom, halfmax_ckpt, tmp_path / f"t{thr}", device="cpu", progress=False,
                            postprocess_cfg=no_completion, threshold=thr)  # fmt: skip
        assert res.stats["prediction"]["threshold"] == (thr or 0.5)
        masks.append(load_nifti(tmp_path / f"t{thr}" / "mask.nii.gz")[0] > 0)
    base, small = masks
    assert 0 < small.sum() < 0.9 * base.sum()
    assert not (small & ~base).any()


def _flip_series_x(folder):
    """Rewrite a series in place as if scanned feet-first: columns mirrored, ImageOrientationPatient
    (-1, 0, 0, 0, 1, 0), positions adjusted so every voxel keeps its patient coordinate."""
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array[:, ::-1].copy()
        ds.PixelData = arr.tobytes()
        sx = float(ds.PixelSpacing[1])
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ipp[0] += (arr.shape[1] - 1) * sx
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.ImageOrientationPatient = ["-1", "0", "0", "0", "1", "0"]
        ds.save_as(path)


def test_feet_first_series_gives_the_same_contour(halfmax_ckpt, predicted, tmp_path):
    dicom, out_hf, _ = predicted
    ff = tmp_path / "ff"
    shutil.copytree(dicom, ff)
    _flip_series_x(ff / "CT")
    _flip_series_x(ff / "PT")
    res = predict_dicom(ff, halfmax_ckpt, tmp_path / "out", device="cpu", progress=False)
    assert res.stats["prediction"]["orientation_flips_zyx"] == [True, False, True]
    m_hf, g_hf = load_nifti(out_hf / "mask.nii.gz")
    m_ff, g_ff = load_nifti(tmp_path / "out" / "mask.nii.gz")
    nz, _, nx = m_hf.shape
    np.testing.assert_allclose(g_ff.index_to_patient([0, 0, 0]), g_hf.index_to_patient([nx - 1, 0, nz - 1]), atol=1e-3)
    assert dice(m_ff[::-1, :, ::-1] > 0, m_hf > 0) >= 0.99
    # and the RTSTRUCT contours land on the same patient coordinates
    ct_hf = _ct(dicom)
    rs = read_rtstruct(tmp_path / "out" / "RTSTRUCT_igtv.dcm")
    assert dice(rasterize_contours(rs.rois["IGTV"], ct_hf.geometry), m_hf > 0) >= 0.97


@pytest.mark.parametrize("case", ["empty", "ct_only", "pet_only", "corrupt", "architecture", "mode"])
def test_bad_input_writes_nothing(case, small_cohort, halfmax_ckpt, tmp_path):
    src = _patient(small_cohort, 1)
    ckpt = halfmax_ckpt
    dicom = tmp_path / "in"
    if case == "empty":
        dicom.mkdir()
        expect, err = "no CT or PET DICOM", DicomInputError
    elif case == "ct_only":
        shutil.copytree(src / "CT", dicom / "CT")
        expect, err = "no PET", DicomInputError
    elif case == "pet_only":
        shutil.copytree(src / "PT", dicom / "PT")
        expect, err = "no CT", DicomInputError
    elif case == "corrupt":
        shutil.copytree(src, dicom)
        victim = sorted((dicom / "CT").iterdir())[5]
        victim.write_bytes(victim.read_bytes()[:3000])
        expect, err = victim.name, DicomInputError
    elif case == "architecture":
        shutil.copytree(src, dicom)
        import torch

        from igtv.checkpoint import load_checkpoint

        state = load_checkpoint(ckpt)
        state["card"]["name"] = "unet_25d_tiny"
        ckpt = tmp_path / "wrong.pt"
        torch.save(state, ckpt)
        expect, err = "do not fit architecture unet_25d_tiny", CheckpointError
    else:
        shutil.copytree(src, dicom)
        ckpt = write_test_checkpoint(tmp_path / "mode.pt", mode="2d")
        expect, err = "input mode mismatch", CheckpointError
    out = tmp_path / "out"
    with pytest.raises(err, match=expect.replace("(", r"\(")):
        predict_dicom(dicom, ckpt, out, device="cpu", progress=False)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.partial*"))


@pytest.mark.parametrize(
    "setting", [{"batch_size": 0}, {"batch_size": -8}, {"overlap": 1.0}, {"threshold": 1.0}, {"threshold": 0.0}]
)
def test_bad_settings_fail_before_anything_is_read(setting, tmp_path):
    """A batch below 1 (which would predict nothing), an overlap of 1 or a probability threshold outside (0, 1) is
    refused at once, naming the setting; the checkpoint and the DICOM (absent here) are not even opened."""
    name = next(iter(setting)).replace("_", " ")
    with pytest.raises(ValueError, match=name):
        predict_dicom(tmp_path / "dicom", tmp_path / "absent.pt", tmp_path / "out", **setting)
    assert not (tmp_path / "out").exists()


def test_missing_reference_fails_before_predicting(small_cohort, tmp_path):
    """A bad ``--compare`` is reported before the model is even loaded (the checkpoint here does not exist)."""
    missing = tmp_path / "no_such_rtstruct.dcm"
    with pytest.raises(DicomInputError, match="no_such_rtstruct.dcm"):
        predict_dicom(_patient(small_cohort, 1), tmp_path / "absent.pt", tmp_path / "out", compare=missing)
    assert not (tmp_path / "out").exists()


def test_existing_output_survives_a_failure(small_cohort, halfmax_ckpt, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stats.json").write_text("previous")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomInputError):
        predict_dicom(tmp_path / "empty", halfmax_ckpt, out, device="cpu", progress=False)
    assert (out / "stats.json").read_text() == "previous"


def test_cli_predict_and_pclt(small_cohort, halfmax_ckpt, tmp_path, capsys):
    from igtv.cli import main

    dicom = _patient(small_cohort, 2)
    assert main(["predict", "--dicom", str(dicom), "--model", halfmax_ckpt, "--out", str(tmp_path / "a")]) == 0
    assert "report:" in capsys.readouterr().out
    assert (tmp_path / "a" / "report.html").exists()
    assert main(["predict", "--dicom", str(tmp_path / "nowhere"), "--model", halfmax_ckpt, "--out", "x"]) == 2
    pclt_ckpt = write_test_checkpoint(tmp_path / "pclt.pt", preset="pclt20k")
    pclt = small_cohort[1].out_dir / "pclt"
    rc = main(["predict", "--pclt", str(pclt), "--model", pclt_ckpt, "--out", str(tmp_path / "p"), "--split", "all"])
    assert rc == 0
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    preds = list((tmp_path / "p").glob("*/*_pred.png"))
    assert summary["slices"] == len(preds) == len(list(pclt.glob("*/*_CT.png")))
    assert 0.0 <= summary["mean_dice"] <= 1.0


def test_patient_study_repr_hides_identifiers():
    import datetime as dt

    from igtv.dicom.write import PatientStudy

    ps = PatientStudy("Doe^Jane", "ID-4711", "F", "1.2", "1.3", dt.datetime(2020, 1, 1), accession_number="ACC9")
    text = repr(ps)
    assert "Doe" not in text and "ID-4711" not in text and "ACC9" not in text and "1.2" in text


def test_patch_model_sliding_window_matches_whole_slices(qc_cohort, tmp_path):
    """A pointwise model gives the same contour through the sliding window (32 px tiles at the CT's pixel size)
    as through whole slices at the CT's size: tiles, Gaussian weights and seams change nothing. At 2x coarser
    pixels the contour stays close (resampling only)."""
    dicom = _hot_patient(qc_cohort)
    ny = _ct(dicom).array.shape[1]
    whole = write_test_checkpoint(tmp_path / "whole.pt", size=ny)
    tiles = write_test_checkpoint(tmp_path / "tiles.pt", size=ny, patch=32, spacing_mm=0.0)
    coarse = write_test_checkpoint(
        tmp_path / "coarse.pt", size=ny, patch=32, spacing_mm=2 * _ct(dicom).geometry.spacing_mm[0]
    )
    masks = {}
    for name, ckpt in (("whole", whole), ("tiles", tiles), ("coarse", coarse)):
        res = predict_dicom(dicom, ckpt, tmp_path / name, device="cpu", progress=False)
        masks[name] = load_nifti(res.files["mask"])[0] > 0
        assert res.stats["model"]["sampling"].startswith("patches" if name != "whole" else "whole")
    assert masks["whole"].any()
    assert dice(masks["tiles"], masks["whole"]) > 0.99
    assert dice(masks["coarse"], masks["whole"]) > 0.8


def test_tiles_far_from_uptake_are_not_predicted_and_the_contour_stays(qc_cohort, tmp_path, monkeypatch):
    """With the default ``uptake_reach_mm`` the sliding window skips the tiles farther than that from uptake the
    SUV rule could keep; the contour is the one every tile of the thorax region gives, and it still finds the
    lesion."""
    import igtv.inference.sliding as sliding
    from igtv.inference.lesions import PostprocessConfig

    dicom = _hot_patient(qc_cohort)
    ckpt = write_test_checkpoint(tmp_path / "t.pt", size=_ct(dicom).array.shape[1], patch=32, preset="pclt20k")
    real, counted = sliding.tiles, []
    monkeypatch.setattr(sliding, "tiles", lambda *a, **k: counted.append(len(t := real(*a, **k))) or t)
    n, masks = {}, {}
    for reach in (0.0, PostprocessConfig().uptake_reach_mm):
        counted.clear()
        post = PostprocessConfig(uptake_reach_mm=reach)
        res = predict_dicom(dicom, ckpt, tmp_path / f"r{reach:g}", device="cpu", postprocess_cfg=post,
                            compare=dicom / "RTSTRUCT_truth.dcm", progress=False)  # fmt: skip
        n[reach], masks[reach] = sum(counted), load_nifti(res.files["mask"])[0] > 0
    assert 30.0 in n and n[30.0] < 0.8 * n[0.0], n
    assert masks[0.0].any() and np.array_equal(masks[0.0], masks[30.0])
    assert res.stats["compare"]["dice"] > 0.3
