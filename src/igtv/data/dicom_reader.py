"""Read clinical PET/CT exams: index a folder tree, choose the CT/PET/structure set that belong together, read
image series with geometry checks, SUV from the PET headers, and ROI masks from RTSTRUCT or DICOM SEG.

Every failure is a :class:`DicomInputError` whose message names the file and the problem. Slices are ordered by
their position along the slice normal (never by file name or InstanceNumber); duplicate positions, missing
slices, non-uniform spacing, gantry tilt and mixed orientations or sizes inside one series are errors.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from igtv.geometry import Geometry

log = logging.getLogger(__name__)

SPACING_RTOL = 0.01  # relative deviation of a slice gap from the median gap that is still "uniform"
SPACING_ATOL_MM = 0.02
ORIENTATION_TOL = 1e-3


class DicomInputError(ValueError):
    """A DICOM input that cannot be used; the message names the file(s) and the problem."""


@dataclass
class SeriesInfo:
    """One series of one patient, from the headers only."""

    patient_id: str = field(repr=False)  # identifiers never reach a repr, a log or an error message
    patient_name: str = field(repr=False)
    study_uid: str
    series_uid: str
    modality: str
    frame_of_reference_uid: str
    description: str
    files: list[Path] = field(default_factory=list)
    manufacturer: str = ""
    model: str = ""
    corrected_image: tuple[str, ...] = ()
    referenced_series_uid: str = ""  # RTSTRUCT / SEG: the image series it contours
    roi_names: tuple[str, ...] = ()  # RTSTRUCT ROI names / SEG segment labels

    def label(self) -> str:
        return f"{self.modality} series '{self.description}' ({len(self.files)} files, {self.files[0].parent})"


@dataclass
class ImageSeries:
    """A read image series: values in their physical unit, geometry, and the per-slice SOP Instance UIDs."""

    array: np.ndarray  # float32 [z, y, x]
    geometry: Geometry
    sop_uids: list[str]
    files: list[Path]
    datasets: list  # pydicom datasets (pixel data dropped), sorted like the array
    info: SeriesInfo


@dataclass
class Exam:
    """The CT, PET and (optional) structure set of one patient that belong together."""

    ct: SeriesInfo
    pet: SeriesInfo
    structure: SeriesInfo | None = None


# --- indexing -----------------------------------------------------------------------------------------------------
def _str(ds, keyword: str) -> str:
    v = getattr(ds, keyword, "")
    return "" if v is None else str(v)


def _struct_refs(ds) -> tuple[str, str, tuple[str, ...]]:
    """(frame of reference, referenced series, ROI names) of an RTSTRUCT or SEG."""
    if ds.Modality == "RTSTRUCT":
        ref_series = ""
        for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
            for st in getattr(fr, "RTReferencedStudySequence", []):
                for se in getattr(st, "RTReferencedSeriesSequence", []):
                    ref_series = str(se.SeriesInstanceUID)
        names = tuple(str(r.ROIName) for r in getattr(ds, "StructureSetROISequence", []))
        return _str(ds, "FrameOfReferenceUID"), ref_series, names
    ref_series = ""
    for se in getattr(ds, "ReferencedSeriesSequence", []):
        ref_series = str(se.SeriesInstanceUID)
    names = tuple(str(s.SegmentLabel) for s in getattr(ds, "SegmentSequence", []))
    return _str(ds, "FrameOfReferenceUID"), ref_series, names


def scan_dicom(root: str | Path) -> dict[str, list[SeriesInfo]]:
    """Walk ``root`` and group every DICOM file by PatientID -> series; other files are skipped (only counted)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    series: dict[tuple[str, str], SeriesInfo] = {}
    skipped = 0  # counted, not listed: folder names are often patient names or IDs
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError):
            skipped += 1
            continue
        modality = _str(ds, "Modality").upper()
        if modality not in ("CT", "PT", "RTSTRUCT", "SEG"):
            skipped += 1
            continue
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
            if not _str(ds, keyword):
                raise DicomInputError(f"{path}: missing required tag {keyword}")
        pid = _str(ds, "PatientID")
        key = (pid, _str(ds, "SeriesInstanceUID"))
        info = series.get(key)
        if info is None:
            for_uid, ref, names = _struct_refs(ds) if modality in ("RTSTRUCT", "SEG") else ("", "", ())
            ci = getattr(ds, "CorrectedImage", ())
            info = series[key] = SeriesInfo(
                patient_id=pid,
                patient_name=_str(ds, "PatientName"),
                study_uid=_str(ds, "StudyInstanceUID"),
                series_uid=_str(ds, "SeriesInstanceUID"),
                modality=modality,
                frame_of_reference_uid=for_uid or _str(ds, "FrameOfReferenceUID"),
                description=_str(ds, "SeriesDescription"),
                manufacturer=_str(ds, "Manufacturer"),
                model=_str(ds, "ManufacturerModelName"),
                corrected_image=(ci,) if isinstance(ci, str) else tuple(str(v) for v in ci),
                referenced_series_uid=ref,
                roi_names=names,
            )
        elif info.modality != modality:
            raise DicomInputError(f"{path}: series {info.series_uid} mixes modalities {info.modality} and {modality}")
        info.files.append(path)
    if skipped:
        log.info("%d files under the DICOM root are not CT/PT/RTSTRUCT/SEG DICOM and were skipped", skipped)
    patients: dict[str, list[SeriesInfo]] = defaultdict(list)
    for info in series.values():
        patients[info.patient_id].append(info)
    return dict(patients)


