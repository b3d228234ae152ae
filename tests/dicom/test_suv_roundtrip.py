"""Round trip: one known SUVbw volume written as a PET series in every unit and timing convention, read back.

Each convention is synthesised forward from the physics (activity at injection = SUVbw * dose / weight, decayed to
what the header says the pixels mean) and stored as int16 with a per-slice RescaleSlope, as scanners do. ``igtv
suv`` must give back the volume within 0.1 % wherever the int16 step allows it (SUV >= 0.5).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from igtv.cli import main
from igtv.dicom.index import scan_dicom
from igtv.dicom.series import read_pet_suv
from igtv.dicom.suv import normaliser
from igtv.dicom.write import (
    PET_IMAGE_STORAGE,
    _image_plane,
    _pixels,
    det_uid,
    dicom_date,
    dicom_time,
    ds_str,
    new_dataset,
    save_dataset,
)
from igtv.geometry import Geometry, load_nifti

F18_S = 6586.2
LAM = math.log(2.0) / F18_S
INJECTION = dt.datetime(2024, 3, 5, 9, 0, 0)
GEOM = Geometry((5, 12, 10), (4.0, 4.0, 3.0), (-20.0, -24.0, 100.0))


@dataclasses.dataclass(frozen=True)
class Convention:
    units: str = "BQML"
    decay: str = "START"
    suv_type: str = ""  # SUVType for GML
    series_after_acquisition: bool = False
    ge_time: bool = False
    frame_reference: bool = True
    philips: str = ""  # "suv" or "activity"
    philips_creator: bool = True
    sex: str = "M"
    dose_in_mbq: bool = False
    injection_time_only: bool = False


CONVENTIONS = {
    "bqml_start": Convention(),
    "bqml_start_dose_mbq_time_only": Convention(dose_in_mbq=True, injection_time_only=True),
    "bqml_start_series_late_ge": Convention(series_after_acquisition=True, ge_time=True),
    "bqml_start_series_late_frame_reference": Convention(series_after_acquisition=True),
    "bqml_admin": Convention(decay="ADMIN"),
    "bqml_none": Convention(decay="NONE"),
    "cnts_suv_factor": Convention(units="CNTS", philips="suv"),
    "cnts_suv_factor_no_creator": Convention(units="CNTS", philips="suv", philips_creator=False),
    "cnts_activity_factor_no_creator": Convention(units="CNTS", philips="activity", philips_creator=False),
    "gml_bw": Convention(units="GML", suv_type="BW"),
    "gml_no_suv_type": Convention(units="GML"),
    "gml_lbm_male": Convention(units="GML", suv_type="LBM"),
    "gml_lbmjames128_male": Convention(units="GML", suv_type="LBMJAMES128"),
    "gml_lbmjanma_female": Convention(units="GML", suv_type="LBMJANMA", sex="F"),
    "gml_ibw_other": Convention(units="GML", suv_type="IBW", sex="O"),
    "cm2ml_bsa": Convention(units="CM2ML", suv_type="BSA"),
}
WEIGHT_KG, HEIGHT_M, DOSE_BQ = 82.0, 1.68, 305e6
SERIES_START = dt.datetime(2024, 3, 5, 10, 4, 0)  # 64 min after injection
FRAME_MS = 150000.0  # one bed position per slice, 150 s frames; each slice starts 150 s after the previous
FIRST_FRAME_S = 150.0  # the first frame starts 150 s after the series reference time


def suv_bw_volume() -> np.ndarray:
    rng = np.random.default_rng(7)
    suv = rng.uniform(0.5, 3.0, GEOM.shape_zyx)
    suv[1:4, 4:8, 3:7] += rng.uniform(4.0, 12.0, (3, 4, 4))  # a hot lesion
    return suv


def _size(suv_type: str, sex: str) -> float:
    return normaliser(suv_type, WEIGHT_KG, HEIGHT_M * 100.0, sex, [])


def _write(folder: Path, suv_bw: np.ndarray, c: Convention) -> None:
    """Forward model: SUVbw -> the pixel values the convention's header describes."""
    a_inj = suv_bw * DOSE_BQ / (WEIGHT_KG * 1000.0)  # Bq/ml decay corrected to injection
    nz = suv_bw.shape[0]
    acq = [SERIES_START + dt.timedelta(seconds=FIRST_FRAME_S + FRAME_MS / 1000.0 * k) for k in range(nz)]
    for k in range(nz):
        t_since = (acq[k] - INJECTION).total_seconds()
        if c.decay == "ADMIN":
            value = a_inj[k]
        elif c.decay == "NONE":  # mean activity over the frame, not decay corrected
            frame_s = FRAME_MS / 1000.0
            value = a_inj[k] * math.exp(-LAM * t_since) * (-math.expm1(-LAM * frame_s)) / (LAM * frame_s)
        else:  # START: corrected to the series start
            value = a_inj[k] * math.exp(-LAM * (SERIES_START - INJECTION).total_seconds())
        if c.units == "GML" or c.units == "CM2ML":
            stored_type = {"": "bw", "BW": "bw", "BSA": "bsa"}.get(c.suv_type, c.suv_type.lower())
            value = suv_bw[k] * _size(stored_type, c.sex) / (WEIGHT_KG * 1000.0)
        suv_factor = 1.0 / 2937.5  # Philips: counts * factor = SUVbw
        activity_factor = 1.37  # Philips: counts * factor = Bq/ml
        if c.philips == "suv":
            value = suv_bw[k] / suv_factor
        elif c.philips == "activity":
            value = value / activity_factor
        slope = float(value.max()) / 32000.0
        stored = np.round(value / slope).astype(np.int16)
        ds = new_dataset(PET_IMAGE_STORAGE, det_uid("suv-rt", c, k))
        ds.Modality = "PT"
        ds.PatientName, ds.PatientID = "Round^Trip", "RT001"
        ds.PatientSex = c.sex
        ds.PatientWeight = ds_str(WEIGHT_KG)
        ds.PatientSize = ds_str(HEIGHT_M)
        ds.StudyInstanceUID = det_uid("suv-rt-study")
        ds.SeriesInstanceUID = det_uid("suv-rt-series", c)
        ds.FrameOfReferenceUID = det_uid("suv-rt-for")
        ds.Units = c.units
        if c.suv_type:
            ds.SUVType = c.suv_type
        ds.DecayCorrection = c.decay
        ds.CorrectedImage = ["ATTN", "DECY"] if c.decay != "NONE" else ["ATTN"]
        series = SERIES_START + dt.timedelta(hours=1) if c.series_after_acquisition else SERIES_START
        ds.SeriesDate, ds.SeriesTime = dicom_date(series), dicom_time(series)
        ds.AcquisitionDate, ds.AcquisitionTime = dicom_date(acq[k]), dicom_time(acq[k])
        ds.ActualFrameDuration = int(FRAME_MS)
        if c.frame_reference:  # ms from the reference time (series start) to the frame's decay-average time
            t_ave = math.log(LAM * FRAME_MS / 1000.0 / -math.expm1(-LAM * FRAME_MS / 1000.0)) / LAM
            ds.FrameReferenceTime = ds_str(((acq[k] - SERIES_START).total_seconds() + t_ave) * 1000.0)
        if c.ge_time:
            ds.private_block(0x0009, "GEMS_PETD_01", create=True).add_new(
                0x0D, "DT", SERIES_START.strftime("%Y%m%d%H%M%S.%f")
            )
        if c.philips:
            elem, factor = (0x00, suv_factor) if c.philips == "suv" else (0x09, activity_factor)
            if c.philips_creator:
                ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(elem, "DS", ds_str(factor))
            else:
                ds.add_new((0x7053, 0x1000 + elem), "UN", ds_str(factor).encode())
        rp = Dataset()
        rp.RadiopharmaceuticalStartTime = dicom_time(INJECTION)
        if not c.injection_time_only:
            rp.RadiopharmaceuticalStartDateTime = INJECTION.strftime("%Y%m%d%H%M%S.%f")
        rp.RadionuclideTotalDose = ds_str(DOSE_BQ / 1e6 if c.dose_in_mbq else DOSE_BQ)
        rp.RadionuclideHalfLife = ds_str(F18_S)
        ds.RadiopharmaceuticalInformationSequence = DicomSequence([rp])
        _image_plane(ds, GEOM, k)
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = ds_str(slope)
        _pixels(ds, stored)
        save_dataset(ds, folder / f"PT_{k:04d}.dcm")


