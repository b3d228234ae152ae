from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from igtv.dicom.rtstruct import (
    CTReference,
    RoiMask,
    RTStructError,
    mask_to_polygons,
    rasterize_contours,
    read_rtstruct,
    write_rtstruct,
)
from igtv.dicom.write import PatientStudy, ds_str
from igtv.geometry import Geometry


def _ref(geom: Geometry) -> CTReference:
    ps = PatientStudy("Test^Name", "ID1", "O", "1.2.3", "1.2.3.4", dt.datetime(2024, 1, 2, 3, 4, 5))
    return CTReference(geom, [f"1.2.3.5.{k}" for k in range(geom.shape_zyx[0])], "1.2.3.6", ps)


def _write_read(tmp_path, mask, geom):
    path = write_rtstruct(
        tmp_path / "rs.dcm",
        [RoiMask("IGTV", mask)],
        _ref(geom),
        series_uid="1.2.9",
        sop_uid="1.2.9.1",
        when=dt.datetime(2024, 1, 2),
    )
    rs = read_rtstruct(path)
    return rs, rasterize_contours(rs.rois["IGTV"], geom)


def test_holes_and_islands_round_trip_exactly(tmp_path):
    geom = Geometry((3, 40, 48), (0.9765625, 0.9765625, 3.0), (-250.0, -180.5, -412.25))
    mask = np.zeros(geom.shape_zyx, dtype=bool)
    yy, xx = np.mgrid[:40, :48]
    ring = ((yy - 20) ** 2 + (xx - 15) ** 2 <= 100) & ((yy - 20) ** 2 + (xx - 15) ** 2 > 16)
    mask[1] = ring
    mask[1, 5:9, 35:44] = True  # second island
    mask[1, 30, 40] = True  # single-voxel island
    mask[2, 10:12, 10:12] = True
    rs, back = _write_read(tmp_path, mask, geom)
    assert np.array_equal(back, mask)
    assert rs.referenced_sop_uids == {f"1.2.3.5.{k}" for k in range(3)}


def test_non_identity_orientation_round_trip(tmp_path):
    # rows run along -x, columns along +y: a rotated in-plane orientation
    geom = Geometry((2, 20, 24), (1.2, 0.8, 2.5), (10.0, -30.0, 100.0), (0, -1, 0, 1, 0, 0, 0, 0, 1))
    mask = np.zeros(geom.shape_zyx, dtype=bool)
    mask[0, 3:9, 4:15] = True
    _, back = _write_read(tmp_path, mask, geom)
    assert np.array_equal(back, mask)


def test_contour_data_fits_ds_limit(tmp_path):
    import pydicom

    geom = Geometry((1, 16, 16), (0.976562512345, 0.976562512345, 2.0), (-1234.567891, -987.654321, -1500.123456))
    mask = np.zeros(geom.shape_zyx, dtype=bool)
    mask[0, 4:9, 3:11] = True
    write_rtstruct(
        tmp_path / "rs.dcm",
        [RoiMask("GTV", mask)],
        _ref(geom),
        series_uid="1.2",
        sop_uid="1.3",
        when=dt.datetime(2024, 1, 1),
    )
    ds = pydicom.dcmread(tmp_path / "rs.dcm")
    for c in ds.ROIContourSequence[0].ContourSequence:
        assert all(len(str(v)) <= 16 for v in c.ContourData)
    assert ds.OperatorsName == "igtv^autocontour" and ds.FrameOfReferenceUID == "1.2.3.4"
    assert ds.PositionReferenceIndicator == ""


def test_no_degenerate_polygons():
    m = np.zeros((8, 8), dtype=bool)
    m[2, 2] = True
    polys = mask_to_polygons(m)
    assert len(polys) == 1 and len(polys[0]) >= 3


def test_contour_off_the_grid_is_an_error():
    geom = Geometry((2, 8, 8), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0))
    poly = np.array([[1.0, 1.0, 1.5], [3.0, 1.0, 1.5], [3.0, 3.0, 1.5]])
    with pytest.raises(RTStructError, match="not on a slice"):
        rasterize_contours([poly], geom, "GTV")


@pytest.mark.parametrize("value", [-1234.567891234, 0.000012345, 0.000366211, 123456789.123, -0.0, 1e-300])
def test_ds_str(value):
    text = ds_str(value)
    assert len(text) <= 16 and abs(float(text) - value) <= abs(value) * 1e-9


