"""The PET header values SUV needs, per slice, read from a pydicom dataset (dates and times parsed by
``pydicom.valuerep``; Philips' private factors with or without their creator element)."""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass

from pydicom.valuerep import DA, DT, TM

PHILIPS_CREATOR = "Philips PET Private Group"


class SuvError(ValueError):
    """The PET headers do not allow an SUV; the message names the file and the tag."""


@dataclass(frozen=True)
class PetSliceHeader:
    """The header values SUV needs, of one PET slice (None = tag absent)."""

    path: str
    units: str | None = "BQML"
    decay_correction: str | None = "START"
    corrected_image: tuple[str, ...] | None = ("ATTN", "DECY")
    series_datetime: dt.datetime | None = None
    acquisition_datetime: dt.datetime | None = None
    ge_scan_datetime: dt.datetime | None = None
    injection_datetime: dt.datetime | None = None  # RadiopharmaceuticalStartDateTime
    injection_time: dt.time | None = None  # RadiopharmaceuticalStartTime
    dose_bq: float | None = None  # RadionuclideTotalDose
    half_life_s: float | None = None  # RadionuclideHalfLife
    weight_kg: float | None = None  # PatientWeight
    height_m: float | None = None  # PatientSize (DICOM: metres)
    sex: str | None = None  # PatientSex: M, F, O
    suv_type: str | None = None  # SUVType (0054,1006), for Units GML
    frame_reference_time_ms: float | None = None  # FrameReferenceTime (0054,1300)
    frame_duration_ms: float | None = None  # ActualFrameDuration (0018,1242)
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    philips_suv_factor: float | None = None  # (7053,1000)
    philips_activity_factor: float | None = None  # (7053,1009)


def _dicom_date(text: str) -> dt.date:
    d = DA(str(text).strip()[:8])
    return dt.date(d.year, d.month, d.day)


def _dicom_time(text: str) -> dt.time:
    t = TM(str(text).strip())
    return dt.time(t.hour, t.minute, t.second, t.microsecond)


def _dicom_datetime(date: str | None, time: str | None) -> dt.datetime | None:
    if not date or not time:
        return None
    return dt.datetime.combine(_dicom_date(date), _dicom_time(time))


def _dicom_dt(text: str | None) -> dt.datetime | None:
    """DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX) -> naive datetime (an offset, if present, is ignored)."""
    if not text or len(str(text).strip()) < 8:
        return None
    v = DT(str(text).strip())
    return dt.datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)


def _float(ds, keyword: str) -> float | None:
    v = getattr(ds, keyword, None)
    if v is None or v == "":
        return None
    return float(v)


def _number(value) -> float | None:
    """A private element's value as float: DS/FD/FL as read, or raw bytes (VR UN once the creator is stripped)."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and type(value).__name__ == "MultiValue"):
        value = value[0] if len(value) else None
    if value is None:
        return None
    if isinstance(value, bytes):
        text = value.decode("ascii", errors="ignore").strip("\x00 ")
        try:
            return float(text.split("\\")[0])
        except ValueError:
            if len(value) == 8:
                return struct.unpack("<d", value)[0]
            if len(value) == 4:
                return struct.unpack("<f", value)[0]
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _philips_float(ds, element: int) -> float | None:
    """(7053,10xx) under the Philips creator, or at (7053,10xx) itself when the creator element was stripped."""
    try:
        return _number(ds.get_private_item(0x7053, element, PHILIPS_CREATOR).value)
    except (KeyError, ValueError):
        pass
    creator = ds.get((0x7053, 0x0010))
    if creator is not None and str(creator.value).strip() not in ("", PHILIPS_CREATOR):
        return None  # block 10 belongs to another creator
    elem = ds.get((0x7053, 0x1000 + element))
    return None if elem is None else _number(elem.value)


def pet_header(ds, path: str) -> PetSliceHeader:
    """Extract the SUV-relevant values of one PET slice from a pydicom dataset (read with or without pixels)."""
    try:
        rp = ds.RadiopharmaceuticalInformationSequence[0]
    except (AttributeError, IndexError):
        raise SuvError(f"{path}: missing required tag RadiopharmaceuticalInformationSequence for SUV") from None
    try:
        ge = ds.get_private_item(0x0009, 0x0D, "GEMS_PETD_01").value
        ge_dt = _dicom_dt(ge.decode(errors="ignore") if isinstance(ge, bytes) else ge)
    except (KeyError, ValueError):
        ge_dt = None
    start_time = getattr(rp, "RadiopharmaceuticalStartTime", None)
    ci = getattr(ds, "CorrectedImage", None)
    if ci is not None:
        ci = (ci,) if isinstance(ci, str) else tuple(str(v) for v in ci)
    try:
        acquisition = _dicom_datetime(getattr(ds, "AcquisitionDate", None), getattr(ds, "AcquisitionTime", None))
        if acquisition is None:
            acquisition = _dicom_dt(getattr(ds, "AcquisitionDateTime", None))
        return PetSliceHeader(
            path=path,
            units=getattr(ds, "Units", None) or None,
            decay_correction=getattr(ds, "DecayCorrection", None) or None,
            corrected_image=ci,
            series_datetime=_dicom_datetime(getattr(ds, "SeriesDate", None), getattr(ds, "SeriesTime", None)),
            acquisition_datetime=acquisition,
            ge_scan_datetime=ge_dt,
            injection_datetime=_dicom_dt(getattr(rp, "RadiopharmaceuticalStartDateTime", None)),
            injection_time=_dicom_time(start_time) if start_time else None,
            dose_bq=_float(rp, "RadionuclideTotalDose"),
            half_life_s=_float(rp, "RadionuclideHalfLife"),
            weight_kg=_float(ds, "PatientWeight"),
            height_m=_float(ds, "PatientSize"),
            sex=str(getattr(ds, "PatientSex", "") or "").strip() or None,
            suv_type=str(getattr(ds, "SUVType", "") or "").strip() or None,
            frame_reference_time_ms=_float(ds, "FrameReferenceTime"),
            frame_duration_ms=_float(ds, "ActualFrameDuration"),
            rescale_slope=_float(ds, "RescaleSlope") or 1.0,
            rescale_intercept=_float(ds, "RescaleIntercept") or 0.0,
            philips_suv_factor=_philips_float(ds, 0x00),
            philips_activity_factor=_philips_float(ds, 0x09),
        )
    except ValueError as exc:
        raise SuvError(f"{path}: unreadable date/time or number in the PET header ({exc})") from exc
