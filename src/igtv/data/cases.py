"""Prepared patients as :class:`~igtv.data.sampling.VolumeCase` s: read from ``volumes/<P>/*.nii.gz``, resampled
in-plane, cached per process, a split's patients read in threads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from igtv.data.sampling import VolumeCase, build_case
from igtv.parallel import map_jobs

_CACHE: dict[tuple[str, float, float], VolumeCase] = {}
_CACHE_LOCK = threading.Lock()
CACHE_CASES = 128  # cases kept in memory per process (runs of one table share them); ~40 MB each at 2 mm
LOAD_THREADS = min(8, os.cpu_count() or 1)  # reading, resampling and labelling a case release the GIL


def load_case(volume_dir: str | Path, target_mm: float) -> VolumeCase:
    """A prepared patient's ``{ct_hu,pet_suv,labels}.nii.gz`` (every labelled ROI is target) at ``target_mm``, with
    ``avoid.nii.gz`` (structures the contour must leave out, which the sampler can show as negatives) if present.

    Cases are cached per process by (folder, spacing, labels file time), so the runs of one Table II or demo
    read each patient once. Safe to call from several threads."""
    d = Path(volume_dir)
    labels_file = d / "labels.nii.gz"
    key = (str(d.resolve()), float(target_mm), labels_file.stat().st_mtime if labels_file.exists() else 0.0)
    with _CACHE_LOCK:
        case = _CACHE.get(key)
    if case is None:
        case = _load_case(d, target_mm)
        with _CACHE_LOCK:
            if len(_CACHE) >= CACHE_CASES:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = case
    return case


def _load_case(d: Path, target_mm: float) -> VolumeCase:
    from igtv.geometry import load_nifti

    for f in ("ct_hu.nii.gz", "pet_suv.nii.gz", "labels.nii.gz"):
        if not (d / f).exists():
            raise FileNotFoundError(f"{d / f}: missing (run igtv prepare with volumes; PNG-only datasets such as "
                                    "PCLT20K train with data.sampler: slices)")  # fmt: skip
    ct, geom = load_nifti(d / "ct_hu.nii.gz")
    pet, _ = load_nifti(d / "pet_suv.nii.gz")
    labels, _ = load_nifti(d / "labels.nii.gz")
    if ct.shape != pet.shape or ct.shape != labels.shape:
        raise ValueError(f"{d}: ct_hu {ct.shape}, pet_suv {pet.shape} and labels {labels.shape} differ")
    return build_case(d.name, ct, pet, labels > 0, tuple(geom.spacing_mm[::-1]), target_mm, load_avoid(d, ct.shape))


def load_avoid(volume_dir: Path, shape_zyx: tuple[int, ...]):
    """``avoid.nii.gz`` of a prepared patient (structures the contour must leave out: the phantom's nodes) as a bool
    array, or None without the file; refused, naming the file, when its shape is not the CT's."""
    from igtv.geometry import load_nifti

    f = Path(volume_dir) / "avoid.nii.gz"
    if not f.exists():
        return None
    avoid = load_nifti(f)[0] > 0
    if avoid.shape != tuple(shape_zyx):
        raise ValueError(f"{f}: shape {avoid.shape} differs from ct_hu {tuple(shape_zyx)}")
    return avoid


def split_patients(root: str | Path, split: str, val_fraction: float = 0.15, seed: int = 0) -> list[str]:
    """Patient folders of a split of a prepared dataset (the same patient-level split as the slice datasets)."""
    from igtv.data.datasets import split_items

    return sorted({r.folder for r in split_items(root, split, val_fraction, seed)})


def load_split_cases(
    root: str | Path, split: str, target_mm: float, val_fraction: float = 0.15, seed: int = 0, threads: int = 0
) -> list[VolumeCase]:
    """The cases of a split, in its order, read in ``threads`` threads (0: LOAD_THREADS; the same cases as one by
    one, about twice as fast on 2 cores)."""
    root = Path(root)
    dirs = [root / "volumes" / n for n in split_patients(root, split, val_fraction, seed)]
    return map_jobs(
        lambda d: load_case(d, target_mm), dirs, threads or LOAD_THREADS, "cases", progress=False, threads=True
    )
