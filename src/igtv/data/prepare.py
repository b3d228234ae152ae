"""``igtv prepare``: clinical PET/CT DICOM -> a 2.5D training dataset in the PCLT20K layout (paper Sec. III-B).

Per patient: the CT that the structure set references, the PET of its frame of reference, SUV from the PET
headers, PET resampled onto the CT grid (linear, patient coordinates), every ROI matching ``--roi`` rasterised on
the CT grid, quality control per ROI (volume >= 3 cc from the 3D mask with the true voxel size, SUVmax >= 3), and
for each ROI that passes: CT / PET / mask PNGs of every ROI slice plus ``context`` neighbour slices on each side
(so 2.5D stacks of the edge slices are real, not replicated), windows from the preset.

Layout (readable by :class:`igtv.data.datasets.SliceDataset` exactly like PCLT20K)::

    DATASET/<P...>/<P..._r1_0042>_{CT,PET,mask}.png   one folder per pseudonymised patient
    DATASET/train.txt, val.txt, test.txt               sample names (ROI slices; context slices are not samples)
    DATASET/splits.json                                patient-level 70/15/15 split, seeded
    DATASET/rois.csv, slices.csv                       per ROI and per slice metadata (2.5D/3D can be rebuilt)
    DATASET/qc_report.csv                              every ROI with kept/excluded and the reason; failed patients
    DATASET/dataset.json                               summary, config, SUV rules used
    DATASET/volumes/<P...>/{ct_hu,pet_suv,labels}.nii.gz   3D volumes on the CT grid (3D metrics, nnU-Net export)
    DATASET/patients/<P...>.json                       written last per patient: its presence means "done"

Patient names and IDs never reach the output: folders and logs use a keyed hash of the PatientID (the key is kept
in ``DATASET/.pseudonym_key``, so pseudonyms are stable across runs and cannot be reversed without it). The key
is drawn at random for a new dataset unless one is given (``--pseudonym-key FILE``): the same key gives the same
pseudonyms in every dataset prepared with it (a GTV and an IGTV dataset of the same patients, or a re-prepared
dataset), and so the same sample order and the same trained model for the same DICOM and seeds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from igtv.config import claim_config, to_dict
from igtv.data.qc import roi_qc, roi_statistics
from igtv.data.split import patient_split
from igtv.geometry import Geometry
from igtv.io import remove_stale_temporaries, write_csv_atomic, write_text_atomic
from igtv.parallel import map_jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareConfig:
    """Settings of ``igtv prepare`` (saved as ``prepare.yaml`` in the dataset)."""

    preset: Literal["lucid", "pclt20k"] = "lucid"
    roi: str = "IGTV"
    size: int = 512
    min_volume_cc: float = 3.0
    min_suv_max: float = 3.0
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    context: int = 1
    write_volumes: bool = True
    workers: int = 1


# --- pure helpers -------------------------------------------------------------------------------------------------
def pseudonym(patient_id: str, key: bytes) -> str:
    """Stable, non-reversible patient pseudonym: ``P`` + 8 hex digits of HMAC-SHA256(key, PatientID)."""
    return "P" + hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()[:8]


def redact(message: str, secrets_: list[str], replacement: str) -> str:
    """Replace every identifier (and each part of a DICOM PN name) longer than two characters in ``message``."""
    parts = set()
    for s in secrets_:
        if s:
            parts.add(s)
            parts.update(p for p in s.replace("^", " ").split() if len(p) > 2)
    for p in sorted(parts, key=len, reverse=True):
        message = message.replace(p, replacement)
    return message


@dataclass
class PatientArrays:
    """One patient's images on the CT grid, as :func:`prepare_arrays` takes them (from DICOM, or straight from the
    phantom's simulation)."""

    ct_hu: np.ndarray  # [z, y, x]
    geometry: Geometry  # of the CT
    pet_on_ct: np.ndarray  # SUV resampled onto the CT grid
    pet_geometry: Geometry  # the PET's own grid
    masks: dict[str, np.ndarray]  # ROI name -> bool mask on the CT grid, names matching PrepareConfig.roi
    suv: dict  # kind, rule, notes, factor of the SUV conversion
    manufacturer: str
    model: str
    structure_modality: str