def roi_matches(name: str, roi: str) -> bool:
    """``IGTV`` matches ``IGTV``, ``igtv``, ``IGTV_2``, ``IGTV 3``, ``IGTV-4``; not ``IGTV_ring`` or ``GTV``."""
    return re.fullmatch(rf"{re.escape(roi)}([ _-]?\d+)?", name.strip(), flags=re.IGNORECASE) is not None


def select_exam(series: Sequence[SeriesInfo], roi: str | None = None) -> Exam:
    """Choose the CT the structure set (RTSTRUCT or SEG with an ROI matching ``roi``) references and the PET of
    the same frame of reference. With ``roi=None`` no structure set is needed (prediction). Ambiguity is an error
    that lists the candidates."""
    by_uid = {s.series_uid: s for s in series}
    cts = [s for s in series if s.modality == "CT"]
    pets = [s for s in series if s.modality == "PT"]
    where = series[0].files[0].parent if series else "?"
    if not cts:
        raise DicomInputError(f"{where}: no CT series found")
    structure = None
    if roi is not None:
        structs = [s for s in series if s.modality in ("RTSTRUCT", "SEG")]
        hits = [s for s in structs if any(roi_matches(n, roi) for n in s.roi_names)]
        if not hits:
            found = sorted({n for s in structs for n in s.roi_names})
            raise DicomInputError(
                f"{where}: no RTSTRUCT or SEG has an ROI named like {roi!r}"
                + (f" (ROIs found: {', '.join(found)})" if found else " (no structure set found)")
            )
        if len(hits) > 1:
            listing = "; ".join(f"{s.files[0]} ({s.modality}, '{s.description}')" for s in hits)
            raise DicomInputError(f"ambiguous: {len(hits)} structure sets carry ROI {roi!r}: {listing}")
        structure = hits[0]
        ct = by_uid.get(structure.referenced_series_uid)
        if ct is None or ct.modality != "CT":
            raise DicomInputError(
                f"{structure.files[0]}: the {structure.modality} references image series "
                f"{structure.referenced_series_uid or '(none)'}, which is not a CT series in this folder"
            )
        if structure.frame_of_reference_uid and structure.frame_of_reference_uid != ct.frame_of_reference_uid:
            raise DicomInputError(
                f"{structure.files[0]}: the {structure.modality} is in frame of reference "
                f"{structure.frame_of_reference_uid}, its CT in {ct.frame_of_reference_uid}"
            )
    elif len(cts) > 1:
        raise DicomInputError(f"ambiguous: {len(cts)} CT series: " + "; ".join(s.label() for s in cts))
    else:
        ct = cts[0]
    if not pets:
        raise DicomInputError(f"{ct.files[0].parent}: no PET (PT) series found for this patient")
    same_for = [p for p in pets if p.frame_of_reference_uid == ct.frame_of_reference_uid]
    if not same_for:
        raise DicomInputError(
            f"{pets[0].files[0]}: the PET and CT do not share a frame of reference "
            f"(PET {pets[0].frame_of_reference_uid}, CT {ct.frame_of_reference_uid}); register them first"
        )
    if len(same_for) > 1:
        corrected = [p for p in same_for if "ATTN" in p.corrected_image]
        same_for = corrected if corrected else same_for
    if len(same_for) > 1:
        raise DicomInputError(
            f"ambiguous: {len(same_for)} attenuation-corrected PET series share the CT's frame of reference: "
            + "; ".join(s.label() for s in same_for)
        )
    return Exam(ct=ct, pet=same_for[0], structure=structure)


