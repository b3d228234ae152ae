"""Property-based tests (hypothesis) of the pure functions, and a short fuzz of the DICOM and PNG readers.

Each property runs a bounded number of examples (``settings`` below), so the module stays within CI's budget.
"""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from igtv.data.datasets import neighbour_names
from igtv.data.windows import to_uint8, window_ct
from igtv.dicom.pet_header import PetSliceHeader
from igtv.dicom.rtstruct import mask_to_polygons, rasterize_contours
from igtv.dicom.suv import suv_scale
from igtv.evaluation import metrics as M
from igtv.geometry import Geometry
from igtv.inference.predictor import stack_indices

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
masks = arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12)))


@FAST
@given(st.data())
def test_metric_identities(data):
    a = data.draw(masks)
    b = data.draw(arrays(bool, a.shape))
    iou, dice = M.iou(a, b), M.dice(a, b)
    assert 0.0 <= iou <= dice <= 1.0
    assert dice == pytest.approx(2 * iou / (1 + iou))  # the Dice-IoU identity
    assert (iou, dice) == (M.iou(b, a), M.dice(b, a))  # symmetric
    assert M.dice(a, a) == 1.0 and M.pixel_accuracy(a, a) == 1.0
    tp, fp, fn, tn = M.counts(a, b)
    assert tp + fp + fn + tn == a.size
    c = M.batch_counts(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0]
    assert c.tolist() == [tp, fp, fn, tn]  # the torch counts are the numpy counts
    assert float(M.iou_from_counts(c[0], c[1], c[2])) == pytest.approx(iou)


@FAST
@given(arrays(np.float32, st.integers(1, 50), elements=st.floats(-3000, 3000, width=32)), st.floats(-1500, 0))
def test_ct_window_is_monotone_and_bounded(ct_hu, lo):
    hi = lo + 1500.0
    w = window_ct(ct_hu, lo, hi)
    assert ((w >= 0) & (w <= 255)).all()
    order = np.argsort(ct_hu, kind="stable")
    assert (np.diff(w[order]) >= 0).all()
    u8 = to_uint8(w)
    assert u8.dtype == np.uint8 and np.abs(u8.astype(np.float32) - w).max() <= 0.5


@FAST
@given(st.integers(1, 40), st.data())
def test_stacks_stay_in_the_volume_and_centre_on_the_slice(nz, data):
    z = data.draw(st.integers(0, nz - 1))
    s = stack_indices(z, nz, 3)
    assert len(s) == 3 and s[1] == z and all(0 <= i < nz for i in s)
    assert s[0] <= z <= s[2] and s[2] - s[0] <= 2
    assert stack_indices(z, nz, 1) == [z]


@FAST
@given(st.sets(st.integers(0, 30), min_size=1), st.data())
def test_neighbour_names_replicate_missing_slices(present, data):
    t = data.draw(st.sampled_from(sorted(present)))
    names = {f"P1_r1_{i:04d}" for i in present}
    got = neighbour_names(f"P1_r1_{t:04d}", names)
    assert got[1] == f"P1_r1_{t:04d}"
    for name, o in zip(got, (-1, 0, 1), strict=True):
        want = f"P1_r1_{t + o:04d}"
        assert name == (want if want in names else f"P1_r1_{t:04d}")


@settings(max_examples=40, deadline=None)
@given(arrays(bool, st.tuples(st.integers(2, 14), st.integers(2, 14))), st.floats(0.5, 2.0), st.floats(0.5, 2.0))
def test_contour_mask_round_trip(mask, sx, sy):
    """mask -> polygons (RTSTRUCT) -> patient mm -> rasterised back: the same pixels, holes included."""
    geom = Geometry((1, *mask.shape), (sx, sy, 3.0), (-20.0, 10.0, 5.0))
    contours = []
    for poly in mask_to_polygons(mask):  # (row, col) -> (column, row, slice) -> LPS mm
        ijk = np.c_[poly[:, 1], poly[:, 0], np.zeros(len(poly))]
        contours.append(geom.index_to_patient(ijk))
    back = rasterize_contours(contours, geom)[0] if contours else np.zeros_like(mask)
    np.testing.assert_array_equal(back, mask)


