"""Body-weight SUV from PET DICOM headers, after the QIBA FDG-PET/CT profile's vendor-neutral pseudo-code (App. G).

The core is one pure function, :func:`suv_scale`, over plain per-slice header records (:class:`PetSliceHeader`), so
every rule can be tested from a table without DICOM files; :func:`pet_header` extracts a record from a pydicom
dataset. SUV of slice k = (stored * RescaleSlope_k + RescaleIntercept_k) * factor_k, where the rescaled value is in
the series' Units.

Rules (each one recorded in the returned ``rule`` / ``notes`` so users can see what was done):

- Units BQML: factor = weight_g / decayed_dose_Bq (tissue density 1 g/ml).
  DecayCorrection START: dose decayed from injection to the scan start; ADMIN: images are already corrected to the
  injection time, the dose is not decayed; NONE: each slice is decayed to its own acquisition time.
  Scan start = SeriesDate/Time, unless it is later than the earliest AcquisitionDate/Time (a post-processed series):
  then GE's private scan datetime (0009,100D) if present, else the earliest acquisition datetime.
  Injection = RadiopharmaceuticalStartDateTime, else RadiopharmaceuticalStartTime on the scan's date (a day
  earlier when that would be after the scan: injection before midnight, scan after).
- Units CNTS (Philips): factor = SUV scale factor (7053,1000); else activity concentration factor (7053,1009)
  turns counts into Bq/ml and the BQML rule follows.
- Units GML (SUVbw) and CM2ML (SUVbsa): already SUV, passed through with factor 1; the kind says which.
- RadionuclideTotalDose below 1e4 is read as MBq (implausible in Bq: 10 kBq would give no image) and converted.
- The half-life comes from the header (any nuclide). A missing required tag is an error naming the file and tag;
  no default weight or dose is ever invented.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MBQ_THRESHOLD = 1e4  # a RadionuclideTotalDose below this (in "Bq") is taken to be MBq
DOSE_RANGE_BQ = (1e6, 1e11)  # plausible injected activity after unit detection


class SuvError(ValueError):
    """The PET headers do not allow a body-weight SUV; the message names the file and the tag."""


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
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    philips_suv_factor: float | None = None  # (7053,1000)
    philips_activity_factor: float | None = None  # (7053,1009)


@dataclass(frozen=True)
class SuvScale:
    """Per-slice factors from rescaled pixel values to SUV, and how they were obtained."""

    factors: np.ndarray  # (n_slices,) float64
    kind: str  # "bw" (body weight) or "bsa" (body surface area, CM2ML pass-through)
    rule: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def factor(self) -> float:
        """The factor when it is the same for every slice (else the first slice's)."""
        return float(self.factors[0])


def _require(value, h: PetSliceHeader, tag: str):
    if value is None:
        raise SuvError(f"{h.path}: missing required tag {tag} for SUV")
    return value


def _scan_start(headers: Sequence[PetSliceHeader], notes: list[str]) -> dt.datetime:
    h0 = headers[0]
    acq = [h.acquisition_datetime for h in headers if h.acquisition_datetime is not None]
    earliest = min(acq) if acq else None
    series = h0.series_datetime
    if series is None and earliest is None:
        raise SuvError(f"{h0.path}: missing required tag SeriesDate/SeriesTime (and no AcquisitionDate/Time) for SUV")
    if series is None:
        notes.append("no SeriesDate/Time: scan start = earliest AcquisitionDate/Time")
        return earliest
    if earliest is not None and series > earliest:
        if h0.ge_scan_datetime is not None:
            notes.append("SeriesTime after AcquisitionTime: scan start = GE private scan datetime (0009,100D)")
            return h0.ge_scan_datetime
        notes.append("SeriesTime after AcquisitionTime: scan start = earliest AcquisitionDate/Time of the series")
        return earliest
    return series


def _injection(h: PetSliceHeader, scan: dt.datetime, notes: list[str]) -> dt.datetime:
    if h.injection_datetime is not None:
        return h.injection_datetime
    t = _require(h.injection_time, h, "RadiopharmaceuticalStartTime (or RadiopharmaceuticalStartDateTime)")
    inj = dt.datetime.combine(scan.date(), t)
    if inj > scan:
        inj -= dt.timedelta(days=1)
        notes.append("injection time later than scan time on the same date: injection taken on the previous day")
    return inj


def _dose_bq(h: PetSliceHeader, notes: list[str]) -> float:
    dose = float(_require(h.dose_bq, h, "RadionuclideTotalDose"))
    if 0 < dose < MBQ_THRESHOLD:
        notes.append(f"RadionuclideTotalDose {dose:g} is implausible in Bq: read as MBq ({dose * 1e6:.4g} Bq)")
        dose *= 1e6
    if not DOSE_RANGE_BQ[0] <= dose <= DOSE_RANGE_BQ[1]:
        raise SuvError(f"{h.path}: RadionuclideTotalDose {h.dose_bq!r} is not a plausible injected activity")
    return dose


def _bqml_factors(headers: Sequence[PetSliceHeader], notes: list[str]) -> tuple[np.ndarray, str]:
    h0 = headers[0]
    decay = (h0.decay_correction or "").upper()
    if not decay:
        raise SuvError(f"{h0.path}: missing required tag DecayCorrection for SUV")
    if decay not in ("START", "ADMIN", "NONE"):
        raise SuvError(f"{h0.path}: DecayCorrection {h0.decay_correction!r} is not START, ADMIN or NONE")
    if h0.corrected_image is None:
        notes.append("CorrectedImage absent: attenuation and decay correction assumed")
    else:
        if "ATTN" not in h0.corrected_image:
            raise SuvError(f"{h0.path}: CorrectedImage {list(h0.corrected_image)} lacks ATTN: no SUV without AC")
        if decay != "NONE" and "DECY" not in h0.corrected_image:
            raise SuvError(f"{h0.path}: DecayCorrection {decay} but CorrectedImage lacks DECY")
    weight = float(_require(h0.weight_kg, h0, "PatientWeight"))
    if not 1.0 <= weight <= 400.0:
        raise SuvError(f"{h0.path}: PatientWeight {weight:g} kg is not plausible")
    half_life = float(_require(h0.half_life_s, h0, "RadionuclideHalfLife"))
    if half_life <= 0:
        raise SuvError(f"{h0.path}: RadionuclideHalfLife {half_life:g} is not positive")
    dose = _dose_bq(h0, notes)
    scan = _scan_start(headers, notes)
    inj = _injection(h0, scan, notes)
    if decay == "ADMIN":
        return np.full(len(headers), weight * 1000.0 / dose), "BQML, decay corrected to injection (ADMIN)"
    if decay == "START":
        elapsed = (scan - inj).total_seconds()
        if elapsed < 0:
            raise SuvError(f"{h0.path}: injection ({inj}) is after the scan start ({scan})")
        decayed = dose * 2.0 ** (-elapsed / half_life)
        return np.full(len(headers), weight * 1000.0 / decayed), (
            f"BQML, decay corrected to scan start (START), {elapsed / 60:.1f} min after injection"
        )
    factors = np.empty(len(headers))
    for k, h in enumerate(headers):
        t = _require(h.acquisition_datetime, h, "AcquisitionDate/AcquisitionTime (DecayCorrection NONE)")
        elapsed = (t - inj).total_seconds()
        if elapsed < 0:
            raise SuvError(f"{h.path}: injection ({inj}) is after this slice's acquisition ({t})")
        factors[k] = weight * 1000.0 / (dose * 2.0 ** (-elapsed / half_life))
    return factors, "BQML, not decay corrected (NONE): dose decayed to each slice's acquisition time"


def suv_scale(headers: Sequence[PetSliceHeader]) -> SuvScale:
    """Per-slice factors turning rescaled PET values (in the series' Units) into SUV (QIBA App. G rules)."""
    if not headers:
        raise SuvError("no PET slices given")
    h0 = headers[0]
    units = (h0.units or "").upper()
    if not units:
        raise SuvError(f"{h0.path}: missing required tag Units for SUV")
    for h in headers:
        if (h.units or "").upper() != units:
            raise SuvError(f"{h.path}: Units {h.units!r} differs from {h0.units!r} in the same series")
    notes: list[str] = []
    if units == "GML":
        return SuvScale(np.ones(len(headers)), "bw", "Units GML: already SUVbw, passed through", tuple(notes))
    if units == "CM2ML":
        return SuvScale(np.ones(len(headers)), "bsa", "Units CM2ML: already SUVbsa, passed through", tuple(notes))
    if units == "BQML":
        factors, rule = _bqml_factors(headers, notes)
        return SuvScale(factors, "bw", rule, tuple(notes))
    if units == "CNTS":
        if h0.philips_suv_factor is not None:
            f = float(h0.philips_suv_factor)
            if f <= 0:
                raise SuvError(f"{h0.path}: Philips SUV scale factor (7053,1000) {f:g} is not positive")
            return SuvScale(np.full(len(headers), f), "bw", "Units CNTS: Philips SUV scale factor (7053,1000)")
        if h0.philips_activity_factor is not None:
            act = np.asarray([float(_require(h.philips_activity_factor, h, "(7053,1009)")) for h in headers])
            factors, rule = _bqml_factors(headers, notes)
            return SuvScale(
                act * factors,
                "bw",
                f"Units CNTS: Philips activity factor (7053,1009) to Bq/ml, then {rule}",
                tuple(notes),
            )
        raise SuvError(
            f"{h0.path}: Units CNTS without Philips private SUV factor (7053,1000) or activity factor (7053,1009)"
        )
    raise SuvError(f"{h0.path}: Units {h0.units!r} is not BQML, CNTS, GML or CM2ML: cannot compute SUV")


def suv_from_stored(stored: np.ndarray, headers: Sequence[PetSliceHeader]) -> tuple[np.ndarray, SuvScale]:
    """Stored PET pixel values ``[z, y, x]`` -> SUV float32, with each slice's own RescaleSlope/Intercept."""
    if stored.shape[0] != len(headers):
        raise SuvError(f"{len(headers)} headers for {stored.shape[0]} slices")
    scale = suv_scale(headers)
    slope = np.asarray([h.rescale_slope for h in headers], dtype=np.float64)[:, None, None]
    intercept = np.asarray([h.rescale_intercept for h in headers], dtype=np.float64)[:, None, None]
    suv = (stored.astype(np.float64) * slope + intercept) * scale.factors[:, None, None]
    return suv.astype(np.float32), scale


# --- pydicom adapter ----------------------------------------------------------------------------------------------
def _dicom_datetime(date: str | None, time: str | None) -> dt.datetime | None:
    if not date or not time:
        return None
    return dt.datetime.combine(_dicom_date(date), _dicom_time(time))


def _dicom_date(text: str) -> dt.date:
    return dt.datetime.strptime(str(text).strip()[:8], "%Y%m%d").date()


def _dicom_time(text: str) -> dt.time:
    text = str(text).strip()
    main, _, frac = text.partition(".")
    main = (main + "0000")[:6] if len(main) in (2, 4) else main[:6]
    t = dt.datetime.strptime(main, "%H%M%S").time()
    if frac:
        t = t.replace(microsecond=int((frac + "000000")[:6]))
    return t


def _dicom_dt(text: str | None) -> dt.datetime | None:
    """DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX) -> naive datetime (an offset, if present, is ignored)."""
    if not text:
        return None
    text = str(text).strip()
    for sign in ("+", "-"):
        if sign in text[8:]:
            text = text[: 8 + text[8:].index(sign)]
    if len(text) < 8:
        return None
    date = _dicom_date(text[:8])
    return dt.datetime.combine(date, _dicom_time(text[8:])) if len(text) > 8 else dt.datetime.combine(date, dt.time())


def _float(ds, keyword: str) -> float | None:
    v = getattr(ds, keyword, None)
    if v is None or v == "":
        return None
    return float(v)


def _private_float(ds, group: int, element: int, creator: str) -> float | None:
    try:
        v = ds.get_private_item(group, element, creator).value
    except (KeyError, ValueError):
        return None
    if isinstance(v, bytes):
        v = v.decode(errors="ignore").strip("\x00 ")
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


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
        return PetSliceHeader(
            path=path,
            units=getattr(ds, "Units", None) or None,
            decay_correction=getattr(ds, "DecayCorrection", None) or None,
            corrected_image=ci,
            series_datetime=_dicom_datetime(getattr(ds, "SeriesDate", None), getattr(ds, "SeriesTime", None)),
            acquisition_datetime=_dicom_datetime(
                getattr(ds, "AcquisitionDate", None), getattr(ds, "AcquisitionTime", None)
            ),
            ge_scan_datetime=ge_dt,
            injection_datetime=_dicom_dt(getattr(rp, "RadiopharmaceuticalStartDateTime", None)),
            injection_time=_dicom_time(start_time) if start_time else None,
            dose_bq=_float(rp, "RadionuclideTotalDose"),
            half_life_s=_float(rp, "RadionuclideHalfLife"),
            weight_kg=_float(ds, "PatientWeight"),
            rescale_slope=_float(ds, "RescaleSlope") or 1.0,
            rescale_intercept=_float(ds, "RescaleIntercept") or 0.0,
            philips_suv_factor=_private_float(ds, 0x7053, 0x00, "Philips PET Private Group"),
            philips_activity_factor=_private_float(ds, 0x7053, 0x09, "Philips PET Private Group"),
        )
    except ValueError as exc:
        raise SuvError(f"{path}: unreadable date/time or number in the PET header ({exc})") from exc
