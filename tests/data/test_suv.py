"""QIBA App. G SUV rules: one table row per case, expected factors computed by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from igtv.data.suv import PetSliceHeader, SuvError, pet_header, suv_from_stored, suv_scale

F18 = 6586.2
DAY = dt.date(2024, 3, 5)


def at(h: int, m: int = 0, s: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(h, m, s))


BASE = PetSliceHeader(
    path="/data/PT_0001.dcm",
    series_datetime=at(10),
    acquisition_datetime=at(10),
    injection_datetime=at(9),
    dose_bq=370e6,
    half_life_s=F18,
    weight_kg=70.0,
)


def bw(elapsed_s: float, dose: float = 370e6, half_life: float = F18, weight: float = 70.0) -> float:
    return weight * 1000.0 / (dose * 2.0 ** (-elapsed_s / half_life))


def slices(*changes: dict) -> list[PetSliceHeader]:
    return [dataclasses.replace(BASE, **c) for c in changes]


# (id, headers, expected factors, kind, words expected in rule + notes)
CASES = [
    ("bqml_start", slices({}), [bw(3600)], "bw", "START"),
    ("bqml_units_lowercase", slices({"units": "bqml"}), [bw(3600)], "bw", "START"),
    ("gml_pass_through", slices({"units": "GML", "weight_kg": None}), [1.0], "bw", "SUVbw"),
    ("cm2ml_pass_through", slices({"units": "CM2ML"}), [1.0], "bsa", "SUVbsa"),
    ("cnts_philips_suv_factor", slices({"units": "CNTS", "philips_suv_factor": 0.00042}), [0.00042], "bw", "7053,1000"),
    (
        "cnts_philips_activity_factor",
        slices({"units": "CNTS", "philips_activity_factor": 2.5}),
        [2.5 * bw(3600)],
        "bw",
        "7053,1009",
    ),
    ("dose_in_mbq", slices({"dose_bq": 370.0}), [bw(3600)], "bw", "MBq"),
    ("decay_admin", slices({"decay_correction": "ADMIN"}), [bw(0)], "bw", "ADMIN"),
    (
        "decay_none_per_slice",
        slices(
            {"decay_correction": "NONE", "corrected_image": ("ATTN",), "acquisition_datetime": at(10)},
            {"decay_correction": "NONE", "corrected_image": ("ATTN",), "acquisition_datetime": at(10, 3)},
        ),
        [bw(3600), bw(3780)],
        "bw",
        "NONE",
    ),
    (
        "series_after_acquisition_earliest",
        slices(
            {"series_datetime": at(11, 30), "acquisition_datetime": at(10, 2)},
            {"series_datetime": at(11, 30), "acquisition_datetime": at(10)},
        ),
        [bw(3600)] * 2,
        "bw",
        "earliest AcquisitionDate",
    ),
    (
        "series_after_acquisition_ge_private",
        slices({"series_datetime": at(11, 30), "acquisition_datetime": at(10, 2), "ge_scan_datetime": at(10, 1)}),
        [bw(3660)],
        "bw",
        "0009,100D",
    ),
    ("start_datetime_only", slices({"injection_time": None}), [bw(3600)], "bw", "START"),
    ("start_time_only", slices({"injection_datetime": None, "injection_time": dt.time(9)}), [bw(3600)], "bw", "START"),
    (
        "injection_before_midnight",
        slices(
            {
                "injection_datetime": None,
                "injection_time": dt.time(23, 30),
                "series_datetime": at(0, 30),
                "acquisition_datetime": at(0, 30),
            }
        ),
        [bw(3600)],
        "bw",
        "previous day",
    ),
    ("gallium_68_half_life", slices({"half_life_s": 4062.6}), [bw(3600, half_life=4062.6)], "bw", "START"),
    ("no_series_time", slices({"series_datetime": None}), [bw(3600)], "bw", "earliest AcquisitionDate"),
]


@pytest.mark.parametrize("headers,expected,kind,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_suv_rule(headers, expected, kind, words):
    scale = suv_scale(headers)
    np.testing.assert_allclose(scale.factors, expected, rtol=1e-9)
    assert scale.kind == kind
    assert words in scale.rule + " | " + " | ".join(scale.notes)


ERRORS = [
    ("missing_weight", slices({"weight_kg": None}), "PatientWeight"),
    ("missing_dose", slices({"dose_bq": None}), "RadionuclideTotalDose"),
    ("missing_half_life", slices({"half_life_s": None}), "RadionuclideHalfLife"),
    ("missing_injection_time", slices({"injection_datetime": None}), "RadiopharmaceuticalStartTime"),
    ("unknown_units", slices({"units": "PROPCNTS"}), "PROPCNTS"),
    ("missing_units", slices({"units": None}), "Units"),
    ("cnts_without_factor", slices({"units": "CNTS"}), "7053,1000"),
    ("unknown_decay", slices({"decay_correction": "FRAME"}), "DecayCorrection"),
    ("not_attenuation_corrected", slices({"corrected_image": ("DECY",)}), "ATTN"),
    ("injection_after_scan", slices({"injection_datetime": at(11)}), "after the scan"),
    ("implausible_dose", slices({"dose_bq": 5e4}), "plausible"),
    ("mixed_units", slices({}, {"units": "GML"}), "differs"),
]


@pytest.mark.parametrize("headers,words", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_suv_error_names_file_and_tag(headers, words):
    with pytest.raises(SuvError) as err:
        suv_scale(headers)
    assert "PT_0001.dcm" in str(err.value)
    assert words in str(err.value)


def test_per_slice_rescale_slope():
    stored = np.full((2, 2, 2), 1000, dtype=np.int16)
    hs = slices({"rescale_slope": 2.0}, {"rescale_slope": 0.5, "rescale_intercept": 10.0})
    suv, scale = suv_from_stored(stored, hs)
    np.testing.assert_allclose(suv[0], 2000 * bw(3600), rtol=1e-6)
    np.testing.assert_allclose(suv[1], 510 * bw(3600), rtol=1e-6)


def _pet_dataset() -> Dataset:
    ds = Dataset()
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["ATTN", "DECY"]
    ds.SeriesDate = ds.AcquisitionDate = "20240305"
    ds.SeriesTime = "113000"
    ds.AcquisitionTime = "100000.000000"
    ds.PatientWeight = "70"
    ds.RescaleSlope = "0.5"
    ds.RescaleIntercept = "0"
    rp = Dataset()
    rp.RadiopharmaceuticalStartTime = "090000"
    rp.RadionuclideTotalDose = "370000000"
    rp.RadionuclideHalfLife = "6586.2"
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([rp])
    return ds


def test_pet_header_reads_standard_and_private_tags():
    ds = _pet_dataset()
    ge = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
    ge.add_new(0x0D, "DT", "20240305100100")
    ph = ds.private_block(0x7053, "Philips PET Private Group", create=True)
    ph.add_new(0x00, "DS", "0.00042")
    ph.add_new(0x09, "DS", "2.5")
    h = pet_header(ds, "x.dcm")
    assert h.ge_scan_datetime == at(10, 1)
    assert h.injection_time == dt.time(9) and h.injection_datetime is None
    assert h.philips_suv_factor == pytest.approx(0.00042) and h.philips_activity_factor == pytest.approx(2.5)
    assert h.rescale_slope == 0.5 and h.weight_kg == 70.0
    scale = suv_scale([h])  # series after acquisition -> GE private time 10:01
    assert scale.factor == pytest.approx(bw(3660))


def test_pet_header_without_radiopharmaceutical_sequence():
    ds = _pet_dataset()
    del ds.RadiopharmaceuticalInformationSequence
    with pytest.raises(SuvError, match="x.dcm.*RadiopharmaceuticalInformationSequence"):
        pet_header(ds, "x.dcm")