def prepare_patient(series: list, cfg: PrepareConfig, out_dir: Path, pseudo: str) -> dict:
    """Process one patient's series (from :func:`~igtv.dicom.index.scan_dicom`); returns its record."""
    from igtv.dicom.index import select_exam
    from igtv.dicom.series import read_image_series, read_pet_suv
    from igtv.dicom.structures import read_roi_masks
    from igtv.geometry import resample_to

    t0 = time.perf_counter()
    exam = select_exam(series, cfg.roi)
    ct = read_image_series(exam.ct)
    pet_suv, pet_geom, scale = read_pet_suv(exam.pet)
    arrays = PatientArrays(
        ct_hu=ct.array,
        geometry=ct.geometry,
        pet_on_ct=resample_to(pet_suv, pet_geom, ct.geometry, order=1),
        pet_geometry=pet_geom,
        masks=read_roi_masks(exam.structure, ct, cfg.roi),
        suv={"kind": scale.kind, "rule": scale.rule, "notes": list(scale.notes), "factor": scale.factor},
        manufacturer=exam.pet.manufacturer,
        model=exam.pet.model,
        structure_modality=exam.structure.modality if exam.structure else "",
    )
    return prepare_arrays(arrays, cfg, out_dir, pseudo, t0)


def prepare_arrays(a: PatientArrays, cfg: PrepareConfig, out_dir: Path, pseudo: str, t0: float | None = None) -> dict:
    """QC every ROI, write the PNGs of the kept ROIs' slices, the volumes and ``patients/<pseudo>.json`` (last);
    returns the patient's record."""
    from igtv.data.png import resize_slice, save_png
    from igtv.data.windows import PRESETS, scale_pet_roi_max, scale_pet_suv, to_uint8, window_ct
    from igtv.geometry import save_nifti

    t0 = time.perf_counter() if t0 is None else t0
    pet_on_ct, masks = a.pet_on_ct, a.masks
    preset = PRESETS[cfg.preset]
    geom = a.geometry
    rois, slices = [], []
    labels = np.zeros(geom.shape_zyx, dtype=np.uint8)
    names = sorted(masks, key=lambda n: (len(n), n.lower()))
    nz = geom.shape_zyx[0]
    for k, name in enumerate(names, start=1):
        mask = masks[name]
        labels[mask] = k
        st = roi_statistics(mask, pet_on_ct, geom)
        reason = roi_qc(st["volume_cc"], st["suv_max"], cfg.min_volume_cc, cfg.min_suv_max)
        roi = {
            "patient": pseudo,
            "roi": k,
            "roi_name": name,
            "status": "excluded" if reason else "kept",
            "reason": reason,
            **{key: st[key] for key in ("volume_cc", "suv_max", "suv_mean", "n_slices", "centroid_mm")},
            "spacing_mm": list(geom.spacing_mm),
            "manufacturer": a.manufacturer,
            "model": a.model,
        }
        rois.append(roi)
        if reason:
            log.info("%s ROI %d excluded: %s", pseudo, k, reason)
            continue
        lo, hi = max(0, st["slices"][0] - cfg.context), min(nz - 1, st["slices"][-1] + cfg.context)
        roi_slices = set(st["slices"])
        folder = out_dir / pseudo
        for z in range(lo, hi + 1):
            item = f"{pseudo}_r{k}_{z:04d}"
            ct_img = window_ct(a.ct_hu[z], *preset.ct_hu)
            if preset.pet_mode == "roi_max":
                pet_img = scale_pet_roi_max(pet_on_ct[z], st["suv_max"])
            else:
                pet_img = scale_pet_suv(pet_on_ct[z], *preset.pet_suv)
            save_png(folder / f"{item}_CT.png", to_uint8(resize_slice(ct_img, cfg.size)))
            save_png(folder / f"{item}_PET.png", to_uint8(resize_slice(pet_img, cfg.size)))
            m = resize_slice(mask[z].astype(np.float32), cfg.size, nearest=True) > 0.5
            save_png(folder / f"{item}_mask.png", m.astype(np.uint8) * 255)
            pos = geom.index_to_patient(np.array([0.0, 0.0, float(z)]))
            slices.append(
                {
                    "item": item,
                    "patient": pseudo,
                    "roi": k,
                    "slice_index": z,
                    "z_mm": round(float(pos[2]), 3),
                    "role": "sample" if z in roi_slices else "context",
                    "mask_pixels": int(mask[z].sum()),
                    "mask_mm2": round(float(mask[z].sum()) * geom.spacing_mm[0] * geom.spacing_mm[1], 2),
                    "suv_max_slice": round(float(pet_on_ct[z][mask[z]].max()), 3) if mask[z].any() else 0.0,
                }
            )
    if cfg.write_volumes:
        vol = out_dir / "volumes" / pseudo
        save_nifti(vol / "ct_hu.nii.gz", np.round(a.ct_hu).astype(np.int16), geom)
        save_nifti(vol / "pet_suv.nii.gz", pet_on_ct.astype(np.float32), geom)
        save_nifti(vol / "labels.nii.gz", labels, geom)
    record = {
        "patient": pseudo,
        "ct_geometry": geom.to_dict(),
        "pet_geometry": a.pet_geometry.to_dict(),
        "suv": a.suv,
        "manufacturer": a.manufacturer,
        "model": a.model,
        "structure_modality": a.structure_modality,
        "roi_labels": {str(k): n for k, n in enumerate(names, start=1)},
        "rois": rois,
        "slices": slices,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_text_atomic(out_dir / "patients" / f"{pseudo}.json", json.dumps(record, indent=1))
    return record


def _job(args) -> dict:
    series, cfg, out_dir, pseudo, root = args
    from igtv.dicom.index import DicomInputError
    from igtv.dicom.pet_header import SuvError

    try:
        return prepare_patient(series, cfg, Path(out_dir), pseudo)
    except (DicomInputError, SuvError, ValueError, OSError) as exc:
        ids = [s.patient_id for s in series] + [s.patient_name for s in series]
        msg = redact(str(exc).replace(str(root), "<ROOT>"), ids, pseudo)
        return {"patient": pseudo, "error": f"{type(exc).__name__}: {msg}"}


# --- the dataset --------------------------------------------------------------------------------------------------
@dataclass
class PrepareResult:
    out_dir: Path
    patients: int
    processed: int
    skipped: int
    failed: list[dict]
    rois_kept: int
    rois_excluded: int
    samples: int
    seconds: float


def read_pseudonym_key(path: str | Path) -> bytes:
    """A pseudonym key file: one line of hex digits, at least 16 bytes."""
    path = Path(path)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a pseudonym key file (one line of hex digits): {exc}") from None
    if len(key) < 16:
        raise ValueError(f"{path}: pseudonym key of {len(key)} bytes; at least 16 are needed")
    return key


def _pseudonym_key(out: Path, given: bytes | None = None) -> bytes:
    """The dataset's key: the one it already has, else ``given``, else a new random one (saved either way)."""
    path = out / ".pseudonym_key"
    if path.exists():
        key = read_pseudonym_key(path)
        if given is not None and key != given:
            raise ValueError(f"{path}: this dataset was prepared with another pseudonym key; choose another --out")
        return key
    write_text_atomic(path, (given if given is not None else secrets.token_bytes(32)).hex() + "\n")
    return read_pseudonym_key(path)


ROI_COLUMNS = ["patient", "roi", "roi_name", "status", "reason", "volume_cc", "suv_max", "suv_mean", "n_slices",
               "centroid_mm", "spacing_mm", "manufacturer", "model", "split"]  # fmt: skip
SLICE_COLUMNS = ["item", "patient", "roi", "slice_index", "z_mm", "role", "mask_pixels", "mask_mm2", "suv_max_slice",
                 "split"]  # fmt: skip


def prepare_dataset(
    dicom_root: str | Path,
    out_dir: str | Path,
    cfg: PrepareConfig = PrepareConfig(),
    progress: bool = True,
    pseudonym_key: bytes | None = None,
) -> PrepareResult:
    """Run :func:`prepare_patient` over every patient of ``dicom_root`` (parallel, resumable), then write the
    tables, QC report, splits and sample lists. ``pseudonym_key``: see the module notes (None: random for a new
    dataset; never saved in ``prepare.yaml``)."""

    from igtv.dicom.index import scan_dicom

    root, out = Path(dicom_root), Path(out_dir)
    t0 = time.perf_counter()
    patients = scan_dicom(root)
    if not patients:
        raise FileNotFoundError(f"{root}: no CT/PT/RTSTRUCT/SEG DICOM files found")
    created = not out.exists()
    pseudo_of, records = open_dataset(out, cfg, list(patients), pseudonym_key)
    jobs = [
        (patients[pid], cfg, str(out), pseudo_of[pid], str(root))
        for pid in sorted(patients, key=lambda p: pseudo_of[p])
        if pseudo_of[pid] not in records
    ]
    results = map_jobs(_job, jobs, cfg.workers, "prepare", "patient", progress)
    failed = []
    for rec in results:
        if "error" in rec:
            log.warning("patient %s skipped: %s", rec["patient"], rec["error"])
            failed.append(rec)
        else:
            records[rec["patient"]] = rec
    if not records:  # nothing could be prepared: leave no dataset behind
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise ValueError(f"{root}: no patient could be prepared: " + "; ".join(f["error"] for f in failed[:3]))
    return close_dataset(out, records, failed, cfg, pseudo_of, t0, len(jobs) - len(failed))


def open_dataset(
    out: Path, cfg: PrepareConfig, patient_ids: list[str], pseudonym_key: bytes | None = None
) -> tuple[dict[str, str], dict[str, dict]]:
    """Create (or reopen, to complete) the dataset folder ``out``: refuse one prepared with other settings, save
    ``prepare.yaml``, remove a killed run's half-written files, and pseudonymise ``patient_ids`` with the dataset's
    key. Returns (PatientID -> pseudonym, the records of the patients already done)."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "prepare.yaml"
    claim_config(cfg, saved, f"{out} was prepared with other settings ({saved}); choose another --out or delete it")
    remove_stale_temporaries(out)  # a killed run's half-written files
    key = _pseudonym_key(out, pseudonym_key)
    pseudo_of = {pid: pseudonym(pid, key) for pid in patient_ids}
    if len(set(pseudo_of.values())) != len(pseudo_of):
        raise RuntimeError("pseudonym collision; delete .pseudonym_key and re-run")
    records = {}
    for p in pseudo_of.values():
        done = out / "patients" / f"{p}.json"
        if done.exists():
            records[p] = json.loads(done.read_text())
    return pseudo_of, records


def close_dataset(
    out: Path,
    records: dict[str, dict],
    failed: list[dict],
    cfg: PrepareConfig,
    pseudo_of: dict[str, str],
    t0: float,
    processed: int,
    source: str = "",
) -> PrepareResult:
    """Write the tables, splits and ``dataset.json`` (``source``: how the patients were made, when not DICOM) from
    every patient's record; returns the summary as a :class:`PrepareResult`."""
    summary = write_tables(out, records, failed, cfg, {p: pid for pid, p in pseudo_of.items()})
    seconds = time.perf_counter() - t0
    summary["seconds"] = round(seconds, 2)
    if source:
        summary["source"] = source
    write_text_atomic(out / "dataset.json", json.dumps(summary, indent=1))
    return PrepareResult(
        out,
        len(pseudo_of),
        processed,
        len(pseudo_of) - processed - len(failed),
        failed,
        summary["rois_kept"],
        summary["rois_excluded"],
        summary["samples"]["train"] + summary["samples"]["val"] + summary["samples"]["test"],
        seconds,
    )


def write_tables(
    out: Path, records: dict[str, dict], failed: list[dict], cfg: PrepareConfig, order: dict[str, str] | None = None
) -> dict:
    """rois.csv, slices.csv, qc_report.csv, splits.json, {train,val,test}.txt from the per-patient records.

    ``order``: pseudonym -> split sort key (see :func:`patient_split`)."""
    with_rois = [p for p, r in records.items() if any(x["status"] == "kept" for x in r["rois"])]
    splits = patient_split(with_rois, cfg.split, cfg.seed, order)
    split_of = {p: s for s, ps in splits.items() for p in ps}
    rois = [dict(r, split=split_of.get(r["patient"], "")) for p in sorted(records) for r in records[p]["rois"]]
    slices = [dict(s, split=split_of.get(s["patient"], "")) for p in sorted(records) for s in records[p]["slices"]]
    write_csv_atomic(out / "rois.csv", rois, ROI_COLUMNS)
    write_csv_atomic(out / "slices.csv", slices, SLICE_COLUMNS)
    qc = [
        {"patient": r["patient"], "roi": r["roi"], "status": r["status"], "reason": r["reason"],
         "volume_cc": round(r["volume_cc"], 3), "suv_max": round(r["suv_max"], 3)}
        for r in rois
    ] + [{"patient": f["patient"], "roi": "", "status": "failed", "reason": f["error"]} for f in failed]  # fmt: skip
    write_csv_atomic(out / "qc_report.csv", qc, ["patient", "roi", "status", "reason", "volume_cc", "suv_max"])
    write_text_atomic(out / "splits.json", json.dumps({"seed": cfg.seed, "fractions": list(cfg.split), **splits}))
    counts = {}
    for name in ("train", "val", "test"):
        items = [s["item"] for s in slices if s["role"] == "sample" and s["split"] == name]
        write_text_atomic(out / f"{name}.txt", "".join(f"{i}\n" for i in items))
        counts[name] = len(items)
    return {
        "format": "igtv-prepared-1",
        "config": to_dict(cfg),
        "patients": len(records),
        "patients_failed": len(failed),
        "patients_with_rois": len(with_rois),
        "rois_kept": sum(r["status"] == "kept" for r in rois),
        "rois_excluded": sum(r["status"] == "excluded" for r in rois),
        "samples": counts,
        "suv_rules": sorted({records[p]["suv"]["rule"].split(",")[0] for p in records}),
        "manufacturers": sorted({f"{records[p]['manufacturer']} {records[p]['model']}".strip() for p in records}),
    }
