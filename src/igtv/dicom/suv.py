"""SUV of any normalisation from PET DICOM headers, after the QIBA FDG-PET/CT profile's vendor-neutral pseudo-code.

The core is one pure function, :func:`suv_scale`, over plain per-slice header records (:class:`PetSliceHeader`), so
every rule can be tested from a table without DICOM files; :func:`igtv.dicom.pet_header.pet_header` extracts a
record from a pydicom dataset. SUV of slice k = (stored * RescaleSlope_k + RescaleIntercept_k) * factor_k, where the
rescaled value is in the series' Units. Every rule applied is recorded in the returned ``rule`` / ``notes``.

Rules, in the order they are applied:

1. Units must be the same on every slice.
2. Units -> SUVbw factor:

   - BQML: weight_g / dose_Bq, the dose decayed by DecayCorrection (3.).
   - CNTS (Philips): SUV scale factor (7053,1000), else activity concentration factor (7053,1009) times the BQML
     factor, read with or without the "Philips PET Private Group" creator element (anonymisers strip it). A factor
     of 0 means "cannot convert" and is an error; neither factor is an error (counts need calibration data).
   - GML: the stored value is SUV of SUVType (0054,1006) (empty: BW): converted back to SUVbw by
     weight / normaliser (4.).
   - CM2ML: the stored value is SUVbsa in cm2/ml: SUVbw = SUVbsa * weight_g / BSA_cm2.

3. Decay (BQML and CNTS activity factor):

   - START: dose decayed from injection to the reference time, which is SeriesDate/Time when it is not after the
     earliest acquisition; else GE's private scan datetime (0009,100D); else back-computed from a slice's
     AcquisitionTime, FrameReferenceTime dt and ActualFrameDuration T: t_ref = t_acq + T_ave - dt, with
     T_ave = ln(lam T / (1 - exp(-lam T))) / lam and lam = ln 2 / half-life; else the earliest AcquisitionTime.
   - ADMIN: the images are already corrected to injection: the dose is not decayed.
   - NONE: each slice is decayed to injection from its own acquisition time, with the frame-average factor:
     factor_k = weight_g / dose * lam T / (1 - exp(-lam T)) * exp(lam (t_acq,k - t_inj)).
   - Injection = RadiopharmaceuticalStartDateTime, else RadiopharmaceuticalStartTime on the scan's date (a day
     earlier when that would be after the scan: injection before midnight, scan after). More than 12 h from
     injection to the scan is an error: the start time is wrong (e.g. after SeriesTime), not an overnight uptake.
   - RadionuclideTotalDose below 1e4 is read as MBq (10 kBq would give no image). The half-life comes from the
     header (any nuclide).

4. SUVbw -> the requested normalisation (``suv_type``): multiply by normaliser / weight, with W in kg, H in cm:

   - ``lbm`` (Morgan / James): 1.10 W - 120 (W/H)^2 male, 1.07 W - 148 (W/H)^2 female;
   - ``lbmjames128``: the same with 128 for males;
   - ``lbmjanma`` (Janmahasatian): BMI = W / (H/100)^2, 9270 W / (6680 + 216 BMI) male, 9270 W / (8780 + 244 BMI)
     female;
   - ``ibw`` (ideal body weight): 48.0 + 1.06 (H - 152) male, 45.5 + 0.91 (H - 152) female;
   - ``bsa`` (Du Bois): 0.007184 H^0.725 W^0.425 m^2, in cm^2 (the SUV unit is then cm2/ml).

   PatientSex O or absent: the mean of the male and female normalisers, with a note. PatientSize is in metres; a
   value above 3 is read as centimetres, with a note. When the stored and the requested normalisation are the same
   nothing is converted and no body size is needed.

A missing required tag is an error naming the file and the tag: no default weight, height, dose or time is ever
invented.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from igtv.dicom.pet_header import PetSliceHeader, SuvError

MBQ_THRESHOLD = 1e4  # a RadionuclideTotalDose below this (in "Bq") is taken to be MBq

DOSE_RANGE_BQ = (1e6, 1e11)  # plausible injected activity after unit detection

HEIGHT_CM_RANGE = (50.0, 250.0)  # plausible PatientSize after unit detection
MAX_UPTAKE_H = 12.0  # injection to scan: FDG scans start 0.5-3 h after injection; 12 h of F-18 leaves 1 % activity

SUV_TYPES = ("bw", "lbm", "lbmjames128", "lbmjanma", "bsa", "ibw")

# DICOM SUVType (0054,1006) defined terms -> our names
DICOM_SUV_TYPES = {
    "BW": "bw",
    "LBM": "lbm",
    "LBMJAMES128": "lbmjames128",
    "LBMJANMA": "lbmjanma",
    "BSA": "bsa",
    "IBW": "ibw",
}


@dataclass(frozen=True)
class SuvScale:
    """Per-slice factors from rescaled pixel values to SUV, and how they were obtained."""

    factors: np.ndarray  # (n_slices,) float64
    kind: str  # the normalisation: one of SUV_TYPES
    rule: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def factor(self) -> float:
        """The factor when it is the same for every slice (else the first slice's)."""
        return float(self.factors[0])

    @property
    def unit(self) -> str:
        """The SUV's unit: g/ml for mass normalisations, cm2/ml for BSA."""
        return "cm2/ml" if self.kind == "bsa" else "g/ml"


def lbm_james_kg(weight_kg: float, height_cm: float, male: bool, male_coefficient: float = 120.0) -> float:
    """Lean body mass after James (Morgan's SUL): 1.10 W - 120 (W/H)^2 (male), 1.07 W - 148 (W/H)^2 (female)."""
    if male:
        return 1.10 * weight_kg - male_coefficient * (weight_kg / height_cm) ** 2
    return 1.07 * weight_kg - 148.0 * (weight_kg / height_cm) ** 2


def lbm_janma_kg(weight_kg: float, height_cm: float, male: bool) -> float:
    """Lean body mass after Janmahasatian: 9270 W / (6680 + 216 BMI) (male), 9270 W / (8780 + 244 BMI) (female)."""
    bmi = weight_kg / (height_cm / 100.0) ** 2
    return 9270.0 * weight_kg / ((6680.0 + 216.0 * bmi) if male else (8780.0 + 244.0 * bmi))


def ibw_kg(height_cm: float, male: bool) -> float:
    """Ideal body weight: 48.0 + 1.06 (H - 152) (male), 45.5 + 0.91 (H - 152) (female), H in cm."""
    return 48.0 + 1.06 * (height_cm - 152.0) if male else 45.5 + 0.91 * (height_cm - 152.0)


def bsa_dubois_m2(weight_kg: float, height_cm: float) -> float:
    """Body surface area after Du Bois: 0.007184 H^0.725 W^0.425 (m^2, H in cm, W in kg)."""
    return 0.007184 * height_cm**0.725 * weight_kg**0.425


def _by_sex(fn, sex: str | None, notes: list[str], what: str) -> float:
    s = (sex or "").strip().upper()
    if s == "M":
        return fn(True)
    if s == "F":
        return fn(False)
    notes.append(f"PatientSex {sex or 'absent'}: {what} is the mean of the male and female formulas")
    return 0.5 * (fn(True) + fn(False))


def normaliser(suv_type: str, weight_kg: float, height_cm: float | None, sex: str | None, notes: list[str]) -> float:
    """The SUV denominator's body size: grams for mass normalisations, cm^2 for ``bsa``.

    SUV_type = C [Bq/ml] * normaliser / dose [Bq]; ``height_cm`` may be None only for ``bw``.
    """
    if suv_type == "bw":
        return weight_kg * 1000.0
    if height_cm is None:
        raise ValueError("height needed")
    if suv_type in ("lbm", "lbmjames128"):
        c = 128.0 if suv_type == "lbmjames128" else 120.0
        kg = _by_sex(lambda m: lbm_james_kg(weight_kg, height_cm, m, c), sex, notes, "lean body mass")
    elif suv_type == "lbmjanma":
        kg = _by_sex(lambda m: lbm_janma_kg(weight_kg, height_cm, m), sex, notes, "lean body mass")
    elif suv_type == "ibw":
        kg = _by_sex(lambda m: ibw_kg(height_cm, m), sex, notes, "ideal body weight")
    elif suv_type == "bsa":
        return bsa_dubois_m2(weight_kg, height_cm) * 1e4
    else:
        raise ValueError(f"unknown SUV type {suv_type!r}; choose from {', '.join(SUV_TYPES)}")
    if kg <= 0:
        raise ValueError(f"{suv_type} body mass {kg:.3g} kg is not positive for W {weight_kg:g} kg, H {height_cm:g} cm")
    return kg * 1000.0


def frame_average_time_s(duration_s: float, half_life_s: float) -> float:
    """T_ave = ln(lam T / (1 - exp(-lam T))) / lam: when the decaying activity equals its frame average."""
    lam = math.log(2.0) / half_life_s
    if duration_s <= 0:
        return 0.0
    return math.log(lam * duration_s / -math.expm1(-lam * duration_s)) / lam


def frame_average_factor(duration_s: float, half_life_s: float) -> float:
    """lam T / (1 - exp(-lam T)): frame-average activity -> activity at the frame start."""
    lam = math.log(2.0) / half_life_s
    if duration_s <= 0:
        return 1.0
    return lam * duration_s / -math.expm1(-lam * duration_s)


def _require(value, h: PetSliceHeader, tag: str):
    if value is None:
        raise SuvError(f"{h.path}: missing required tag {tag} for SUV")
    return value


def _back_computed_start(headers: Sequence[PetSliceHeader], half_life_s: float | None) -> dt.datetime | None:
    """t_ref = t_acq + T_ave - FrameReferenceTime of the earliest slice that has all three (None if none has)."""
    if half_life_s is None or half_life_s <= 0:
        return None
    usable = [
        h
        for h in headers
        if h.acquisition_datetime is not None
        and h.frame_reference_time_ms is not None
        and h.frame_duration_ms is not None
    ]
    if not usable:
        return None
    h = min(usable, key=lambda x: x.acquisition_datetime)
    t_ave = frame_average_time_s(h.frame_duration_ms / 1000.0, half_life_s)
    return h.acquisition_datetime + dt.timedelta(seconds=t_ave - h.frame_reference_time_ms / 1000.0)


def _scan_start(headers: Sequence[PetSliceHeader], notes: list[str]) -> dt.datetime:
    h0 = headers[0]
    acq = [h.acquisition_datetime for h in headers if h.acquisition_datetime is not None]
    earliest = min(acq) if acq else None
    series = h0.series_datetime
    if series is None and earliest is None:
        raise SuvError(f"{h0.path}: missing required tag SeriesDate/SeriesTime (and no AcquisitionDate/Time) for SUV")
    if series is not None and (earliest is None or series <= earliest):
        notes.append("reference time = SeriesDate/SeriesTime")
        return series
    why = "no SeriesDate/Time" if series is None else "SeriesTime after AcquisitionTime"
    if h0.ge_scan_datetime is not None:
        notes.append(f"{why}: reference time = GE private scan datetime (0009,100D)")
        return h0.ge_scan_datetime
    back = _back_computed_start(headers, h0.half_life_s)
    if back is not None:
        notes.append(
            f"{why}: reference time back-computed from AcquisitionTime, FrameReferenceTime and ActualFrameDuration"
        )
        return back
    notes.append(f"{why}: reference time = earliest AcquisitionDate/Time of the series")
    return earliest


def _injection(h: PetSliceHeader, scan: dt.datetime, notes: list[str]) -> dt.datetime:
    if h.injection_datetime is not None:
        inj = h.injection_datetime
    else:
        t = _require(h.injection_time, h, "RadiopharmaceuticalStartTime (or RadiopharmaceuticalStartDateTime)")
        inj = dt.datetime.combine(scan.date(), t)
        if inj > scan:
            inj -= dt.timedelta(days=1)
            notes.append("injection time later than scan time on the same date: injection taken on the previous day")
    uptake_h = (scan - inj).total_seconds() / 3600.0
    if uptake_h > MAX_UPTAKE_H:
        raise SuvError(
            f"{h.path}: injection at {inj} is {uptake_h:.1f} h before the scan start {scan}, more than "
            f"{MAX_UPTAKE_H:g} h: RadiopharmaceuticalStartTime is probably after SeriesTime or wrong; "
            "cannot compute SUV"
        )
    return inj


def _dose_bq(h: PetSliceHeader, notes: list[str]) -> float:
    dose = float(_require(h.dose_bq, h, "RadionuclideTotalDose"))
    if 0 < dose < MBQ_THRESHOLD:
        notes.append(f"RadionuclideTotalDose {dose:g} is implausible in Bq: read as MBq ({dose * 1e6:.4g} Bq)")
        dose *= 1e6
    if not DOSE_RANGE_BQ[0] <= dose <= DOSE_RANGE_BQ[1]:
        raise SuvError(f"{h.path}: RadionuclideTotalDose {h.dose_bq!r} is not a plausible injected activity")
    return dose


def _weight_kg(h: PetSliceHeader) -> float:
    weight = float(_require(h.weight_kg, h, "PatientWeight"))
    if not 1.0 <= weight <= 400.0:
        raise SuvError(f"{h.path}: PatientWeight {weight:g} kg is not plausible")
    return weight


def _height_cm(h: PetSliceHeader, suv_type: str, notes: list[str]) -> float:
    size = float(_require(h.height_m, h, f"PatientSize (needed for SUV{suv_type})"))
    if size > 3.0:
        notes.append(f"PatientSize {size:g} is implausible in metres: read as centimetres")
        cm = size
    else:
        cm = size * 100.0
    if not HEIGHT_CM_RANGE[0] <= cm <= HEIGHT_CM_RANGE[1]:
        raise SuvError(f"{h.path}: PatientSize {h.height_m!r} is not a plausible height")
    return cm


def _check_sex(h: PetSliceHeader, suv_type: str) -> None:
    if suv_type in ("lbm", "lbmjames128", "lbmjanma", "ibw") and (h.sex or "").strip().upper() not in (
        "",
        "M",
        "F",
        "O",
    ):
        raise SuvError(f"{h.path}: PatientSex {h.sex!r} is not M, F or O (needed for SUV{suv_type})")


def _size(suv_type: str, h: PetSliceHeader, notes: list[str]) -> float:
    """The normaliser of ``suv_type`` for this patient (g or cm^2), with errors naming the missing tag."""
    weight = _weight_kg(h)
    if suv_type == "bw":
        return normaliser("bw", weight, None, None, notes)
    height = _height_cm(h, suv_type, notes)
    _check_sex(h, suv_type)
    try:
        return normaliser(suv_type, weight, height, h.sex, notes)
    except ValueError as exc:
        raise SuvError(f"{h.path}: {exc}") from exc


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
    weight_g = _weight_kg(h0) * 1000.0
    half_life = float(_require(h0.half_life_s, h0, "RadionuclideHalfLife"))
    if half_life <= 0:
        raise SuvError(f"{h0.path}: RadionuclideHalfLife {half_life:g} is not positive")
    dose = _dose_bq(h0, notes)
    if decay == "NONE":
        acq = [
            _require(h.acquisition_datetime, h, "AcquisitionDate/AcquisitionTime (DecayCorrection NONE)")
            for h in headers
        ]
        inj = _injection(h0, min(acq), notes)
        lam = math.log(2.0) / half_life
        factors = np.empty(len(headers))
        for k, (h, t) in enumerate(zip(headers, acq, strict=True)):
            elapsed = (t - inj).total_seconds()
            if elapsed < 0:
                raise SuvError(f"{h.path}: injection ({inj}) is after this slice's acquisition ({t})")
            duration_ms = float(_require(h.frame_duration_ms, h, "ActualFrameDuration (DecayCorrection NONE)"))
            factors[k] = (
                weight_g / dose * frame_average_factor(duration_ms / 1000.0, half_life) * math.exp(lam * elapsed)
            )
        return factors, (
            "BQML, not decay corrected (NONE): each slice decayed to injection from its own acquisition time, "
            "with the frame-average factor"
        )
    scan = _scan_start(headers, notes)
    inj = _injection(h0, scan, notes)
    if decay == "ADMIN":
        return np.full(len(headers), weight_g / dose), "BQML, decay corrected to injection (ADMIN)"
    elapsed = (scan - inj).total_seconds()
    if elapsed < 0:
        raise SuvError(f"{h0.path}: injection ({inj}) is after the scan start ({scan})")
    decayed = dose * 2.0 ** (-elapsed / half_life)
    return np.full(len(headers), weight_g / decayed), (
        f"BQML, decay corrected to the reference time (START), {elapsed / 60:.1f} min after injection"
    )


def _stored_type(h: PetSliceHeader, notes: list[str]) -> str:
    raw = (h.suv_type or "").strip().upper()
    if not raw:
        notes.append("Units GML with no SUVType: read as SUVbw")
        return "bw"
    if raw not in DICOM_SUV_TYPES:
        raise SuvError(f"{h.path}: SUVType {h.suv_type!r} is not one of {', '.join(DICOM_SUV_TYPES)}")
    return DICOM_SUV_TYPES[raw]


def _philips_factors(headers: Sequence[PetSliceHeader], attr: str, tag: str, name: str, meaning: str) -> np.ndarray:
    """Every slice's Philips factor ``attr``; a missing one is an error, and so is 0 or less (``meaning`` says why)."""
    f = np.asarray([float(_require(getattr(h, attr), h, tag)) for h in headers])
    bad = np.flatnonzero(f <= 0)
    if bad.size:
        h = headers[int(bad[0])]
        raise SuvError(f"{h.path}: Philips {name} {tag} is {getattr(h, attr):g}: {meaning}")
    return f


def _philips(headers: Sequence[PetSliceHeader], notes: list[str]) -> tuple[np.ndarray, str]:
    h0 = headers[0]
    if h0.philips_suv_factor is not None:
        f = _philips_factors(
            headers, "philips_suv_factor", "(7053,1000)", "SUV scale factor",
            "the scanner marks this series as not convertible to SUV",
        )  # fmt: skip
        return f, "Units CNTS: Philips SUV scale factor (7053,1000)"
    if h0.philips_activity_factor is not None:
        act = _philips_factors(
            headers, "philips_activity_factor", "(7053,1009)", "activity concentration factor",
            "counts cannot be converted to Bq/ml",
        )  # fmt: skip
        factors, rule = _bqml_factors(headers, notes)
        return act * factors, f"Units CNTS: Philips activity factor (7053,1009) to Bq/ml, then {rule}"
    raise SuvError(
        f"{h0.path}: Units CNTS without Philips SUV scale factor (7053,1000) or activity concentration factor "
        "(7053,1009): counts need the scanner's calibration, which the headers do not give"
    )


def suv_scale(headers: Sequence[PetSliceHeader], suv_type: str = "bw") -> SuvScale:
    """Per-slice factors turning rescaled PET values (in the series' Units) into SUV of ``suv_type``."""
    if suv_type not in SUV_TYPES:
        raise ValueError(f"unknown SUV type {suv_type!r}; choose from {', '.join(SUV_TYPES)}")
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
    if units in ("GML", "CM2ML"):
        stored = _stored_type(h0, notes) if units == "GML" else "bsa"
        if units == "CM2ML" and (h0.suv_type or "BSA").strip().upper() != "BSA":
            notes.append(f"Units CM2ML with SUVType {h0.suv_type}: read as SUVbsa (the unit decides)")
        rule = f"Units {units}: stored SUV{stored}"
        if stored == suv_type:
            return SuvScale(np.ones(len(headers)), suv_type, f"{rule}, passed through", tuple(notes))
        ratio = _size(suv_type, h0, notes) / _size(stored, h0, notes)
        return SuvScale(
            np.full(len(headers), ratio), suv_type, f"{rule}, converted to SUV{suv_type} ({ratio:.6g})", tuple(notes)
        )
    if units == "BQML":
        factors, rule = _bqml_factors(headers, notes)
    elif units == "CNTS":
        factors, rule = _philips(headers, notes)
    else:
        raise SuvError(f"{h0.path}: Units {h0.units!r} is not BQML, CNTS, GML or CM2ML: cannot compute SUV")
    if suv_type != "bw":
        ratio = _size(suv_type, h0, notes) / _size("bw", h0, notes)
        factors = factors * ratio
        rule = f"{rule}; SUVbw converted to SUV{suv_type} ({ratio:.6g})"
    return SuvScale(factors, suv_type, rule, tuple(notes))
