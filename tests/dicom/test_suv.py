"""SUV rules: one table row per case, expected factors worked by hand (the arithmetic is in each row's comment).

Base patient: W 70 kg, H 175 cm, 370 MBq 18F (half-life 6586.2 s) injected 09:00, series 10:00.
SUVbw factor after 3600 s: 70000 g / (370e6 Bq * 2^(-3600/6586.2)) = 70000 / (370e6 * 0.684650) = 2.76337e-4.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from igtv.dicom.pet_header import PetSliceHeader, SuvError, pet_header
from igtv.dicom.suv import suv_scale

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
    height_m=1.75,
    sex="M",
)
BW_3600 = 2.76337e-4  # the SUVbw factor of the base patient, worked in the module docstring


def bw(elapsed_s: float, dose: float = 370e6, half_life: float = F18, weight: float = 70.0) -> float:
    return weight * 1000.0 / (dose * 2.0 ** (-elapsed_s / half_life))


def slices(*changes: dict) -> list[PetSliceHeader]:
    return [dataclasses.replace(BASE, **c) for c in changes]


# Lean body masses of the base patient, (W/H)^2 = (70/175)^2 = 0.16:
#   James/Morgan male  1.10*70 - 120*0.16 = 57.80 kg; female 1.07*70 - 148*0.16 = 51.22 kg
#   James 128 male     1.10*70 - 128*0.16 = 56.52 kg
#   Janma (BMI 70/1.75^2 = 22.857) male 9270*70/(6680 + 216*22.857) = 648900/11617.14 = 55.857 kg
#                                  female 9270*70/(8780 + 244*22.857) = 648900/14357.14 = 45.197 kg
#   IBW male 48.0 + 1.06*(175-152) = 72.38 kg; female 45.5 + 0.91*(175-152) = 66.43 kg
#   BSA (Du Bois) 0.007184 * 175^0.725 * 70^0.425 = 0.007184 * 42.281 * 6.0845 = 1.8481 m^2 = 18481 cm^2
# (id, headers, target suv_type, expected factors, kind, words expected in rule + notes)
CASES = [
    ("bqml_start", slices({}), [bw(3600)], "bw", "START"),
    ("bqml_units_lowercase", slices({"units": "bqml"}), [bw(3600)], "bw", "START"),
    ("gml_pass_through", slices({"units": "GML", "weight_kg": None}), [1.0], "bw", "SUVbw"),
    # CM2ML: SUVbw = SUVbsa * 70000 g / 18481 cm^2 = SUVbsa * 3.78759 (SUVbsa 0.264 -> SUVbw 1.000)
    ("cm2ml_to_bw", slices({"units": "CM2ML"}), [3.78759], "bw", "SUVbsa"),
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
    # NONE, 180 s frames: factor = 70000/370e6 * lamT/(1-e^-lamT) * e^(lam t), lam = ln2/6586.2 = 1.05241e-4/s,
    # lamT = 0.0189434 -> frame factor 1.009502; t 3600 s: e^0.378868 = 1.460604 -> 1.891892e-4*1.009502*1.460604
    # = 2.78962e-4; t 3780 s: e^0.397811 = 1.488537 -> 2.84297e-4
    (
        "decay_none_per_slice_frame_average",
        slices(
            {"decay_correction": "NONE", "corrected_image": ("ATTN",), "frame_duration_ms": 180000.0},
            {
                "decay_correction": "NONE",
                "corrected_image": ("ATTN",),
                "frame_duration_ms": 180000.0,
                "acquisition_datetime": at(10, 3),
            },
        ),
        [2.78962e-4, 2.84297e-4],
        "bw",
        "frame-average",
    ),
    # START, SeriesTime 11:30 after acquisition 10:02, no GE time; 180 s frame: T_ave = ln(1.009502)/lam = 89.858 s,
    # FrameReferenceTime 209858 ms -> t_ref = 10:02 + 89.858 s - 209.858 s = 10:00, 3600 s after injection
    (
        "start_back_computed_from_frame_reference_time",
        slices(
            {
                "series_datetime": at(11, 30),
                "acquisition_datetime": at(10, 2),
                "frame_duration_ms": 180000.0,
                "frame_reference_time_ms": 209858.0,
            }
        ),
        [BW_3600],
        "bw",
        "back-computed",
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
    np.testing.assert_allclose(scale.factors, expected, rtol=2e-5)
    assert scale.kind == kind
    assert words in scale.rule + " | " + " | ".join(scale.notes)


# Stored SUV of another normalisation -> SUVbw = stored * W / normaliser, and SUVbw -> any normalisation.
# (id, headers, requested type, expected factors, words expected in rule + notes)
CONVERSIONS = [
    ("gml_lbm_male_to_bw", slices({"units": "GML", "suv_type": "LBM"}), "bw", [70 / 57.80], "SUVlbm"),  # 1.21107
    ("gml_lbm_female_to_bw", slices({"units": "GML", "suv_type": "LBM", "sex": "F"}), "bw", [70 / 51.22], "SUVlbm"),
    (
        "gml_lbmjames128_male_to_bw",
        slices({"units": "GML", "suv_type": "LBMJAMES128"}),
        "bw",
        [70 / 56.52],
        "lbmjames128",
    ),
    ("gml_lbmjanma_male_to_bw", slices({"units": "GML", "suv_type": "LBMJANMA"}), "bw", [70 / 55.857], "lbmjanma"),
    (
        "gml_lbmjanma_female_to_bw",
        slices({"units": "GML", "suv_type": "LBMJANMA", "sex": "F"}),
        "bw",
        [70 / 45.197],
        "lbmjanma",
    ),
    ("gml_ibw_male_to_bw", slices({"units": "GML", "suv_type": "IBW"}), "bw", [70 / 72.38], "SUVibw"),
    ("gml_ibw_female_to_bw", slices({"units": "GML", "suv_type": "IBW", "sex": "F"}), "bw", [70 / 66.43], "SUVibw"),
    # sex O: mean of male and female LBM, (57.80 + 51.22) / 2 = 54.51 kg
    ("gml_lbm_sex_other", slices({"units": "GML", "suv_type": "LBM", "sex": "O"}), "bw", [70 / 54.51], "mean"),
    ("gml_lbm_sex_absent", slices({"units": "GML", "suv_type": "LBM", "sex": None}), "bw", [70 / 54.51], "absent"),
    ("gml_empty_suv_type_is_bw", slices({"units": "GML", "weight_kg": None}), "bw", [1.0], "no SUVType"),
    (
        "gml_lbm_to_lbm_needs_no_size",
        slices({"units": "GML", "suv_type": "LBM", "height_m": None}),
        "lbm",
        [1.0],
        "passed",
    ),
    ("gml_lbm_to_bsa", slices({"units": "GML", "suv_type": "LBM"}), "bsa", [18481.4 / 57800], "SUVbsa"),
    ("cm2ml_to_bsa", slices({"units": "CM2ML", "weight_kg": None}), "bsa", [1.0], "passed"),
    # BQML -> SUVlbm: 2.76337e-4 * 57.80/70 = 2.28175e-4; -> SUVbsa: 2.76337e-4 * 18481.4/70000 = 7.29585e-5
    ("bqml_to_lbm", slices({}), "lbm", [2.28175e-4], "SUVbw converted to SUVlbm"),
    ("bqml_to_bsa", slices({}), "bsa", [7.29585e-5], "SUVbw converted to SUVbsa"),
    ("bqml_to_ibw_female", slices({"sex": "F"}), "ibw", [BW_3600 * 66.43 / 70], "SUVibw"),
    ("height_in_cm", slices({"units": "GML", "suv_type": "LBM", "height_m": 175.0}), "bw", [70 / 57.80], "centimetres"),
    (
        "cnts_suv_factor_to_lbm",
        slices({"units": "CNTS", "philips_suv_factor": 0.00042}),
        "lbm",
        [0.00042 * 57.80 / 70],
        "7053,1000",
    ),
]


@pytest.mark.parametrize(
    "headers,suv_type,expected,words", [c[1:] for c in CONVERSIONS], ids=[c[0] for c in CONVERSIONS]
)
def test_suv_conversion(headers, suv_type, expected, words):
    scale = suv_scale(headers, suv_type)
    np.testing.assert_allclose(scale.factors, expected, rtol=2e-5)
    assert scale.kind == suv_type
    assert words in scale.rule + " | " + " | ".join(scale.notes)


def test_bsa_worked_example():
    # W 70 kg, H 175 cm: BSA 1.848 m^2, so SUVbsa 0.264 cm2/ml is SUVbw 0.264 * 70000 / 18481 = 1.000
    scale = suv_scale(slices({"units": "CM2ML"}))
    assert 0.264 * scale.factor == pytest.approx(1.00, abs=0.005)


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
    ("cnts_suv_factor_zero", slices({"units": "CNTS", "philips_suv_factor": 0.0}), "not convertible"),
    ("cnts_activity_factor_zero", slices({"units": "CNTS", "philips_activity_factor": 0.0}), "cannot be converted"),
    ("gml_unknown_suv_type", slices({"units": "GML", "suv_type": "BWX"}), "SUVType"),
    ("gml_lbm_without_height", slices({"units": "GML", "suv_type": "LBM", "height_m": None}), "PatientSize"),
    ("gml_lbm_bad_sex", slices({"units": "GML", "suv_type": "LBM", "sex": "X"}), "PatientSex"),
    ("gml_lbm_without_weight", slices({"units": "GML", "suv_type": "LBM", "weight_kg": None}), "PatientWeight"),
    (
        "none_without_frame_duration",
        slices({"decay_correction": "NONE", "corrected_image": ("ATTN",)}),
        "ActualFrameDuration",
    ),
]


@pytest.mark.parametrize("headers,words", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_suv_error_names_file_and_tag(headers, words):
    with pytest.raises(SuvError) as err:
        suv_scale(headers)
    assert "PT_0001.dcm" in str(err.value)
    assert words in str(err.value)


def test_per_slice_rescale_slope_does_not_change_the_factor():
    # SUV_k = (stored * slope_k + intercept_k) * factor_k: the reader rescales each slice (test_suv_roundtrip), and
    # the factor from Bq/ml to SUV is the same whatever a slice's rescale
    stored = np.full((2, 2, 2), 1000, dtype=np.int16)
    hs = slices({"rescale_slope": 2.0}, {"rescale_slope": 0.5, "rescale_intercept": 10.0})
    scale = suv_scale(hs)
    np.testing.assert_allclose(scale.factors, [bw(3600), bw(3600)], rtol=1e-9)
    rescaled = stored * np.array([2.0, 0.5])[:, None, None] + np.array([0.0, 10.0])[:, None, None]
    suv = rescaled * scale.factors[:, None, None]
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


@pytest.mark.parametrize("vr", ["DS", "UN"])
def test_philips_factors_without_private_creator(vr):
    # anonymisers strip (7053,0010) "Philips PET Private Group"; the factors then sit at (7053,1000) / (7053,1009)
    ds = _pet_dataset()
    ds.Units = "CNTS"
    for elem, text in ((0x1000, "0.00042"), (0x1009, "2.5")):
        ds.add_new((0x7053, elem), vr, text.encode() if vr == "UN" else text)
    h = pet_header(ds, "x.dcm")
    assert h.philips_suv_factor == pytest.approx(0.00042)
    assert h.philips_activity_factor == pytest.approx(2.5)
    assert suv_scale([h]).factor == pytest.approx(0.00042)


def test_philips_block_of_another_creator_is_not_read():
    ds = _pet_dataset()
    ds.Units = "CNTS"
    other = ds.private_block(0x7053, "SOMEONE ELSE", create=True)
    other.add_new(0x00, "DS", "0.5")
    h = pet_header(ds, "x.dcm")
    assert h.philips_suv_factor is None
    with pytest.raises(SuvError, match="x.dcm.*7053,1000"):
        suv_scale([h])


def test_pet_header_reads_body_size_suv_type_and_frame_times():
    ds = _pet_dataset()
    ds.PatientSize = "1.75"
    ds.PatientSex = "F"
    ds.SUVType = "LBMJANMA"
    ds.FrameReferenceTime = "209858"
    ds.ActualFrameDuration = 180000
    del ds.AcquisitionDate, ds.AcquisitionTime
    ds.AcquisitionDateTime = "20240305100200.000000"
    h = pet_header(ds, "x.dcm")
    assert (h.height_m, h.sex, h.suv_type) == (1.75, "F", "LBMJANMA")
    assert (h.frame_reference_time_ms, h.frame_duration_ms) == (209858.0, 180000.0)
    assert h.acquisition_datetime == at(10, 2)
