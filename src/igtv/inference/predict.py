"""``igtv predict``: a new patient's PET/CT DICOM -> RTSTRUCT, NIfTI, statistics and an HTML report.

Reads the CT and the PET of one patient (no structure set needed), computes SUV, resamples the PET onto the CT,
predicts every CT slice with the model's 2D or 2.5D input and its training windows (:mod:`igtv.inference.predictor`),
reassembles a 3D probability map and mask on the CT grid, cleans it (:mod:`igtv.inference.lesions`), writes to ``OUT``::

    RTSTRUCT_igtv.dcm   the ROI as closed planar contours on every contoured CT image (patient coordinates)
    mask.nii.gz         uint8 mask on the CT grid
    probability.nii.gz  uint8 foreground probability x 255 on the CT grid
    pet_suv.nii.gz      float32 SUV resampled onto the CT grid
    stats.json          per lesion MTV, SUVmax/mean/peak, TLG, centroid, slices (+ --compare metrics), seconds per step
    report.html         self-contained visual report

Everything is validated and computed before ``OUT`` is touched; the files are then written into a staging folder
beside ``OUT`` and moved in one by one, so a failure leaves ``OUT`` as it was. Only the RTSTRUCT carries the
CT's patient and study identifiers (a planning system matches on them); nothing else written or logged does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from igtv.inference.lesions import PostprocessConfig
from igtv.inference.sliding import DEFAULT_OVERLAP

log = logging.getLogger(__name__)

CANDIDATE_MARGIN_MM = 20.0  # slices predicted beyond a PET candidate's extent (IGTV covers breathing motion)


@dataclass
class PredictResult:
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """A staging folder beside ``out``; on failure it is removed and ``out`` is left untouched. On success a new
    (or empty) ``out`` is the staging folder renamed, all at once; into an ``out`` that holds files (a re-run)
    the files are moved one by one, each rename atomic."""
    out = Path(out)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        yield stage
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if not out.exists():
            os.replace(stage, out)
        else:
            for f in sorted(stage.iterdir()):
                os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _read_exam(dicom_dir: Path):
    from igtv.dicom.index import DicomInputError, scan_dicom, select_exam
    from igtv.dicom.series import read_image_series, read_pet_suv
    from igtv.geometry import resample_to

    patients = scan_dicom(dicom_dir)
    if not patients:
        raise DicomInputError(f"{dicom_dir}: no CT or PET DICOM files found")
    if len(patients) > 1:
        raise DicomInputError(f"{dicom_dir}: holds {len(patients)} patients; point --dicom at one patient's folder")
    series = next(iter(patients.values()))
    exam = select_exam(series, roi=None)
    ct = read_image_series(exam.ct)
    pet_suv, pet_geom, scale = read_pet_suv(exam.pet)
    pet_on_ct = resample_to(pet_suv, pet_geom, ct.geometry, order=1).astype(np.float32)
    return ct, pet_on_ct, scale


def candidate_passes(
    lm, pet_suv: np.ndarray, spacing_mm: tuple[float, float, float]
) -> tuple[np.ndarray, list[tuple[list[int], float, int]], list[dict]]:
    """LUCID windows on a new patient: the candidate map, one pass per FDG-avid candidate (its slices +-
    ``CANDIDATE_MARGIN_MM``, its SUVmax as the PET reference, its label) and a record of each candidate."""
    from igtv.geometry import Geometry
    from igtv.inference.predictor import pet_references

    nz = pet_suv.shape[0]
    geom = Geometry(pet_suv.shape, spacing_mm, (0.0, 0.0, 0.0))
    labels, refs = pet_references(pet_suv, geom, min_suv_max=max(lm.min_suv_max, 2.5))
    margin = math.ceil(CANDIDATE_MARGIN_MM / spacing_mm[2])
    passes, records = [], []
    for r in refs:
        zs = list(range(max(r.z_lo - margin, 0), min(r.z_hi + margin, nz - 1) + 1))
        passes.append((zs, r.suv_max, r.label))
        records.append({"suv_max": round(r.suv_max, 3), "volume_cc": round(r.volume_cc, 3), "slices": len(zs)})
    return labels, passes, records


def predict_volume(
    lm,
    ct_hu: np.ndarray,
    pet_suv: np.ndarray,
    spacing_mm: tuple[float, float, float],
    device: torch.device,
    tta: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    overlap: float = DEFAULT_OVERLAP,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """uint8 probability ``[z, y, x]`` (x 255) of arrays already in head-first axial orientation, and the PET
    candidates tried (LUCID windows) as records. ``overlap``: of the sliding-window tiles (patch models).
    ``region`` (boolean, CT grid; patch models only): predict only the tiles that overlap it (see
    :func:`predict_volume_patches`)."""
    from tqdm import tqdm

    from igtv.evaluation.metrics import label_lesions
    from igtv.inference.predictor import (
        predict_slices,
        to_native,
        window_inputs,
        window_pet,
    )

    if lm.patch > 0:
        return predict_volume_patches(
            lm, ct_hu, pet_suv, spacing_mm, device, tta, batch_size, progress, overlap, region
        )
    nz, ny, nx = ct_hu.shape
    ct_u8 = window_inputs(ct_hu, lm.preset, lm.size)
    prob = np.zeros(ct_hu.shape, dtype=np.uint8)
    passes: list[tuple[range, float | None, int]] = []  # (slices, reference SUV, candidate label or 0)
    candidates: list[dict] = []
    labels = None
    if lm.preset == "pclt20k":
        passes.append((range(nz), None, 0))
    else:
        labels, cand_passes, candidates = candidate_passes(lm, pet_suv, spacing_mm)
        passes += [(range(zs[0], zs[-1] + 1), ref, lab) for zs, ref, lab in cand_passes]
    total = sum(len(p[0]) for p in passes)
    bar = tqdm(total=total, unit="slice", desc="predict", disable=not progress)
    threshold_u8 = lm.threshold * 255.0
    for i, (zs, reference, label) in enumerate(passes):
        lo, hi = zs.start, zs.stop - 1
        pet_u8 = np.zeros_like(ct_u8)
        ext = slice(max(lo - 1, 0), min(hi + 1, nz - 1) + 1)  # 2.5D neighbours of the edge slices
        pet_u8[ext] = window_pet(pet_suv[ext], lm.preset, lm.size, reference)
        p_model = predict_slices(
            lm.model,
            ct_u8,
            pet_u8,
            list(zs),
            lm.input_slices,
            device,
            batch_size,
            tta,
            progress=bar.update,
            precision=lm.precision,
        )
        p_u8 = to_native(p_model, (ny, nx))
        if label:  # keep only the predicted components that overlap this candidate
            comp, _ = label_lesions(p_u8 >= threshold_u8)
            hits = np.unique(comp[(labels[lo : hi + 1] == label) & (comp > 0)])
            p_u8 = np.where(np.isin(comp, hits), p_u8, 0).astype(np.uint8)
            candidates[i]["kept_components"] = int(hits.size)
        prob[lo : hi + 1] = np.maximum(prob[lo : hi + 1], p_u8)
    bar.close()
    return prob, candidates


def predict_volume_patches(
    lm,
    ct_hu: np.ndarray,
    pet_suv: np.ndarray,
    spacing_mm: tuple[float, float, float],
    device: torch.device,
    tta: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    overlap: float = DEFAULT_OVERLAP,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Sliding-window prediction of a patch-trained model (:mod:`igtv.inference.sliding`) at the pixel size it was
    trained on; returns the uint8 probability on the CT grid and the PET candidates tried (LUCID windows).

    Every slice that holds body (CT > -400 HU) is predicted, with tiles that overlap the body, or, with ``region``
    (boolean, CT grid), only the tiles that overlap body and region: ``predict`` passes the thorax region of its
    post-processing, which drops every component that does not touch it, so tiles farther from it only cost time.
    Inside the region the probabilities are unchanged (every tile covering a region voxel overlaps the region and
    is predicted); outside it they may differ where fewer tiles overlap. With the LUCID
    windows, each PET candidate is a pass over its slices +- ``CANDIDATE_MARGIN_MM``, its PET divided by its SUVmax,
    keeping the predicted components that overlap it (as for whole-slice models).
    """
    from tqdm import tqdm

    from igtv.data.sampling import AIR_HU, BODY_HU, resample_inplane, resample_to_shape, window_patch
    from igtv.evaluation.metrics import label_lesions
    from igtv.inference.predictor import forward_probabilities, stack_indices
    from igtv.inference.sliding import pad_to, sliding_window

    nz, ny, nx = ct_hu.shape
    sp_yx = (float(spacing_mm[1]), float(spacing_mm[0]))
    ct_r, _ = pad_to(resample_inplane(ct_hu, sp_yx, lm.spacing_mm), lm.patch, AIR_HU)
    pet_r, _ = pad_to(resample_inplane(pet_suv, sp_yx, lm.spacing_mm), lm.patch, 0.0)
    ry, rx = resample_inplane(ct_hu[:1], sp_yx, lm.spacing_mm).shape[1:]
    body = ct_r > BODY_HU
    if region is not None:  # area fraction > 0: a pixel that holds any region counts
        body &= pad_to(resample_inplane(region.astype(np.float32), sp_yx, lm.spacing_mm), lm.patch, 0.0)[0] > 0
    body_slices = [z for z in range(nz) if body[z].any()]
    passes: list[tuple[list[int], float | None, int]] = []
    candidates: list[dict] = []
    labels = None
    if lm.preset == "pclt20k":
        passes.append((body_slices, None, 0))
    else:
        labels, cand_passes, candidates = candidate_passes(lm, pet_suv, spacing_mm)
        passes += [([z for z in zs if body[z].any()], ref, lab) for zs, ref, lab in cand_passes]

    def forward(x: np.ndarray) -> np.ndarray:
        return forward_probabilities(lm.model, torch.from_numpy(x), device, tta, precision=lm.precision).cpu().numpy()

    prob = np.zeros(ct_hu.shape, dtype=np.uint8)
    threshold_u8 = lm.threshold * 255.0
    bar = tqdm(total=None, unit="tile", desc="predict", disable=not progress)
    for i, (zs, reference, label) in enumerate(passes):
        if not zs:
            continue

        def inputs(z: int, reference=reference) -> np.ndarray:
            idx = stack_indices(z, nz, lm.input_slices)
            return window_patch(ct_r[idx], pet_r[idx], lm.preset, reference)

        p_r = sliding_window(
            forward, inputs, zs, ct_r.shape[1:], lm.patch, overlap, batch_size, lambda z: body[z], bar.update
        )
        for k in range(0, len(zs), 32):  # back to the CT grid a few slices at a time (memory stays small)
            part = resample_to_shape(p_r[k : k + 32, :ry, :rx], (ny, nx))
            p_u8 = np.clip(np.round(part * 255.0), 0, 255).astype(np.uint8)
            rows = zs[k : k + 32]
            if label:  # keep only the predicted components that overlap this candidate
                comp, _ = label_lesions(p_u8 >= threshold_u8)
                hits = np.unique(comp[(labels[rows] == label) & (comp > 0)])
                p_u8 = np.where(np.isin(comp, hits), p_u8, 0).astype(np.uint8)
            prob[rows] = np.maximum(prob[rows], p_u8)
        if label:
            comp, _ = label_lesions(prob[zs] >= threshold_u8)
            candidates[i]["kept_components"] = int(np.unique(comp[(labels[zs] == label) & (comp > 0)]).size)
    bar.close()
    return prob, candidates


