"""Index a DICOM tree and pick the exam: the CT, PET and structure set of one patient that belong together.

Every failure is a :class:`DicomInputError` whose message names the file and the problem.
"""

from __future__ import annotations

import logging
import re
import struct
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


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
class Exam:
    """The CT, PET and (optional) structure set of one patient that belong together."""

    ct: SeriesInfo
    pet: SeriesInfo
    structure: SeriesInfo | None = None


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
        except (InvalidDicomError, OSError, EOFError, ValueError, struct.error):  # struct: a cut element header
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
