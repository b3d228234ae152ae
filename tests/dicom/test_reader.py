"""Reading clinical-style DICOM: every bad input is built from phantom files and must give a clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from igtv.dicom.index import DicomInputError, roi_matches, scan_dicom, select_exam
from igtv.dicom.series import export_suv, read_image_series, read_pet_suv
from igtv.dicom.structures import read_roi_masks
from igtv.dicom.write import det_uid
from igtv.geometry import load_nifti


@pytest.fixture
def patient(small_cohort, tmp_path) -> Path:
    """A private copy of one phantom patient's DICOM folder (CT/, PT/, RTSTRUCT_truth.dcm)."""
    _, result = small_cohort
    dst = tmp_path / "root" / "I0001"
    shutil.copytree(result.out_dir / "I0001" / "dicom", dst)
    return dst


def edit(path: Path, fn) -> None:
    ds = pydicom.dcmread(path)
    fn(ds)
    ds.save_as(path)


def edit_all(folder: Path, fn) -> None:
    for p in sorted(folder.glob("*.dcm")):
        edit(p, fn)


def exam_of(root: Path, roi: str | None = "IGTV"):
    (series,) = scan_dicom(root).values()
    return select_exam(series, roi)


def load(root: Path, roi: str = "IGTV"):
    exam = exam_of(root, roi)
    ct = read_image_series(exam.ct)
    suv = read_pet_suv(exam.pet)
    return ct, suv, read_roi_masks(exam.structure, ct, roi)


def test_reads_phantom_exactly(small_cohort, patient):
    _, result = small_cohort
    ct, (suv, pet_geom, scale), masks = load(patient.parent)
    truth_suv, truth_geom = load_nifti(result.out_dir / "I0001" / "truth" / "pet_suv.nii.gz")
    igtv, ct_geom = load_nifti(result.out_dir / "I0001" / "truth" / "igtv.nii.gz")
    assert np.allclose(pet_geom.affine_lps(), truth_geom.affine_lps(), atol=1e-3)
    assert np.allclose(ct.geometry.affine_lps(), ct_geom.affine_lps(), atol=1e-3)
    hot = truth_suv > 0.2
    assert np.abs(suv[hot] / truth_suv[hot] - 1).max() < 0.005
    assert scale.kind == "bw" and "START" in scale.rule
    assert len(masks) == int(igtv.max())
    for k in range(1, int(igtv.max()) + 1):
        assert np.array_equal(masks["IGTV" if k == 1 else f"IGTV_{k}"], igtv == k)


def test_slices_sorted_by_position_not_file_name(patient):
    # renaming files to reverse their order (and scrambling InstanceNumber) must not change the volume
    ct_dir = patient / "CT"
    ref = read_image_series(exam_of(patient.parent).ct)
    files = sorted(ct_dir.glob("*.dcm"))
    for i, p in enumerate(files):
        p.rename(ct_dir / f"tmp_{len(files) - i:04d}.dcm")
    edit_all(ct_dir, lambda ds: setattr(ds, "InstanceNumber", 7))
    got = read_image_series(exam_of(patient.parent).ct)
    assert np.array_equal(got.array, ref.array) and got.geometry == ref.geometry


def test_seg_masks_equal_rtstruct(patient, small_cohort):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    _, result = small_cohort
    igtv, _ = load_nifti(result.out_dir / "I0001" / "truth" / "igtv.nii.gz")
    (patient / "RTSTRUCT_truth.dcm").unlink()
    ct = read_image_series(exam_of(patient.parent, None).ct)
    sources = [pydicom.dcmread(p) for p in ct.files]
    desc = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="IGTV",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=(igtv == 1).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc],
        series_instance_uid=hd.UID(),
        series_number=5,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(patient / "seg.dcm")
    exam = exam_of(patient.parent)
    assert exam.structure.modality == "SEG"
    masks = read_roi_masks(exam.structure, ct, "IGTV")
    assert np.array_equal(masks["IGTV"], igtv == 1)


def test_roi_name_matching():
    assert roi_matches("IGTV", "IGTV") and roi_matches("igtv_2", "IGTV") and roi_matches("IGTV 3", "IGTV")
    assert not roi_matches("IGTV_ring", "IGTV") and not roi_matches("GTV", "IGTV") and not roi_matches("xIGTV", "IGTV")


def test_suv_cli_function(patient, tmp_path, small_cohort):
    _, result = small_cohort
    scale = export_suv(patient / "PT", tmp_path / "suv.nii.gz")
    suv, geom = load_nifti(tmp_path / "suv.nii.gz")
    truth, tgeom = load_nifti(result.out_dir / "I0001" / "truth" / "pet_suv.nii.gz")
    assert np.allclose(geom.affine_ras(), tgeom.affine_ras(), atol=1e-3)
    assert np.abs(suv - truth).max() < 0.005 * truth.max() and scale.factor > 0


# --- bad inputs: (id, how to break the patient, what to load, words the error must contain) ---------------------
def _truncate(p: Path) -> None:
    f = sorted((p / "PT").glob("*.dcm"))[5]
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete_ct_slice(p: Path) -> None:
    sorted((p / "CT").glob("*.dcm"))[20].unlink()


def _shift_ct_slice(p: Path) -> None:
    def fn(ds):
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 0.4]

    edit(sorted((p / "CT").glob("*.dcm"))[20], fn)


def _duplicate_ct_slice(p: Path) -> None:
    src = sorted((p / "CT").glob("*.dcm"))[20]
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = det_uid("dup")
    ds.save_as(p / "CT" / "zz_copy.dcm")


