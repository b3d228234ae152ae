"""Structure sets to masks: ROI masks on the CT grid from an RTSTRUCT or a DICOM SEG."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from igtv.dicom.index import DicomInputError, SeriesInfo, _str, _struct_refs, roi_matches
from igtv.dicom.series import ImageSeries


def structure_series(path: str | Path) -> SeriesInfo:
    """The :class:`SeriesInfo` of one RTSTRUCT or SEG file given directly (e.g. a reference contour to compare)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, struct.error) as exc:
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
    from igtv.dicom.rtstruct import RTStructError, rasterize_contours, read_rtstruct

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
        raise DicomInputError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from exc


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
