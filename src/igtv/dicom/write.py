"""Write CT and PET image series as DICOM (pydicom), one file per slice, each written atomically.

Used by the phantom; the same attributes a scanner writes so that SimpleITK, pydicom and the SUV code read them
as they would a clinical series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from igtv.dicom.suv import frame_average_time_s
from igtv.geometry import Geometry
from igtv.io import atomic_path

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def det_uid(*parts: object) -> str:
    """A deterministic UID derived from ``parts`` (same inputs, same UID)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def ds_str(value: float) -> str:
    """Format a number for a DS element within its 16-character limit, keeping as many significant digits as fit
    (a PET RescaleSlope of 3.7e-4 keeps its precision)."""
    for digits in range(12, 0, -1):
        text = f"{value:.{digits}g}"
        if text == "-0":
            text = "0"
        if len(text) <= 16:
            return text
    raise ValueError(f"{value} does not fit a DICOM DS value")


def dicom_date(t: dt.datetime) -> str:
    return t.strftime("%Y%m%d")


def dicom_time(t: dt.datetime) -> str:
    return t.strftime("%H%M%S.%f")


@dataclass
class PatientStudy:
    """Identifiers and study attributes shared by every object of one patient's study.

    The identifying fields are left out of ``repr`` so that a log line or traceback showing this object does not
    carry them; they are only ever written into DICOM objects that must match the patient's images.
    """

    patient_name: str = field(repr=False)
    patient_id: str = field(repr=False)
    patient_sex: str
    study_uid: str
    frame_of_reference_uid: str
    study_datetime: dt.datetime
    study_id: str = "1"
    accession_number: str = field(default="", repr=False)
    patient_birth_date: str = field(default="", repr=False)
    study_date: str = ""  # as read from a DICOM file; overrides study_datetime when set
    study_time: str = ""

    @classmethod
    def from_dataset(cls, ds: Dataset) -> PatientStudy:
        """The patient and study identifiers of an existing image, copied verbatim; used only for the RTSTRUCT that
        predict writes, which a planning system matches to the CT by them."""

        def text(keyword: str) -> str:
            v = getattr(ds, keyword, "")
            return "" if v is None else str(v)

        return cls(
            patient_name=text("PatientName"),
            patient_id=text("PatientID"),
            patient_sex=text("PatientSex"),
            study_uid=text("StudyInstanceUID"),
            frame_of_reference_uid=text("FrameOfReferenceUID"),
            study_datetime=dt.datetime(1970, 1, 1),
            study_id=text("StudyID"),
            accession_number=text("AccessionNumber"),
            patient_birth_date=text("PatientBirthDate"),
            study_date=text("StudyDate"),
            study_time=text("StudyTime"),
        )

    def fill(self, ds: Dataset) -> None:
        ds.PatientName = self.patient_name
        ds.PatientID = self.patient_id
        ds.PatientBirthDate = self.patient_birth_date
        ds.PatientSex = self.patient_sex
        ds.StudyInstanceUID = self.study_uid
        ds.StudyDate = self.study_date or dicom_date(self.study_datetime)
        ds.StudyTime = self.study_time or dicom_time(self.study_datetime)
        ds.StudyID = self.study_id
        ds.AccessionNumber = self.accession_number
        ds.ReferringPhysicianName = ""


