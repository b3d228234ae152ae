"""DICOM RT Structure Set: write masks as planar contours, read contours back, rasterise them onto a CT grid.

Our own small writer on pydicom + scikit-image marching squares (rt-utils forces the GUI OpenCV build and its
files fail ``dciodvfy``). Contours are built from the CT's DICOM geometry (ImagePositionPatient/Orientation and
PixelSpacing), never from NIfTI axes. Holes and several islands per slice are written as separate closed
contours and read back with the even-odd rule, as planning systems do.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from igtv.dicom.write import (
    CT_IMAGE_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    PatientStudy,
    dicom_date,
    dicom_time,
    ds_str,
    new_dataset,
    save_dataset,
)
from igtv.geometry import Geometry


class RTStructError(ValueError):
    """An RTSTRUCT file cannot be read or does not fit the image it is applied to."""


@dataclass
class RoiMask:
    """One ROI to write: a boolean mask on the referenced CT grid."""

    name: str
    mask: np.ndarray  # bool [z, y, x]
    color: tuple[int, int, int] = (255, 0, 0)
    interpreted_type: str = "GTV"


@dataclass
class CTReference:
    """What an RTSTRUCT must know of the CT series it contours."""

    geometry: Geometry
    sop_instance_uids: Sequence[str]  # per slice index k of the geometry
    series_uid: str
    study: PatientStudy
    sop_class_uid: str = CT_IMAGE_STORAGE


@dataclass
class RTStruct:
    """Contours of an RTSTRUCT: ROI name -> list of (N, 3) point arrays in patient mm."""

    rois: dict[str, list[np.ndarray]] = field(default_factory=dict)
    frame_of_reference_uid: str = ""
    referenced_series_uid: str = ""
    referenced_sop_uids: set[str] = field(default_factory=set)


def mask_to_polygons(mask2d: np.ndarray) -> list[np.ndarray]:
    """Closed polygons (row, col) of a binary slice: outer borders and hole borders, no degenerate ones.

    Marching squares at level 0.5 puts every vertex half-way between a pixel inside and one outside, so pixel
    centres never lie on an edge and the even-odd fill of the polygons gives back exactly the mask.
    """
    from skimage.measure import find_contours

    padded = np.pad(mask2d.astype(np.float32), 1)
    polys = []
    for c in find_contours(padded, 0.5):
        c = c - 1.0
        if np.allclose(c[0], c[-1]):
            c = c[:-1]
        if len(c) < 3:
            continue
        area = 0.5 * abs(np.dot(c[:, 0], np.roll(c[:, 1], 1)) - np.dot(c[:, 1], np.roll(c[:, 0], 1)))
        if area <= 1e-6:
            continue
        polys.append(drop_collinear(c))
    return polys


def drop_collinear(poly: np.ndarray) -> np.ndarray:
    """The closed polygon without the vertices that lie between their two neighbours on one straight line: the same
    polygon with fewer points (marching squares puts one vertex per pixel edge, so straight and 45-degree borders
    are runs of such vertices). The vertices are multiples of 0.5, so the test is exact."""
    d_in = poly - np.roll(poly, 1, axis=0)  # edge into each vertex
    d_out = np.roll(poly, -1, axis=0) - poly  # edge out of it
    cross = d_in[:, 0] * d_out[:, 1] - d_in[:, 1] * d_out[:, 0]
    keep = (cross != 0) | ((d_in * d_out).sum(axis=1) <= 0)
    return poly[keep] if keep.sum() >= 3 else poly


CONTOUR_DATA = 0x30060050


MAX_EXPLICIT_LENGTH = 0xFFFE  # a DS value's 16-bit length in explicit VR (even, so 65534 bytes)


def contour_data_element(xyz: np.ndarray) -> RawDataElement:
    """ContourData (DS, mm to 0.001) as the bytes pydicom would write for it. Built as text here: pydicom makes and
    validates one DS object per number, so a contour over a whole thorax (1.3 M numbers, an untrained model's
    output) took 7.7 s to write instead of 2.35 s. The numbers are ``ds_str(round(v, 3))``, joined by backslashes
    and padded with a space to an even length, as pydicom writes them (tested byte for byte). The item that holds it
    must carry the file's encoding (``set_original_encoding(False, True, ...)``), or pydicom converts it back."""
    text = "\\".join(ds_str(round(float(v), 3)) for v in np.asarray(xyz, dtype=np.float64).reshape(-1))
    raw = text.encode("ascii")
    if len(raw) % 2:
        raw += b" "
    return RawDataElement(CONTOUR_DATA, "DS", len(raw), raw, 0, False, True, True, False)


