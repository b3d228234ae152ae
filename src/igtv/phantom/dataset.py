"""Phantom cohorts written straight as a prepared dataset (``igtv prepare``'s layout), with no DICOM in between.

For pre-training data (``igtv phantom --prepared``, the synthetic stage-1 cache of ``igtv train``, the quick Table
II's cohorts): the DICOM export and the ``prepare`` pass that reads it back cost about 2 and 2.7 s per 512 px patient
on one core, on top of ~2.4 s of simulation (``igtv bench --sections phantom``). Here each simulated patient goes
through the same :func:`igtv.data.prepare.prepare_arrays` that ``igtv prepare`` ends with: the same QC, PNGs,
volumes, tables and split, and the same pseudonyms (the PatientID its DICOM would carry, keyed with the phantom
key), so a dataset made here has the layout, folders and split of one prepared from the DICOM. It costs ~2.8 s
on top of the simulation, most of it the gzip of the NIfTI volumes (5.2 against 7.1 s per patient in all), with
ITK's zlib; ISA-L's deflate (``isal`` installed, :func:`igtv.geometry.save_nifti`) took a third off the quick
Table II's data stage in session 59.

One addition: ``volumes/<P>/avoid.nii.gz``, the patient's lymph nodes (:func:`node_mask`), which the DICOM route
has no contour for. The patch sampler can centre negatives on their avid parts (``data.avoid_fraction``): avid
hilar nodes were 26 of the 28 false lesions located in session 45, and a cohort holds few of them.

Two differences from the DICOM route, both small: the masks are the exact label maps (the DICOM route rasterises
the RTSTRUCT's contours of them), and the PET is the simulated SUV (the DICOM route stores it as integer Bq/ml
with a rescale slope, and converts back).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from igtv.data.prepare import PatientArrays, PrepareConfig, PrepareResult
from igtv.phantom.config import PHANTOM_PSEUDONYM_KEY, PhantomConfig

log = logging.getLogger(__name__)


def phantom_arrays(p, roi: str) -> PatientArrays:
    """A simulated patient as ``prepare_arrays`` takes it: ROIs named as in its RTSTRUCT, those matching ``roi``."""
    from igtv.dicom.index import roi_matches
    from igtv.geometry import resample_to
    from igtv.phantom.cohort import roi_names

    masks = {}
    for k in range(1, len(p.lesions) + 1):
        for name, lab in zip(roi_names(k), (p.gtv, p.igtv), strict=True):
            if roi_matches(name, roi):
                masks[name] = lab == k
    return PatientArrays(
        ct_hu=p.ct_hu,
        geometry=p.ct_geom,
        pet_on_ct=resample_to(p.pet_suv, p.pet_geom, p.ct_geom, order=1),
        pet_geometry=p.pet_geom,
        masks=masks,
        suv={"kind": "phantom", "rule": "simulated SUV (no DICOM)", "notes": [], "factor": 1.0},
        manufacturer=p.scanner["manufacturer"],
        model=p.scanner["model"],
        structure_modality="",
    )


def node_mask(p, margin_mm: float = 3.0) -> np.ndarray:
    """The lymph nodes of simulated patient ``p`` on its CT grid (bool [z, y, x]), avid or not: the voxels its
    anatomy labels as a node (where vessels or airways leave it room), grown by ``margin_mm`` (the PET's blur)."""
    from scipy.ndimage import distance_transform_edt

    from igtv.phantom.anatomy import labels

    x, y, z = p.ct_geom.axis_coordinates_mm()
    off = np.asarray(p.offset_mm)
    xa, ya, za = x - off[0], y - off[1], z - off[2]  # anatomical frame, as the simulation labels it
    out = np.zeros(p.ct_geom.shape_zyx, dtype=bool)
    for nd in p.anatomy.nodes:
        reach = np.asarray(nd.radii) + 2.0 * margin_mm
        boxes = [
            np.flatnonzero(np.abs(a.ravel() - c) <= r) for a, c, r in zip((xa, ya, za), nd.centre, reach, strict=True)
        ]
        if any(len(b) == 0 for b in boxes):
            continue  # outside the scanned volume
        bx, by, bz = (slice(b[0], b[-1] + 1) for b in boxes)
        node = labels(p.anatomy, xa[..., bx], ya[:, by, :], za[bz]) == nd.label  # (z, y, x) in the box
        if node.any():
            sx, sy, sz = p.ct_geom.spacing_mm
            out[bz, by, bx] |= distance_transform_edt(~node, sampling=(sz, sy, sx)) <= margin_mm
    return out


def _one(args: tuple[PhantomConfig, PrepareConfig, int, str, str]) -> dict:
    from igtv.data.prepare import prepare_arrays
    from igtv.geometry import save_nifti
    from igtv.phantom.patient import simulate_patient

    cfg, prep, index, out, pseudo = args
    t0 = time.perf_counter()
    p = simulate_patient(cfg, index)
    if prep.write_volumes:  # before the record, which marks the patient done
        save_nifti(Path(out) / "volumes" / pseudo / "avoid.nii.gz", node_mask(p), p.ct_geom)
    return prepare_arrays(phantom_arrays(p, prep.roi), prep, Path(out), pseudo, t0)


def write_prepared_cohort(
    cfg: PhantomConfig, out_dir: str | Path, prep: PrepareConfig, progress: bool = True
) -> PrepareResult:
    """Simulate (or complete) the cohort ``cfg`` into a prepared dataset in ``out_dir``; resumable like
    ``igtv prepare`` (a patient with ``patients/<P>.json`` is done). ``cfg.workers`` processes."""
    from igtv.config import claim_config
    from igtv.data.prepare import close_dataset, open_dataset
    from igtv.parallel import map_jobs
    from igtv.phantom.cohort import patient_folder, patient_id

    out = Path(out_dir)
    t0 = time.perf_counter()
    ids = [patient_id(patient_folder(cfg.cohort, i)) for i in range(cfg.patients)]
    pseudo_of, records = open_dataset(out, prep, ids, PHANTOM_PSEUDONYM_KEY)
    saved = out / "phantom.yaml"
    claim_config(cfg, saved, f"{out} already holds a dataset made with other settings ({saved}); choose another "
                             "output folder or delete it")  # fmt: skip
    jobs = [(cfg, prep, i, str(out), pseudo_of[pid]) for i, pid in enumerate(ids) if pseudo_of[pid] not in records]
    for rec in map_jobs(_one, jobs, cfg.workers, f"phantom {cfg.cohort} (prepared)", "patient", progress):
        records[rec["patient"]] = rec
    result = close_dataset(out, records, [], prep, pseudo_of, t0, len(jobs), "igtv phantom --prepared (no DICOM)")
    log.info("prepared phantom cohort %s: %d simulated, %d already there in %.1f s", out, result.processed,
             result.skipped, result.seconds)  # fmt: skip
    return result