def predict_dicom(
    dicom_dir: str | Path,
    model_path: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    device: str = "auto",
    roi_name: str = "IGTV",
    tta: bool = False,
    postprocess_cfg: PostprocessConfig | None = None,
    compare: str | Path | None = None,
    compare_roi: str | None = None,
    batch_size: int | None = None,
    preset: str | None = None,
    progress: bool = True,
    precision: str = "auto",
    overlap: float = DEFAULT_OVERLAP,
    threshold: float | None = None,
) -> PredictResult:
    """Contour one patient; see the module docstring for what is written. Several checkpoints in ``model_path``
    make an ensemble: the mean of their probabilities (:mod:`igtv.inference.ensemble`). Batch None: automatic;
    ``threshold`` None: the checkpoint's probability threshold."""
    import igtv
    from igtv.data.regions import thorax_region
    from igtv.device import auto_batch_size, pick_device
    from igtv.dicom.rtstruct import CTReference, RoiMask, write_rtstruct
    from igtv.dicom.write import PatientStudy
    from igtv.geometry import save_nifti
    from igtv.inference.compare import compare_with_reference
    from igtv.inference.ensemble import describe_members, ensemble_probability, load_models
    from igtv.inference.lesions import lesion_statistics, postprocess, prediction_tiles, resolve_auto_rules
    from igtv.inference.model import check_threshold
    from igtv.inference.predictor import apply_flips, canonical_flips
    from igtv.inference.report import render_report
    from igtv.io import write_text_atomic

    t0 = time.perf_counter()
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size is not None and batch_size < 1:  # a negative batch would predict nothing, silently
        raise ValueError(f"batch size must be >= 1 (or None: automatic), got {batch_size}")
    check_threshold(threshold)
    dicom_dir, out = Path(dicom_dir), Path(out)
    if compare is not None:  # a bad reference fails now, not after the prediction
        from igtv.dicom.structures import structure_series

        structure_series(Path(compare))
    post = postprocess_cfg or PostprocessConfig()
    dev = pick_device(device)
    members = load_models(model_path, dev, preset, threshold)
    for m in members:
        m.precision = precision
    lm = members[0]
    batch_size = batch_size if batch_size is not None else auto_batch_size(dev, lm.patch)
    post = resolve_auto_rules(post, lm.cold_lesions, lm.min_suv_max)
    timings, t_step = {"models_s": time.perf_counter() - t0}, time.perf_counter()
    ct, pet_suv, scale = _read_exam(dicom_dir)
    geom = ct.geometry
    flips = canonical_flips(geom)
    ct_c, pet_c = apply_flips(ct.array, flips), apply_flips(pet_suv, flips)
    # the thorax rule's region, computed once: it limits the tiles predicted and then judges the components
    region = thorax_region(ct.array, geom, post.thorax_margin_mm) if post.thorax_margin_mm else None
    if region is not None and not region.any():
        log.warning(
            "no lungs found in the CT (air inside the body): nothing is contoured; --thorax-margin-mm 0 lifts this"
        )
    region_c = None if (tiles := prediction_tiles(region, pet_suv, geom, post)) is None else apply_flips(tiles, flips)
    timings["read_s"], t_step = time.perf_counter() - t_step, time.perf_counter()
    prob_c, candidates = ensemble_probability(
        members,
        lambda m: predict_volume(m, ct_c, pet_c, geom.spacing_mm, dev, tta, batch_size, progress, overlap, region_c),
    )
    prob = np.ascontiguousarray(apply_flips(prob_c, flips))
    timings["network_s"], t_step = time.perf_counter() - t_step, time.perf_counter()
    raw_mask = prob >= lm.threshold * 255.0
    mask, dropped = postprocess(raw_mask, pet_suv, geom, post, ct.array, region)
    lesions = lesion_statistics(mask, pet_suv, geom)
    timings["postprocess_s"] = time.perf_counter() - t_step
    comparison, reference = None, None
    if compare is not None:
        comparison, reference = compare_with_reference(mask, Path(compare), compare_roi, ct, roi_name)
    seconds = time.perf_counter() - t0
    stats = {
        "prediction": {
            "roi_name": roi_name,
            "threshold": lm.threshold,
            "tta": tta,
            "precision": precision,
            "overlap": overlap,
            "batch_size": batch_size,
            "windows": lm.preset,
            "pet_candidates": candidates,
            "postprocess": asdict(post),
            "dropped_components": dropped,
            "total_volume_cc": float(mask.sum()) * geom.voxel_volume_cc,
            "ct_shape_zyx": list(geom.shape_zyx),
            "ct_spacing_mm": list(geom.spacing_mm),
            "orientation_flips_zyx": list(flips),
            "suv": f"{scale.kind} ({scale.rule})",
            "seconds": seconds,
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "device": str(dev),
            "igtv_version": igtv.__version__,
        },
        "model": describe_members(members),
        "lesions": lesions,
    }
    if comparison is not None:
        stats["compare"] = comparison
    if not lesions:
        log.warning("no lesion predicted: the RTSTRUCT holds an empty ROI %r", roi_name)
    html_text = render_report(ct_hu=ct_c, pet_suv=pet_c, mask=apply_flips(mask, flips), geom=geom, stats=stats,
                              model_facts=describe_members(members),
                              reference=None if reference is None else apply_flips(reference, flips))  # fmt: skip
    names = {"rtstruct": "RTSTRUCT_igtv.dcm", "mask": "mask.nii.gz", "probability": "probability.nii.gz",
             "pet_suv": "pet_suv.nii.gz", "stats": "stats.json", "report": "report.html"}  # fmt: skip
    from pydicom.uid import generate_uid

    with staged_output(out) as stage:
        write_rtstruct(
            stage / names["rtstruct"],
            [RoiMask(roi_name, mask, color=(0, 220, 0), interpreted_type="GTV")],
            CTReference(geom, ct.sop_uids, ct.info.series_uid, PatientStudy.from_dataset(ct.datasets[0])),
            label="igtv",
            series_uid=generate_uid(),
            sop_uid=generate_uid(),
            when=dt.datetime.now(),
            description=f"igtv {lm.name}{f' x{len(members)}' if len(members) > 1 else ''} (research use only)",
        )
        save_nifti(stage / names["mask"], mask.astype(np.uint8), geom)
        save_nifti(stage / names["probability"], prob, geom)
        save_nifti(stage / names["pet_suv"], pet_suv.astype(np.float32), geom)
        write_text_atomic(stage / names["stats"], json.dumps(stats, indent=1))
        write_text_atomic(stage / names["report"], html_text)
    return PredictResult(out, {k: out / v for k, v in names.items()}, stats)