def write_rtstruct(
    path: str | Path,
    rois: Sequence[RoiMask],
    ct: CTReference,
    *,
    label: str = "igtv",
    series_uid: str,
    sop_uid: str,
    when: dt.datetime,
    description: str = "",
    operator: str = "igtv^autocontour",
) -> Path:
    """Write ``rois`` as an RTSTRUCT referencing every CT image of ``ct``; returns the path (atomic write)."""
    geom = ct.geometry
    ds = new_dataset(RT_STRUCTURE_SET_STORAGE, sop_uid)
    ct.study.fill(ds)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 99
    ds.SeriesDescription = description or label
    ds.OperatorsName = operator
    ds.Manufacturer = "igtv"
    ds.FrameOfReferenceUID = ct.study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = 1
    ds.StructureSetLabel = label[:16]
    ds.StructureSetName = label[:64]
    ds.StructureSetDate = ds.SeriesDate = dicom_date(when)
    ds.StructureSetTime = ds.SeriesTime = dicom_time(when)
    ds.ApprovalStatus = "UNAPPROVED"

    def image_ref(k: int) -> Dataset:
        r = Dataset()
        r.ReferencedSOPClassUID = ct.sop_class_uid
        r.ReferencedSOPInstanceUID = ct.sop_instance_uids[k]
        return r

    series = Dataset()
    series.SeriesInstanceUID = ct.series_uid
    series.ContourImageSequence = DicomSequence([image_ref(k) for k in range(geom.shape_zyx[0])])
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired, as customary)
    study.ReferencedSOPInstanceUID = ct.study.study_uid
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ct.study.frame_of_reference_uid
    frame.RTReferencedStudySequence = DicomSequence([study])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])

    roi_seq, contour_seq, obs_seq = [], [], []
    for number, roi in enumerate(rois, start=1):
        if roi.mask.shape != geom.shape_zyx:
            raise RTStructError(f"ROI {roi.name!r}: mask shape {roi.mask.shape} differs from the CT {geom.shape_zyx}")
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = ct.study.frame_of_reference_uid
        item.ROIName = roi.name
        item.ROIGenerationAlgorithm = "AUTOMATIC"
        roi_seq.append(item)
        contours = []
        for k in np.nonzero(roi.mask.reshape(roi.mask.shape[0], -1).any(axis=1))[0]:
            for poly in mask_to_polygons(roi.mask[k]):
                ijk = np.stack([poly[:, 1], poly[:, 0], np.full(len(poly), float(k))], axis=1)
                xyz = geom.index_to_patient(ijk)
                c = Dataset()
                # the file's encoding (explicit VR little endian), so that pydicom writes the raw ContourData as it is
                # instead of converting it to DS objects first
                c.set_original_encoding(False, True, "iso8859")
                c.ContourImageSequence = DicomSequence([image_ref(int(k))])
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = len(xyz)
                c[CONTOUR_DATA] = contour_data_element(xyz)
                contours.append(c)
        rc = Dataset()
        rc.ROIDisplayColor = list(roi.color)
        rc.ReferencedROINumber = number
        if contours:
            rc.ContourSequence = DicomSequence(contours)
        contour_seq.append(rc)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = roi.interpreted_type
        obs.ROIInterpreter = ""
        obs_seq.append(obs)
    ds.StructureSetROISequence = DicomSequence(roi_seq)
    ds.ROIContourSequence = DicomSequence(contour_seq)
    ds.RTROIObservationsSequence = DicomSequence(obs_seq)
    lengths = (c.get_item(CONTOUR_DATA).length for rc in contour_seq for c in rc.get("ContourSequence", []))
    if any(n > MAX_EXPLICIT_LENGTH for n in lengths):
        _to_implicit_vr(ds, contour_seq)
    save_dataset(ds, Path(path))
    return Path(path)