def _tilt(p: Path) -> None:
    edit(sorted((p / "CT").glob("*.dcm"))[3], lambda ds: setattr(ds, "GantryDetectorTilt", "15"))


def _rotate_one(p: Path) -> None:
    edit(sorted((p / "CT").glob("*.dcm"))[3], lambda ds: setattr(ds, "ImageOrientationPatient", [0, 1, 0, 1, 0, 0]))


def _sheared(p: Path) -> None:
    def fn(ds):
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1] + 0.02 * ipp[2], ipp[2]]  # y drifts with z: a tilted stack

    edit_all(p / "CT", fn)


def _pet_tag_removed(keyword: str):
    def fn(p: Path) -> None:
        def rm(ds):
            if keyword in ("RadionuclideTotalDose", "RadionuclideHalfLife"):
                delattr(ds.RadiopharmaceuticalInformationSequence[0], keyword)
            else:
                delattr(ds, keyword)

        edit_all(p / "PT", rm)

    return fn


def _units(p: Path) -> None:
    edit_all(p / "PT", lambda ds: setattr(ds, "Units", "PROPCNTS"))


def _rtstruct_other_for(p: Path) -> None:
    def fn(ds):
        ds.FrameOfReferenceUID = "1.2.3.999"
        ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = "1.2.3.999"

    edit(p / "RTSTRUCT_truth.dcm", fn)


def _rtstruct_other_series(p: Path) -> None:
    def fn(ds):
        ref = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
        ref.SeriesInstanceUID = "1.2.3.998"

    edit(p / "RTSTRUCT_truth.dcm", fn)


def _pet_into_ct_series(p: Path) -> None:
    ct_series = pydicom.dcmread(next((p / "CT").glob("*.dcm"))).SeriesInstanceUID
    edit(sorted((p / "PT").glob("*.dcm"))[0], lambda ds: setattr(ds, "SeriesInstanceUID", ct_series))


def _no_pet(p: Path) -> None:
    shutil.rmtree(p / "PT")


def _pet_other_for(p: Path) -> None:
    edit_all(p / "PT", lambda ds: setattr(ds, "FrameOfReferenceUID", "1.2.3.777"))


def _two_pets(p: Path) -> None:
    shutil.copytree(p / "PT", p / "PT2")
    edit_all(p / "PT2", lambda ds: setattr(ds, "SeriesInstanceUID", "1.2.3.555"))


def _missing_study_uid(p: Path) -> None:
    edit(sorted((p / "CT").glob("*.dcm"))[0], lambda ds: delattr(ds, "StudyInstanceUID"))


BAD = [
    ("truncated_file", _truncate, "truncated"),
    ("missing_ct_slice", _delete_ct_slice, "missing slice"),
    ("non_uniform_spacing", _shift_ct_slice, "non-uniform slice spacing"),
    ("duplicate_position", _duplicate_ct_slice, "duplicate slice position"),
    ("gantry_tilt", _tilt, "gantry tilt"),
    ("mixed_orientation", _rotate_one, "mixed orientations"),
    ("sheared_stack", _sheared, "not along the slice normal"),
    ("missing_weight", _pet_tag_removed("PatientWeight"), "PatientWeight"),
    ("missing_dose", _pet_tag_removed("RadionuclideTotalDose"), "RadionuclideTotalDose"),
    ("missing_half_life", _pet_tag_removed("RadionuclideHalfLife"), "RadionuclideHalfLife"),
    ("missing_radiopharmaceutical", _pet_tag_removed("RadiopharmaceuticalInformationSequence"), "Radiopharmaceutical"),
    ("unknown_units", _units, "PROPCNTS"),
    ("rtstruct_other_frame_of_reference", _rtstruct_other_for, "frame of reference"),
    ("rtstruct_references_absent_ct", _rtstruct_other_series, "not a CT series in this folder"),
    ("mixed_series", _pet_into_ct_series, "mixes modalities"),
    ("no_pet", _no_pet, "no PET"),
    ("pet_other_frame_of_reference", _pet_other_for, "do not share a frame of reference"),
    ("two_pet_series", _two_pets, "ambiguous"),
    ("missing_study_uid", _missing_study_uid, "StudyInstanceUID"),
]


@pytest.mark.parametrize("breaker,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_gives_clear_error(patient, breaker, words):
    breaker(patient)
    with pytest.raises(DicomInputError) as err:
        load(patient.parent)
    msg = str(err.value)
    assert words in msg
    assert str(patient) in msg or "ambiguous" in msg  # names the file or lists the candidates


def test_missing_roi_lists_the_rois_found(patient):
    with pytest.raises(DicomInputError, match=r"named like 'ITV'.*GTV, IGTV"):
        load(patient.parent, roi="ITV")


def test_not_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        scan_dicom(tmp_path / "nope")


def test_symlink_loop_does_not_hang_the_indexer(small_cohort, tmp_path):
    """A folder that links back to its parent is not followed: each file is indexed once."""
    import time

    root = tmp_path / "root"
    shutil.copytree(small_cohort[1].out_dir / "I0001" / "dicom" / "CT", root / "CT")
    (root / "CT" / "loop").symlink_to(root, target_is_directory=True)
    t0 = time.perf_counter()
    patients = scan_dicom(root)
    assert time.perf_counter() - t0 < 30
    (series,) = next(iter(patients.values()))
    assert len(series.files) == len(list((root / "CT").glob("*.dcm")))