def _read(folder: Path, suv_type: str = "bw") -> np.ndarray:
    series = [s for ss in scan_dicom(folder).values() for s in ss]
    suv, _, _ = read_pet_suv(series[0], suv_type)
    return suv


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_round_trip_suvbw(tmp_path, name):
    truth = suv_bw_volume()
    _write(tmp_path, truth, CONVENTIONS[name])
    suv = _read(tmp_path)
    np.testing.assert_allclose(suv, truth, rtol=1e-3)


@pytest.mark.parametrize("suv_type", ["lbm", "lbmjanma", "bsa", "ibw"])
def test_round_trip_other_normalisations(tmp_path, suv_type):
    truth_bw = suv_bw_volume()
    _write(tmp_path, truth_bw, CONVENTIONS["bqml_start_series_late_frame_reference"])
    expected = truth_bw * _size(suv_type, "M") / (WEIGHT_KG * 1000.0)
    np.testing.assert_allclose(_read(tmp_path, suv_type), expected, rtol=1e-3)


def test_cli_writes_requested_normalisation(tmp_path, capsys):
    truth_bw = suv_bw_volume()
    pet = tmp_path / "pet"
    pet.mkdir()
    _write(pet, truth_bw, CONVENTIONS["gml_lbmjanma_female"])
    out = tmp_path / "suv_lbm.nii.gz"
    assert main(["suv", str(pet), "--out", str(out), "--type", "lbm"]) == 0
    printed = capsys.readouterr().out
    assert "SUVlbm (g/ml) factor" in printed and "stored SUVlbmjanma" in printed
    suv, geom = load_nifti(out)
    assert geom.shape_zyx == GEOM.shape_zyx
    expected = truth_bw * _size("lbm", "F") / (WEIGHT_KG * 1000.0)
    np.testing.assert_allclose(suv, expected, rtol=1e-3)


def test_cli_bad_series_writes_nothing(tmp_path, capsys):
    pet = tmp_path / "pet"
    pet.mkdir()
    _write(pet, suv_bw_volume(), Convention(units="GML", suv_type="LBM"))
    out = tmp_path / "suv.nii.gz"
    for f in pet.iterdir():  # strip PatientSize: SUVlbm -> SUVbw needs the height
        import pydicom

        ds = pydicom.dcmread(f)
        del ds.PatientSize
        ds.save_as(f)
    assert main(["suv", str(pet), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "PT_0000.dcm" in err and "PatientSize" in err
    assert not out.exists()