def _to_implicit_vr(ds: Dataset, contour_seq: list[Dataset]) -> None:
    """Switch the file to Implicit VR Little Endian (DICOM's default transfer syntax, 32-bit lengths). A contour of
    more than ~2,400 points does not fit a DS value in explicit VR: pydicom would write it as UN, which planning
    systems, and our own reader, do not take as coordinates."""
    from pydicom.uid import ImplicitVRLittleEndian

    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    for rc in contour_seq:
        for c in rc.get("ContourSequence", []):
            c.set_original_encoding(True, True, "iso8859")
            c[CONTOUR_DATA] = c.get_item(CONTOUR_DATA)._replace(is_implicit_VR=True)  # raw: no DS objects made


def read_rtstruct(path: str | Path) -> RTStruct:
    """Read every ROI's contours (patient mm) and what the structure set references."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, struct.error) as exc:
        raise RTStructError(f"{path}: not a readable DICOM file ({exc})") from exc
    if getattr(ds, "Modality", None) != "RTSTRUCT":
        raise RTStructError(f"{path}: Modality is {getattr(ds, 'Modality', None)!r}, not RTSTRUCT")
    out = RTStruct()
    names = {int(r.ROINumber): str(r.ROIName) for r in getattr(ds, "StructureSetROISequence", [])}
    for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        out.frame_of_reference_uid = str(fr.FrameOfReferenceUID)
        for st in getattr(fr, "RTReferencedStudySequence", []):
            for se in getattr(st, "RTReferencedSeriesSequence", []):
                out.referenced_series_uid = str(se.SeriesInstanceUID)
                for im in getattr(se, "ContourImageSequence", []):
                    out.referenced_sop_uids.add(str(im.ReferencedSOPInstanceUID))
    for rc in getattr(ds, "ROIContourSequence", []):
        name = names.get(int(rc.ReferencedROINumber))
        if name is None:
            raise RTStructError(f"{path}: ROIContourSequence references ROI {rc.ReferencedROINumber}, not defined")
        polys = []
        for k, c in enumerate(getattr(rc, "ContourSequence", [])):
            data = np.asarray([float(v) for v in c.ContourData], dtype=np.float64)
            if data.size % 3:
                raise RTStructError(f"{path}: ROI {name!r} has ContourData not made of (x, y, z) triplets")
            kind = str(getattr(c, "ContourGeometricType", "CLOSED_PLANAR") or "CLOSED_PLANAR")
            if kind == "CLOSED_PLANAR" and data.size // 3 < 3:
                raise RTStructError(
                    f"{path}: ROI {name!r} contour {k + 1} is CLOSED_PLANAR with {data.size // 3} point(s); a closed "
                    "polygon needs at least 3"
                )
            polys.append(data.reshape(-1, 3))
        out.rois[name] = polys
    return out


def rasterize_contours(
    contours: Sequence[np.ndarray], geom: Geometry, name: str = "ROI", tolerance_slices: float = 0.25
) -> np.ndarray:
    """Fill planar contours (patient mm) onto ``geom``'s grid with the even-odd rule (holes stay empty).

    A contour that is not on a slice of the grid (within ``tolerance_slices``) or not planar is an error: it
    means the structure set does not belong to this image.
    """
    from skimage.draw import polygon

    mask = np.zeros(geom.shape_zyx, dtype=bool)
    nz, ny, nx = geom.shape_zyx
    for poly in contours:
        if len(poly) < 3:
            continue
        ijk = geom.patient_to_index(poly)
        k_float = ijk[:, 2]
        k = int(np.round(k_float.mean()))
        if np.abs(k_float - k).max() > tolerance_slices:
            raise RTStructError(
                f"ROI {name!r}: a contour at slice index {k_float.mean():.2f} is not planar or not on a slice of "
                "the image grid"
            )
        if not 0 <= k < nz:
            raise RTStructError(f"ROI {name!r}: a contour lies outside the image (slice index {k})")
        rr, cc = polygon(ijk[:, 1], ijk[:, 0], shape=(ny, nx))
        fill = np.zeros((ny, nx), dtype=bool)
        fill[rr, cc] = True
        mask[k] ^= fill
    return mask
