"""Identifier scans for the privacy tests: no patient name, ID or birth date in any output but the RTSTRUCT."""

from __future__ import annotations

import gzip
from pathlib import Path

import pydicom


def phantom_identifiers(*cohort_dirs: Path) -> list[str]:
    """PatientName, its parts, PatientID and PatientBirthDate of every phantom patient under ``cohort_dirs``."""
    found = set()
    for root in cohort_dirs:
        for patient in sorted(Path(root).glob("*/dicom")):
            ds = pydicom.dcmread(next(iter(sorted((patient / "CT").iterdir()))), stop_before_pixels=True)
            name = str(ds.PatientName)
            found |= {name, name.replace("^", " "), str(ds.PatientID), str(ds.PatientBirthDate)}
    found = {s for s in found if len(s) >= 8}
    assert found, f"no phantom patients under {cohort_dirs}"
    return sorted(found)


def identifier_hits(root: Path, identifiers: list[str], skip_parts: tuple[str, ...] = ("dicom",)) -> list[str]:
    """Files under ``root`` (NIfTI and other .gz unpacked; PNG, TensorBoard events and checkpoints as bytes)
    holding an identifier. Skipped: folders named in ``skip_parts`` (the phantom's own DICOM input) and the
    RTSTRUCTs igtv writes, whose patient module carries them on purpose."""
    hits = []
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).parts
        if not p.is_file() or any(part in skip_parts for part in rel[:-1]) or p.name.startswith("RTSTRUCT"):
            continue
        data = p.read_bytes()
        if p.suffix == ".gz":
            data = gzip.decompress(data)
        hits += [f"{p}: {s}" for s in identifiers if s.encode() in data or s.encode("utf-16-le") in data]
    return hits
