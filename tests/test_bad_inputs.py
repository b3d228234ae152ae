"""A corpus of broken real-world inputs, built from phantom data, run through the CLI as a user would.

For every case: the CLI returns (no traceback) with exit code 2 and a message that names the file or setting and
the problem, and the output folder holds nothing; or, where the input is only untidy (junk files beside an exam),
the run succeeds. The table of cases and messages is written to ``docs/bad_inputs.md`` by the run.
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from igtv.cli import main
from tests.inference.conftest import write_test_checkpoint

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
RESULTS: dict[str, tuple[str, str, int, str]] = {}  # case -> (command, input, exit code, message)


# --- building blocks ------------------------------------------------------------------------------------------------
def _patient(small_cohort) -> Path:
    return small_cohort[1].out_dir / "I0002" / "dicom"


def _edit_all(folder: Path, fn) -> None:
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        fn(ds)
        ds.save_as(path)


def _edit_one(path: Path, fn) -> None:
    ds = pydicom.dcmread(path)
    fn(ds)
    ds.save_as(path)


def _new_series(folder: Path, tag: str) -> None:
    """Give every file of a copied series new Series and SOP Instance UIDs (a second series of the same patient)."""

    def fn(ds):
        ds.SeriesInstanceUID = ds.SeriesInstanceUID + "." + tag
        ds.SOPInstanceUID = ds.SOPInstanceUID + "." + tag
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    _edit_all(folder, fn)


def _mid(folder: Path) -> Path:
    files = sorted(folder.iterdir())
    return files[len(files) // 2]


def _del_rp(name: str):
    def fn(ds):
        rp = ds.RadiopharmaceuticalInformationSequence[0]
        if name in rp:
            delattr(rp, name)

    return fn


# --- the cases ------------------------------------------------------------------------------------------------------
# name -> (command, what is broken, expected words of the message or "OK" for an input that must be handled)
CASES = {
    "predict_missing_folder": ("predict", "the --dicom folder does not exist", "not a folder"),
    "predict_empty_folder": ("predict", "an empty folder", "no CT or PET"),
    "predict_zero_byte_file": ("predict", "a folder holding one zero-byte file", "no CT or PET"),
    "predict_text_file": ("predict", "a folder holding one text file", "no CT or PET"),
    "predict_junk_beside_exam": ("predict", "a zero-byte file, a text file and a DICOMDIR beside a good exam", "OK"),
    "predict_truncated_ct": ("predict", "a CT slice cut to 3000 bytes", "CT_0"),
    "predict_two_ct_series": ("predict", "two CT series in one folder", "2 CT series"),
    "predict_missing_slice": ("predict", "a CT slice missing in the middle", "spacing"),
    "predict_nonuniform_spacing": ("predict", "one CT slice moved by 1 mm", "spacing"),
    "predict_gantry_tilt": ("predict", "CT with a 10 degree gantry tilt", "tilt"),
    "predict_duplicate_sop": ("predict", "a CT slice copied under another file name", "duplicate"),
    "predict_pet_cnts": ("predict", "PET Units CNTS without Philips' scale factors", "CNTS"),
    "predict_no_weight": ("predict", "PET without PatientWeight", "PatientWeight"),
    "predict_no_dose": ("predict", "PET without RadionuclideTotalDose", "RadionuclideTotalDose"),
    "predict_no_injection_time": ("predict", "PET without RadiopharmaceuticalStartTime", "RadiopharmaceuticalStart"),
    "predict_injection_after_scan": ("predict", "RadiopharmaceuticalStartTime after SeriesTime", "h before the scan"),
    "predict_negative_pet": ("predict", "PET RescaleIntercept of -5000 Bq/ml", "RescaleIntercept"),
    "predict_pet_other_frame": ("predict", "PET in another frame of reference", "frame of reference"),
    "predict_compare_other_frame": ("predict", "--compare RTSTRUCT of another frame of reference", "frame of ref"),
    "predict_compare_two_point_contour": ("predict", "--compare RTSTRUCT with a 2-point contour", "2 point(s)"),
    "predict_compare_missing": ("predict", "--compare file that does not exist", "No such file"),
    "predict_compare_no_roi": ("predict", "--compare RTSTRUCT without the ROI asked for", "IGTV"),
    "predict_disk_full": ("predict", "the disk fills while the outputs are written", "No space left"),
    "ckpt_missing": ("predict", "--model path that does not exist", "checkpoint not found"),
    "ckpt_truncated": ("predict", "a checkpoint cut in half", "corrupt or truncated"),
    "ckpt_pickled": ("predict", "a checkpoint holding a pickled object", "refused"),
    "ckpt_other_architecture": ("predict", "weights of one network under another's card", "do not fit"),
    "ckpt_bad_card": ("predict", "a model card with an unknown key", "unknown key"),
    "suv_no_pet": ("suv", "a folder with CT only", "no PET"),
    "suv_two_pet_series": ("suv", "two PET series in one folder", "2 PET series"),
    "prepare_empty": ("prepare", "a DICOM root without DICOM", "no CT/PT/RTSTRUCT/SEG"),
    "prepare_bad_config": ("prepare", "--config YAML with a mistyped key", "unknown key 'presett'"),
    "prepare_rtstruct_other_frame": (
        "prepare",
        "the only patient's RTSTRUCT in another frame of reference",
        "frame of",
    ),
    "train_unknown_key": ("train", "--config YAML with an unknown key", "unknown key 'learning_rate'"),
    "train_bad_yaml": ("train", "--config file that is not YAML", "not valid YAML"),
    "train_bad_set": ("train", "--set of a key that does not exist", "unknown key 'lrr'"),
    "train_missing_data": ("train", "--data folder that does not exist", "train"),
    "pclt_wrong_size": ("predict --pclt", "a PET PNG of another size than its CT", "must have one size"),
    "pclt_colour_png": ("predict --pclt", "a colour CT PNG", "colour PNG"),
    "pclt_missing_file": ("predict --pclt", "test.txt naming a slice that is not there", "missing"),
    "pclt_escape": ("predict --pclt", "test.txt with ../ leaving the dataset", "leave the dataset root"),
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "halfmax.pt")


def _build(case: str, small_cohort, ckpt: str, tmp: Path, monkeypatch) -> tuple[list[str], Path]:
    """The broken input of ``case`` in ``tmp`` and the CLI arguments that read it; returns (argv, output folder)."""
    src = _patient(small_cohort)
    dicom, out = tmp / "in", tmp / "out"
    model = ckpt
    extra: list[str] = []

    def copy():
        shutil.copytree(src, dicom)

    if case == "predict_missing_folder":
        pass
    elif case == "predict_empty_folder":
        dicom.mkdir()
    elif case == "predict_zero_byte_file":
        dicom.mkdir()
        (dicom / "empty.dcm").write_bytes(b"")
    elif case == "predict_text_file":
        dicom.mkdir()
        (dicom / "notes.txt").write_text("patient notes\n")
    elif case == "predict_junk_beside_exam":
        copy()
        (dicom / "CT" / "zero.dcm").write_bytes(b"")
        (dicom / "readme.txt").write_text("export of the planning system\n")
        (dicom / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    elif case == "predict_truncated_ct":
        copy()
        victim = _mid(dicom / "CT")
        victim.write_bytes(victim.read_bytes()[:3000])
    elif case == "predict_two_ct_series":
        copy()
        shutil.copytree(dicom / "CT", dicom / "CT2")
        _new_series(dicom / "CT2", "2")
    elif case == "predict_missing_slice":
        copy()
        _mid(dicom / "CT").unlink()
    elif case == "predict_nonuniform_spacing":
        copy()
        _edit_one(
            _mid(dicom / "CT"),
            lambda ds: setattr(
                ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 1.0]
            ),
        )
    elif case == "predict_gantry_tilt":
        copy()
        c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
        _edit_all(dicom / "CT", lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, float(c), float(s)]))
    elif case == "predict_duplicate_sop":
        copy()
        m = _mid(dicom / "CT")
        shutil.copy(m, m.with_name("copy_" + m.name))
    elif case == "predict_pet_cnts":
        copy()
        _edit_all(dicom / "PT", lambda ds: setattr(ds, "Units", "CNTS"))
    elif case == "predict_no_weight":
        copy()
        _edit_all(dicom / "PT", lambda ds: delattr(ds, "PatientWeight"))
    elif case == "predict_no_dose":
        copy()
        _edit_all(dicom / "PT", _del_rp("RadionuclideTotalDose"))
    elif case == "predict_no_injection_time":
        copy()

        def fn(ds):
            _del_rp("RadiopharmaceuticalStartTime")(ds)
            _del_rp("RadiopharmaceuticalStartDateTime")(ds)

        _edit_all(dicom / "PT", fn)
    elif case == "predict_injection_after_scan":
        copy()

        def fn(ds):
            _del_rp("RadiopharmaceuticalStartDateTime")(ds)
            series = str(ds.SeriesTime)
            later = f"{(int(series[:2]) + 1) % 24:02d}{series[2:6]}"
            ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = later

        _edit_all(dicom / "PT", fn)
    elif case == "predict_negative_pet":
        copy()
        _edit_all(dicom / "PT", lambda ds: setattr(ds, "RescaleIntercept", -5000))
    elif case == "predict_pet_other_frame":
        copy()
        _edit_all(dicom / "PT", lambda ds: setattr(ds, "FrameOfReferenceUID", ds.FrameOfReferenceUID + ".9"))
    elif case.startswith("predict_compare"):
        copy()
        ref = tmp / "ref.dcm"
        shutil.copy(dicom / "RTSTRUCT_truth.dcm", ref)
        (dicom / "RTSTRUCT_truth.dcm").unlink()
        if case == "predict_compare_other_frame":
            _edit_one(
                ref,
                lambda ds: (
                    setattr(ds, "ReferencedFrameOfReferenceSequence", ds.ReferencedFrameOfReferenceSequence)
                    or setattr(ds.ReferencedFrameOfReferenceSequence[0], "FrameOfReferenceUID", "1.2.3.4")
                ),
            )
            _edit_one(
                ref, lambda ds: setattr(ds.StructureSetROISequence[0], "ReferencedFrameOfReferenceUID", "1.2.3.4")
            )
        elif case == "predict_compare_two_point_contour":

            def fn(ds):
                c = ds.ROIContourSequence[0].ContourSequence[0]
                c.ContourData = list(c.ContourData)[:6]
                c.NumberOfContourPoints = 2

            _edit_one(ref, fn)
        elif case == "predict_compare_missing":
            ref.unlink()
        elif case == "predict_compare_no_roi":

            def fn(ds):
                for r in ds.StructureSetROISequence:
                    r.ROIName = "Heart" + str(r.ROINumber)

            _edit_one(ref, fn)
        extra = ["--compare", str(ref)]
    elif case == "predict_disk_full":
        copy()
        import igtv.io

        real = igtv.io.os.replace
        calls = {"n": 0}

        def replace(a, b):
            calls["n"] += 1
            if calls["n"] == 3:  # the third file written lands on a full disk
                raise OSError(errno.ENOSPC, "No space left on device", str(b))
            return real(a, b)

        monkeypatch.setattr(igtv.io.os, "replace", replace)
    elif case.startswith("ckpt_"):
        copy()
        model = str(tmp / "model.pt")
        if case == "ckpt_missing":
            pass
        elif case == "ckpt_truncated":
            data = Path(ckpt).read_bytes()
            Path(model).write_bytes(data[: len(data) // 2])
        elif case == "ckpt_pickled":
            torch.save({"format": "igtv-checkpoint-1", "model": {}, "payload": Path("x")}, model)
        else:
            state = torch.load(ckpt, weights_only=True)
            if case == "ckpt_other_architecture":
                state["card"]["name"] = "unet_25d_tiny"
            else:
                state["card"]["colour"] = "red"
            torch.save(state, model)
    elif case == "suv_no_pet":
        shutil.copytree(src / "CT", dicom)
        return ["suv", str(dicom), "--out", str(out / "suv.nii.gz")], out
    elif case == "suv_two_pet_series":
        shutil.copytree(src / "PT", dicom / "PT")
        shutil.copytree(src / "PT", dicom / "PT2")
        _new_series(dicom / "PT2", "2")
        return ["suv", str(dicom), "--out", str(out / "suv.nii.gz")], out
    elif case.startswith("prepare_"):
        root = tmp / "root"
        root.mkdir()
        args = ["prepare", "--dicom", str(root), "--out", str(out), "--size", "64"]
        if case == "prepare_bad_config":
            shutil.copytree(src, root / "P1")
            (tmp / "prep.yaml").write_text("presett: lucid\n")
            args += ["--config", str(tmp / "prep.yaml")]
        elif case == "prepare_rtstruct_other_frame":
            shutil.copytree(src, root / "P1")
            _edit_one(
                root / "P1" / "RTSTRUCT_truth.dcm",
                lambda ds: setattr(ds.ReferencedFrameOfReferenceSequence[0], "FrameOfReferenceUID", "1.2.3.4"),
            )
        return args, out
    elif case.startswith("train_"):
        cfg = tmp / "run.yaml"
        data = small_cohort[1].out_dir / "pclt"
        args = ["train", "--config", str(cfg), "--data", str(data), "--out", str(out), "--device", "cpu"]
        body = "model: cipa_2d_tiny\ntrain:\n  epochs: 1\n"
        if case == "train_unknown_key":
            body += "  learning_rate: 0.1\n"
        elif case == "train_bad_yaml":
            body = "model: [cipa_2d_tiny\n"
        elif case == "train_bad_set":
            args += ["--set", "train.lrr=1"]
        elif case == "train_missing_data":
            args[4] = str(tmp / "nowhere")
        cfg.write_text(body)
        return args, out
    elif case.startswith("pclt_"):
        root = tmp / "pclt"
        shutil.copytree(small_cohort[1].out_dir / "pclt", root)
        first = (root / "test.txt").read_text().split()[0]
        folder, name = first.rsplit("/", 1) if "/" in first else (first.split("_", 1)[0], first)
        if case == "pclt_wrong_size":
            from PIL import Image

            Image.new("L", (32, 32)).save(root / folder / f"{name}_PET.png")
        elif case == "pclt_colour_png":
            from PIL import Image

            img = np.zeros((64, 64, 3), np.uint8)
            img[..., 0] = 200
            Image.fromarray(img).save(root / folder / f"{name}_CT.png")
        elif case == "pclt_missing_file":
            (root / folder / f"{name}_CT.png").unlink()
        elif case == "pclt_escape":
            (root / "test.txt").write_text("../../etc/passwd_0001\n")
        (root / "test.txt").write_text((root / "test.txt").read_text().split("\n")[0] + "\n")
        return ["predict", "--pclt", str(root), "--model", model, "--out", str(out), "--device", "cpu"], out
    return ["predict", "--dicom", str(dicom), "--model", model, "--out", str(out), "--device", "cpu", *extra], out


def _run_case(case, small_cohort, ckpt, tmp_path, capsys, monkeypatch) -> str:
    """Run one case; returns '' when it behaves, else what is wrong."""
    command, broken, expect = CASES[case]
    tmp = tmp_path / case
    tmp.mkdir()
    with monkeypatch.context() as mp:
        argv, out = _build(case, small_cohort, ckpt, tmp, mp)
        try:
            rc = main(argv)
        except BaseException as exc:  # a traceback at the CLI
            RESULTS[case] = (command, broken, -1, f"Traceback: {type(exc).__name__}: {exc}")
            return f"{case}: raised {type(exc).__name__}: {exc}"
    err = capsys.readouterr().err.strip()
    message = (err.splitlines()[-1] if err else "") if rc else "ran to the end; every output written"
    message = re.sub(r"partial-\d+", "partial-<pid>", message.replace(str(tmp), "<tmp>"))  # stable across runs
    RESULTS[case] = (command, broken, rc, message)
    if expect == "OK":
        return "" if rc == 0 and (out / "RTSTRUCT_igtv.dcm").exists() else f"{case}: rc {rc}: {err[-300:]}"
    if rc != 2:
        return f"{case}: exit code {rc}, expected 2: {err[-300:]}"
    if expect.lower() not in message.lower():
        return f"{case}: message does not say {expect!r}: {message}"
    if out.exists() and any(out.rglob("*")):
        return f"{case}: left {sorted(str(p) for p in out.rglob('*'))}"
    partial = [p for p in tmp.rglob(".*partial*")] + [p for p in tmp.rglob(".*.tmp*")]
    return f"{case}: left partial files {partial}" if partial else ""


def test_bad_input_corpus(small_cohort, ckpt, tmp_path, capsys, monkeypatch):
    """Every case of the corpus; writes docs/bad_inputs.md, then fails listing every case that misbehaved."""
    problems = [p for case in CASES if (p := _run_case(case, small_cohort, ckpt, tmp_path, capsys, monkeypatch))]
    lines = [
        "# Bad inputs",
        "",
        "Generated by `tests/test_bad_inputs.py`: each case is built from phantom data and run through the `igtv`",
        "CLI in-process. Exit code 2: a clear error and nothing written to the output folder; 0: handled.",
        "",
        f"{len(RESULTS)} cases, {sum(rc == 2 for _, _, rc, _ in RESULTS.values())} clear errors, "
        f"{sum(rc == 0 for _, _, rc, _ in RESULTS.values())} handled, "
        f"{sum(rc not in (0, 2) for _, _, rc, _ in RESULTS.values())} tracebacks; {len(problems)} misbehaving.",
        "",
        "| case | command | input | exit | message |",
        "|---|---|---|---|---|",
    ]
    for case, (command, broken, rc, message) in RESULTS.items():
        lines.append(f"| {case} | `igtv {command}` | {broken} | {rc} | {message.replace('|', '/')} |")
    text = "\n".join(lines) + "\n"
    if not DOC.exists() or DOC.read_text() != text:
        DOC.write_text(text)
    assert len(CASES) >= 30
    assert problems == [], "\n".join(problems)