def new_dataset(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def save_dataset(ds: Dataset, path: Path) -> None:
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def _image_plane(ds: Dataset, geom: Geometry, k: int) -> None:
    d = geom.direction_matrix
    ds.ImageOrientationPatient = [ds_str(v) for v in (*d[:, 0], *d[:, 1])]
    ds.ImagePositionPatient = [ds_str(v) for v in geom.slice_positions_mm()[k]]
    ds.PixelSpacing = [ds_str(geom.spacing_mm[1]), ds_str(geom.spacing_mm[0])]  # row spacing, column spacing
    ds.SliceThickness = ds_str(geom.spacing_mm[2])
    ds.SliceLocation = ds_str(float(geom.slice_positions_mm()[k] @ d[:, 2]))
    ds.Rows, ds.Columns = geom.shape_zyx[1], geom.shape_zyx[2]


def _pixels(ds: Dataset, stored: np.ndarray) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(stored.astype("<i2")).tobytes()


def write_ct_series(
    out_dir: Path,
    ct_hu: np.ndarray,
    geom: Geometry,
    ps: PatientStudy,
    series_uid: str,
    manufacturer: str,
    model: str,
    acq_time: dt.datetime,
    uid_seed: Sequence[object],
) -> list[str]:
    """Write ``ct_hu`` (int16 HU, ``[z, y, x]``) as a CT series; returns the SOP Instance UID of every slice.

    Instance numbers run from the most superior slice down, as most scanners write them, so readers must sort by
    position rather than by number.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    nz = ct_hu.shape[0]
    uids = [det_uid(*uid_seed, "ct", k) for k in range(nz)]
    for k in range(nz):
        ds = new_dataset(CT_IMAGE_STORAGE, uids[k])
        ps.fill(ds)
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2
        ds.SeriesDescription = "Thorax planning CT (end exhale)"
        ds.FrameOfReferenceUID = ps.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = manufacturer
        ds.ManufacturerModelName = model
        ds.InstitutionName = "igtv phantom"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = nz - k
        ds.AcquisitionNumber = 1
        ds.PatientPosition = "HFS"
        ds.KVP = "120"
        ds.ContentDate = ds.AcquisitionDate = ds.SeriesDate = dicom_date(acq_time)
        ds.ContentTime = ds.AcquisitionTime = ds.SeriesTime = dicom_time(acq_time)
        _image_plane(ds, geom, k)
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "-600"
        ds.WindowWidth = "1500"
        _pixels(ds, ct_hu[k])
        save_dataset(ds, out_dir / f"CT_{k:04d}.dcm")
    return uids


def write_pet_series(
    out_dir: Path,
    pet_bqml: np.ndarray,
    geom: Geometry,
    ps: PatientStudy,
    series_uid: str,
    manufacturer: str,
    model: str,
    recon: str,
    weight_kg: float,
    dose_bq: float,
    injection: dt.datetime,
    series_start: dt.datetime,
    half_life_s: float,
    uid_seed: Sequence[object],
) -> list[str]:
    """Write activity concentration (Bq/ml, decay corrected to series start) as a PET series, Units BQML.

    Each slice is stored as int16 with its own RescaleSlope (as scanners do), so values keep ~5 significant digits.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    nz = pet_bqml.shape[0]
    uids = [det_uid(*uid_seed, "pt", k) for k in range(nz)]
    for k in range(nz):
        plane = pet_bqml[k].astype(np.float64)
        peak = float(plane.max())
        slope = peak / 32767.0 if peak > 0 else 1.0
        stored = np.round(plane / slope).astype(np.int16)
        ds = new_dataset(PET_IMAGE_STORAGE, uids[k])
        ps.fill(ds)
        ds.PatientWeight = ds_str(weight_kg)
        ds.Modality = "PT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 3
        ds.SeriesDescription = f"PET WB AC {recon}"
        ds.FrameOfReferenceUID = ps.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = manufacturer
        ds.ManufacturerModelName = model
        ds.InstitutionName = "igtv phantom"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.InstanceNumber = nz - k
        ds.ImageIndex = nz - k
        ds.NumberOfSlices = nz
        ds.PatientPosition = "HFS"
        ds.SeriesType = ["WHOLE BODY", "IMAGE"]
        ds.Units = "BQML"
        ds.CountsSource = "EMISSION"
        ds.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
        ds.DecayCorrection = "START"
        ds.ReconstructionMethod = recon
        ds.DecayFactor = "1"
        # ms from the series start to the time the decaying activity equals the frame's average (DICOM C.8.9.4)
        ds.FrameReferenceTime = ds_str(frame_average_time_s(120.0, half_life_s) * 1000.0)
        ds.ActualFrameDuration = 120000
        ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = dicom_date(series_start)
        ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = dicom_time(series_start)
        rp = Dataset()
        rp.Radiopharmaceutical = "Fluorodeoxyglucose"
        rp.RadiopharmaceuticalStartTime = dicom_time(injection)
        rp.RadiopharmaceuticalStartDateTime = injection.strftime("%Y%m%d%H%M%S.%f")
        rp.RadionuclideTotalDose = ds_str(dose_bq)
        rp.RadionuclideHalfLife = ds_str(half_life_s)
        rp.RadionuclidePositronFraction = "0.9673"
        code = Dataset()
        code.CodeValue = "C-111A1"
        code.CodingSchemeDesignator = "SRT"
        code.CodeMeaning = "^18^Fluorine"
        rp.RadionuclideCodeSequence = DicomSequence([code])
        ds.RadiopharmaceuticalInformationSequence = DicomSequence([rp])
        _image_plane(ds, geom, k)
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = ds_str(slope) if slope != 1.0 else "1"
        _pixels(ds, stored)
        save_dataset(ds, out_dir / f"PT_{k:04d}.dcm")
    return uids