@FAST
@given(
    st.floats(40, 150), st.floats(1e8, 6e8), st.floats(10, 180), st.lists(st.floats(0.01, 10), min_size=1, max_size=5)
)
def test_suv_factor_physics(weight_kg, dose_bq, minutes, slopes):
    """BQML/START: factor = weight_g / (dose 2^(-t/T)), the same for every slice whatever its RescaleSlope."""
    scan = dt.datetime(2024, 3, 5, 10, 0)
    inj = scan - dt.timedelta(minutes=minutes)
    headers = [
        PetSliceHeader(
            path=f"s{k}",
            series_datetime=scan,
            acquisition_datetime=scan,
            injection_datetime=inj,
            dose_bq=dose_bq,
            half_life_s=6586.2,
            weight_kg=weight_kg,
            rescale_slope=s,
        )
        for k, s in enumerate(slopes)
    ]
    scale = suv_scale(headers)
    expect = weight_kg * 1000.0 / (dose_bq * 2.0 ** (-(minutes * 60.0) / 6586.2))
    np.testing.assert_allclose(scale.factors, expect, rtol=1e-9)
    heavier = suv_scale([PetSliceHeader(**{**h.__dict__, "weight_kg": 2 * weight_kg}) for h in headers])
    np.testing.assert_allclose(heavier.factors, 2 * scale.factors, rtol=1e-9)


# --- fuzz: the readers refuse garbage with their own error, never another exception ---------------------------------
@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=600))
def test_png_reader_fuzz(tmp_path_factory, blob):
    from igtv.data.png import load_png

    path = tmp_path_factory.mktemp("png") / "x.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + blob)
    try:
        img = load_png(path)
    except ValueError as exc:
        assert str(path) in str(exc)
    else:
        assert img.dtype == np.uint8 and img.ndim == 2


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["CT", "PT", "RTSTRUCT"]))
@example(blob=b"\x00\x00\x00\x00UR\x00\x00", modality="CT")  # CI found it: pydicom's struct.error on a cut header
def test_dicom_indexer_fuzz(tmp_path_factory, blob, modality):
    """A DICOM preamble followed by garbage, or a real header cut anywhere: skipped or a DicomInputError."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from igtv.dicom.index import DicomInputError, scan_dicom

    root = tmp_path_factory.mktemp("dcm")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "1.2.3.4"
    ds.Modality, ds.PatientID, ds.SeriesInstanceUID, ds.StudyInstanceUID = modality, "P", "1.2.3", "1.2"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    good = buf.getvalue()
    cut = len(blob) % (len(good) + 1)
    (root / "a.dcm").write_bytes(good[:cut] + blob)
    (root / "b.dcm").write_bytes(b"\0" * 128 + b"DICM" + blob)
    try:
        patients = scan_dicom(root)
    except DicomInputError as exc:
        assert str(root) in str(exc)
    else:
        assert isinstance(patients, dict)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([32, 64]), st.sampled_from([1, 3]), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_patches_have_their_geometry_and_range(patch, in_slices, fg_fraction, seed):
    """Any spec and seed: a (2S, P, P) image in [0, 255], a binary (1, P, P) mask, and a centred lesion patch
    holds target whenever the draw says it is a lesion patch."""
    from igtv.data.sampling import PatchSpec, sample_patch
    from tests.data.test_sampling import synthetic_case

    case, _ = synthetic_case()
    spec = PatchSpec(patch=patch, preset="lucid", in_slices=in_slices, fg_fraction=fg_fraction, jitter=0.0)
    image, mask, item = sample_patch(case, spec, np.random.default_rng(seed))  # item: <case>/<kind>/z<slice>
    assert image.shape == (2 * in_slices, patch, patch) and mask.shape == (1, patch, patch)
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 255.0
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert item.split("/")[1] in ("lesion", "hot", "body")
    if item.split("/")[1] == "lesion":
        assert mask.sum() > 0