# --- image series -------------------------------------------------------------------------------------------------
def _vec(ds, keyword: str, n: int, path: Path) -> np.ndarray:
    v = getattr(ds, keyword, None)
    if v is None or len(v) != n:
        raise DicomInputError(f"{path}: missing or malformed {keyword}")
    return np.asarray([float(x) for x in v], dtype=np.float64)


def slice_geometry(datasets: Sequence, paths: Sequence[Path]) -> tuple[list[int], Geometry]:
    """Order of the slices along the slice normal and the series geometry; every irregularity is an error."""
    if not datasets:
        raise DicomInputError("empty series")
    p0 = paths[0]
    iop0 = _vec(datasets[0], "ImageOrientationPatient", 6, p0)
    ps0 = _vec(datasets[0], "PixelSpacing", 2, p0)
    size0 = (int(datasets[0].Rows), int(datasets[0].Columns))
    for ds, path in zip(datasets, paths, strict=True):
        if not np.allclose(_vec(ds, "ImageOrientationPatient", 6, path), iop0, atol=ORIENTATION_TOL):
            raise DicomInputError(
                f"{path}: mixed orientations in one series (ImageOrientationPatient differs from {p0})"
            )
        if not np.allclose(_vec(ds, "PixelSpacing", 2, path), ps0, rtol=1e-4):
            raise DicomInputError(f"{path}: PixelSpacing differs from {p0} in the same series")
        if (int(ds.Rows), int(ds.Columns)) != size0:
            raise DicomInputError(f"{path}: image size differs from {p0} in the same series")
        tilt = getattr(ds, "GantryDetectorTilt", None)
        if tilt not in (None, "") and abs(float(tilt)) > 1e-3:
            raise DicomInputError(f"{path}: gantry tilt of {float(tilt):g} degrees is not supported; resample first")
    row, col = iop0[:3], iop0[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise DicomInputError(f"{p0}: ImageOrientationPatient is not two orthonormal directions")
    normal = np.cross(row, col)
    ipp = np.stack([_vec(ds, "ImagePositionPatient", 3, p) for ds, p in zip(datasets, paths, strict=True)])
    s = ipp @ normal
    order = [int(i) for i in np.argsort(s, kind="stable")]
    s_sorted, ipp_sorted = s[order], ipp[order]
    if len(order) > 1:
        gaps = np.diff(s_sorted)
        dup = np.nonzero(gaps < 0.01)[0]
        if dup.size:
            i = dup[0]
            raise DicomInputError(
                f"{paths[order[i]]} and {paths[order[i + 1]]}: duplicate slice position {s_sorted[i]:.2f} mm"
            )
        inplane = ipp_sorted - s_sorted[:, None] * normal[None, :]
        if np.abs(inplane - inplane[0]).max() > 0.1:
            raise DicomInputError(
                f"{p0}: slice positions are not along the slice normal (gantry tilt or sheared stack); resample first"
            )
        dz = float(np.median(gaps))
        bad = np.nonzero(np.abs(gaps - dz) > max(SPACING_RTOL * dz, SPACING_ATOL_MM))[0]
        if bad.size:
            i = bad[0]
            a, b = paths[order[i]], paths[order[i + 1]]
            ratio = gaps[i] / dz
            if abs(ratio - round(ratio)) < 0.05 and round(ratio) >= 2:
                raise DicomInputError(
                    f"{a} -> {b}: {round(ratio) - 1} missing slice(s) (gap {gaps[i]:.2f} mm, spacing {dz:.2f} mm)"
                )
            raise DicomInputError(
                f"{a} -> {b}: non-uniform slice spacing (gap {gaps[i]:.3f} mm, median {dz:.3f} mm); resample first"
            )
    else:
        dz = float(getattr(datasets[0], "SliceThickness", 0) or 1.0)
    direction = np.stack([row, col, normal], axis=1)  # columns: x (column), y (row), z (slice) directions
    geom = Geometry(
        (len(order), size0[0], size0[1]),
        (float(ps0[1]), float(ps0[0]), dz),
        tuple(ipp_sorted[0]),
        tuple(direction.reshape(-1)),
    )
    return order, geom


def read_image_series(info: SeriesInfo) -> ImageSeries:
    """Read every file of an image series, ordered along the normal, with the modality LUT applied (float32)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    datasets, arrays = [], []
    for path in info.files:
        try:
            ds = pydicom.dcmread(path)
            raw = ds.pixel_array
        except (InvalidDicomError, OSError, EOFError, ValueError, AttributeError) as exc:
            raise DicomInputError(f"{path}: cannot read the image (truncated or corrupt file: {exc})") from exc
        if raw.ndim != 2:
            raise DicomInputError(f"{path}: multi-frame images are not supported (pixel array {raw.shape})")
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        arrays.append(raw.astype(np.float32) * np.float32(slope) + np.float32(intercept))
        del ds.PixelData
        datasets.append(ds)
    order, geom = slice_geometry(datasets, info.files)
    return ImageSeries(
        array=np.stack([arrays[i] for i in order]),
        geometry=geom,
        sop_uids=[str(datasets[i].SOPInstanceUID) for i in order],
        files=[info.files[i] for i in order],
        datasets=[datasets[i] for i in order],
        info=info,
    )


def read_pet_suv(info: SeriesInfo, suv_type: str = "bw"):
    """PET series -> (SUV float32 [z, y, x] on the PET grid, geometry, :class:`~igtv.data.suv.SuvScale`).

    ``suv_type``: the normalisation (``bw``, ``lbm``, ``lbmjames128``, ``lbmjanma``, ``bsa``, ``ibw``).
    """
    from igtv.data.suv import SuvError, pet_header, suv_scale

    pet = read_image_series(info)
    try:
        headers = [pet_header(ds, str(p)) for ds, p in zip(pet.datasets, pet.files, strict=True)]
        scale = suv_scale(headers, suv_type)
    except SuvError as exc:
        raise DicomInputError(str(exc)) from exc
    suv = pet.array * scale.factors.astype(np.float32)[:, None, None]
    return suv, pet.geometry, scale


# --- masks --------------------------------------------------------------------------------------------------------
def structure_series(path: str | Path) -> SeriesInfo:
    """The :class:`SeriesInfo` of one RTSTRUCT or SEG file given directly (e.g. a reference contour to compare)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise DicomInputError(f"{path}: not a readable DICOM file ({exc})") from exc
    modality = _str(ds, "Modality").upper()
    if modality not in ("RTSTRUCT", "SEG"):
        raise DicomInputError(f"{path}: Modality is {modality or 'missing'}, not RTSTRUCT or SEG")
    for_uid, ref, names = _struct_refs(ds)
    return SeriesInfo(
        patient_id=_str(ds, "PatientID"),
        patient_name=_str(ds, "PatientName"),
        study_uid=_str(ds, "StudyInstanceUID"),
        series_uid=_str(ds, "SeriesInstanceUID"),
        modality=modality,
        frame_of_reference_uid=for_uid,
        description=_str(ds, "SeriesDescription"),
        files=[path],
        referenced_series_uid=ref,
        roi_names=names,
    )


def read_roi_masks(structure: SeriesInfo, ct: ImageSeries, roi: str) -> dict[str, np.ndarray]:
    """Masks on the CT grid of every ROI whose name matches ``roi``, from an RTSTRUCT or a SEG."""
    if structure.modality == "SEG":
        return _seg_masks(structure, ct, roi)
    from igtv.data.rtstruct import RTStructError, rasterize_contours, read_rtstruct

    path = structure.files[0]
    if len(structure.files) > 1:
        raise DicomInputError(f"{path}: RTSTRUCT series with {len(structure.files)} files; expected one")
    try:
        rs = read_rtstruct(path)
        if rs.frame_of_reference_uid and rs.frame_of_reference_uid != ct.info.frame_of_reference_uid:
            raise DicomInputError(
                f"{path}: RTSTRUCT frame of reference {rs.frame_of_reference_uid} differs from the CT's "
                f"{ct.info.frame_of_reference_uid}"
            )
        unknown = rs.referenced_sop_uids - set(ct.sop_uids)
        if unknown:
            raise DicomInputError(f"{path}: RTSTRUCT references {len(unknown)} images that are not in the CT series")
        return {
            name: rasterize_contours(contours, ct.geometry, name)
            for name, contours in rs.rois.items()
            if roi_matches(name, roi)
        }
    except RTStructError as exc:
        raise DicomInputError(f"{path}: {exc}") from exc


def _seg_masks(structure: SeriesInfo, ct: ImageSeries, roi: str) -> dict[str, np.ndarray]:
    import highdicom as hd

    path = structure.files[0]
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # highdicom raises a variety of errors on malformed objects
        raise DicomInputError(f"{path}: cannot read DICOM SEG ({exc})") from exc
    out = {}
    for number in seg.segment_numbers:
        label = str(seg.get_segment_description(number).segment_label)
        if not roi_matches(label, roi):
            continue
        try:
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=ct.sop_uids,
                segment_numbers=[number],
                assert_missing_frames_are_empty=True,
                combine_segments=False,
            )
        except (ValueError, KeyError, RuntimeError) as exc:
            raise DicomInputError(f"{path}: segment {label!r} cannot be mapped onto the CT slices ({exc})") from exc
        out[label] = np.asarray(pixels[..., 0] > 0)
    return out


def iter_patient_series(root: str | Path) -> Iterable[tuple[str, list[SeriesInfo]]]:
    """(PatientID, series) pairs of ``root``, sorted by PatientID."""
    patients = scan_dicom(root)
    for pid in sorted(patients):
        yield pid, patients[pid]


def export_suv(pet_dir: str | Path, out: str | Path, suv_type: str = "bw"):
    """``igtv suv``: the single PET series under ``pet_dir`` -> SUV NIfTI of ``suv_type`` on the PET grid.

    Returns the :class:`~igtv.data.suv.SuvScale` (factor, rule and notes). Nothing is written when SUV fails.
    """
    from igtv.geometry import save_nifti

    series = [s for ss in scan_dicom(pet_dir).values() for s in ss if s.modality == "PT"]
    if not series:
        raise DicomInputError(f"{pet_dir}: no PET (PT) DICOM files found")
    if len(series) > 1:
        raise DicomInputError(
            f"{pet_dir}: {len(series)} PET series found; point at one: " + "; ".join(s.label() for s in series)
        )
    suv, geom, scale = read_pet_suv(series[0], suv_type)
    save_nifti(out, suv.astype(np.float32), geom)
    return scale
