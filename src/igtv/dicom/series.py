"""Read image series with geometry checks, and the PET in SUV.

Slices are ordered by their position along the slice normal (never by file name or InstanceNumber); duplicate
positions, missing slices, non-uniform spacing, gantry tilt and mixed orientations or sizes inside one series are
errors (:class:`~igtv.dicom.index.DicomInputError`, naming the file).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igtv.dicom.index import DicomInputError, SeriesInfo, scan_dicom
from igtv.geometry import Geometry

SPACING_RTOL = 0.01  # relative deviation of a slice gap from the median gap that is still "uniform"

SPACING_ATOL_MM = 0.02

ORIENTATION_TOL = 1e-3
NEGATIVE_SUV_TOLERANCE = -1.0  # SUV: small negatives (FBP undershoot, noise) are clipped to 0; below this, an error


@dataclass
class ImageSeries:
    """A read image series: values in their physical unit, geometry, and the per-slice SOP Instance UIDs."""

    array: np.ndarray  # float32 [z, y, x]
    geometry: Geometry
    sop_uids: list[str]
    files: list[Path]
    datasets: list  # pydicom datasets (pixel data dropped), sorted like the array
    info: SeriesInfo


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
        except (InvalidDicomError, OSError, EOFError, ValueError, AttributeError, struct.error) as exc:
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
    """PET series -> (SUV float32 [z, y, x] on the PET grid, geometry, :class:`~igtv.dicom.suv.SuvScale`).

    ``suv_type``: the normalisation (``bw``, ``lbm``, ``lbmjames128``, ``lbmjanma``, ``bsa``, ``ibw``).
    """
    from igtv.dicom.pet_header import SuvError, pet_header
    from igtv.dicom.suv import suv_scale

    pet = read_image_series(info)
    try:
        headers = [pet_header(ds, str(p)) for ds, p in zip(pet.datasets, pet.files, strict=True)]
        scale = suv_scale(headers, suv_type)
    except SuvError as exc:
        raise DicomInputError(str(exc)) from exc
    suv = pet.array * scale.factors.astype(np.float32)[:, None, None]
    if not np.isfinite(suv).all():
        raise DicomInputError(f"{info.files[0].parent}: the PET holds non-finite values after rescaling")
    low = float(suv.min())
    if low < NEGATIVE_SUV_TOLERANCE:  # reconstruction undershoot is small; large negatives are a wrong rescale
        raise DicomInputError(
            f"{info.files[0].parent}: PET values down to SUV {low:.2f} (below {NEGATIVE_SUV_TOLERANCE:g}): check "
            "RescaleSlope/RescaleIntercept"
        )
    return np.maximum(suv, 0.0), pet.geometry, scale


def export_suv(pet_dir: str | Path, out: str | Path, suv_type: str = "bw"):
    """``igtv suv``: the single PET series under ``pet_dir`` -> SUV NIfTI of ``suv_type`` on the PET grid.

    Returns the :class:`~igtv.dicom.suv.SuvScale` (factor, rule and notes). Nothing is written when SUV fails.
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