def test_contour_data_bytes_are_pydicoms_own():
    """ContourData built as text writes the same bytes as pydicom's DS list of the same numbers, and reads back as
    those numbers (odd and even lengths, -0, values that round to 0.001)."""
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from igtv.dicom.rtstruct import CONTOUR_DATA, contour_data_element

    def encoded(ds: Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, ds)
        return fp.getvalue()

    pts = np.array([[-1234.5678912, 0.0004, -0.0004], [12.3456, -987.6543, 1500.1], [1.0, 2.5, -3.25]])
    for xyz in (pts, pts[:1], pts[:2]):
        ours, theirs = Dataset(), Dataset()
        ours[CONTOUR_DATA] = contour_data_element(xyz)
        theirs.ContourData = [ds_str(round(float(v), 3)) for v in xyz.reshape(-1)]
        assert encoded(ours) == encoded(theirs)
        assert [float(v) for v in ours.ContourData] == pytest.approx(np.round(xyz.reshape(-1), 3).tolist(), abs=0)


def test_collinear_vertices_are_dropped_and_the_mask_comes_back_exactly(tmp_path):
    """Straight and 45-degree borders keep only their end points, and the written contours still fill back to
    exactly the mask (a disc, a rectangle with a hole, a diagonal band, a one-pixel line)."""
    from igtv.dicom.rtstruct import drop_collinear

    square = np.array([[0, 0], [0, 1], [0, 2], [1, 2], [2, 2], [2, 1], [2, 0], [1, 0]], dtype=float)
    assert drop_collinear(square).tolist() == [[0, 0], [0, 2], [2, 2], [2, 0]]
    geom = Geometry((4, 48, 56), (0.9765625, 0.9765625, 2.5), (-250.0, -180.5, -412.25))
    mask = np.zeros(geom.shape_zyx, dtype=bool)
    yy, xx = np.mgrid[:48, :56]
    mask[0] = (yy - 24) ** 2 + (xx - 28) ** 2 <= 400
    mask[1, 5:40, 6:50] = True
    mask[1, 15:25, 20:30] = False
    mask[2] = np.abs(yy - xx) <= 3
    mask[3, 10, 5:45] = True
    n_points = sum(len(p) for k in range(4) for p in mask_to_polygons(mask[k]))
    assert n_points < 0.5 * int(
        np.count_nonzero(mask[:, 1:] != mask[:, :-1]) + np.count_nonzero(mask[:, :, 1:] != mask[:, :, :-1])
    )
    _, back = _write_read(tmp_path, mask, geom)
    assert np.array_equal(back, mask)


def test_a_contour_too_long_for_explicit_vr_is_written_in_implicit_vr(tmp_path):
    """A DS value longer than 65534 bytes (a polygon of more than ~2,400 points) cannot be written in explicit VR:
    pydicom would write it as UN, which reads back as bytes, not coordinates. Such a file is written in Implicit VR
    Little Endian instead; a small contour keeps explicit VR."""
    import pydicom

    geom = Geometry((2, 512, 512), (0.9765625, 0.9765625, 2.5), (-250.0, -250.0, -412.25))
    mask = np.zeros(geom.shape_zyx, dtype=bool)
    yy, xx = np.mgrid[:512, :512]
    ragged = 200 + 15 * np.sin(np.arctan2(yy - 256, xx - 256) * 170) + 4 * np.random.default_rng(0).random((512, 512))
    mask[0] = np.hypot(yy - 256, xx - 256) <= ragged  # a disc with a ragged edge: ~5,000 vertices on one polygon
    mask[1, 100:110, 100:110] = True
    rs, back = _write_read(tmp_path, mask, geom)
    ds = pydicom.dcmread(tmp_path / "rs.dcm")
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    longest = max(len(c.ContourData) for c in ds.ROIContourSequence[0].ContourSequence)
    assert longest * 7 > 65534  # at least 7 bytes per number: the case in point
    assert np.array_equal(back, mask)
    small = np.zeros_like(mask)
    small[1] = mask[1]
    _write_read(tmp_path, small, geom)
    assert pydicom.dcmread(tmp_path / "rs.dcm").file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
