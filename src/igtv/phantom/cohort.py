"""Write phantom cohorts: DICOM CT/PET/RTSTRUCT, NIfTI ground truth, the PCLT20K PNG layout, and a preview.

Layout of a cohort folder::

    OUT/phantom.yaml            the PhantomConfig that made it (re-running with another config is refused)
    OUT/cohort.json             per patient: folder, scanner, grids, lesion truth (no names or IDs)
    OUT/I0001/dicom/CT/*.dcm    planning CT (end exhale)
    OUT/I0001/dicom/PT/*.dcm    PET, Units BQML, decay corrected to series start
    OUT/I0001/dicom/RTSTRUCT_truth.dcm   ROIs GTV, IGTV (lesion 1), GTV_2, IGTV_2, ... on the CT
    OUT/I0001/truth/{gtv,igtv}.nii.gz    exact label maps on the CT grid (value k = lesion k)
    OUT/I0001/truth/pet_suv.nii.gz       SUV on the PET grid, as stored in the PET series
    OUT/I0001/truth.json        written last: a patient with it is complete and is skipped on re-runs
    OUT/pclt/<id>/<id>_<slice>_{CT,PET,mask}.png, OUT/pclt/train.txt, OUT/pclt/test.txt
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igtv.config import claim_config, to_dict
from igtv.data.split import patient_split
from igtv.io import remove_stale_temporaries, write_text_atomic
from igtv.parallel import map_jobs
from igtv.phantom.config import PhantomConfig
from igtv.phantom.patient import PhantomPatient, simulate_patient

log = logging.getLogger(__name__)

GTV_COLOR = (255, 150, 150)  # light red, as the paper's Fig. 1
IGTV_COLOR = (170, 0, 0)  # dark red


def patient_folder(cohort: str, index: int) -> str:
    """Pseudonymous folder name / PCLT20K id of a phantom patient (no '_' so PCLT20K ids parse)."""
    return f"{'G' if cohort == 'gtv' else 'I'}{index + 1:04d}"


def patient_id(folder: str) -> str:
    """The PatientID a phantom patient's DICOM carries (pseudonymised by ``igtv prepare`` like any other)."""
    return f"IGTV-PH-{folder}"


def roi_names(k: int) -> tuple[str, str]:
    """ROI names of lesion ``k`` (1-based): GTV/IGTV for the first, GTV_k/IGTV_k for the others."""
    return ("GTV", "IGTV") if k == 1 else (f"GTV_{k}", f"IGTV_{k}")


def _uid_seed(cfg: PhantomConfig, index: int) -> tuple:
    return ("igtv-phantom", cfg.seed, cfg.cohort, index)


def write_patient(p: PhantomPatient, cfg: PhantomConfig, out_dir: Path) -> dict:
    """Write one simulated patient under ``out_dir/<folder>``; returns its cohort.json entry."""
    from igtv.dicom.rtstruct import CTReference, RoiMask, write_rtstruct
    from igtv.dicom.write import PatientStudy, det_uid, write_ct_series, write_pet_series
    from igtv.geometry import resample_to, save_nifti

    name = patient_folder(cfg.cohort, p.index)
    root = out_dir / name
    seed = _uid_seed(cfg, p.index)
    acq = p.acquisition
    day = dt.datetime.strptime(acq["date"], "%Y%m%d")
    injection = day + dt.timedelta(
        hours=acq["injection_hms"][0], minutes=acq["injection_hms"][1], seconds=acq["injection_hms"][2]
    )
    series_start = injection + dt.timedelta(seconds=acq["uptake_s"])
    ct_time = series_start - dt.timedelta(minutes=3)
    ps = PatientStudy(
        patient_name=f"Phantom^{name}",
        patient_id=patient_id(name),
        patient_birth_date=f"{1940 + p.index % 40}{p.index % 12 + 1:02d}{p.index % 28 + 1:02d}",  # for privacy tests
        patient_sex="O",
        study_uid=det_uid(*seed, "study"),
        frame_of_reference_uid=det_uid(*seed, "for"),
        study_datetime=ct_time,
        study_id=name,
    )
    sc = p.scanner
    ct_series = det_uid(*seed, "ct-series")
    ct_uids = write_ct_series(
        root / "dicom" / "CT", p.ct_hu, p.ct_geom, ps, ct_series, sc["manufacturer"], sc["model"], ct_time, seed
    )
    # Bq/ml at series start = SUV * (injected dose decayed to series start) / body weight in g
    decayed = acq["dose_bq"] * 2.0 ** (-acq["uptake_s"] / acq["half_life_s"])
    bqml = p.pet_suv.astype(np.float64) * decayed / (acq["weight_kg"] * 1000.0)
    write_pet_series(
        root / "dicom" / "PT",
        bqml,
        p.pet_geom,
        ps,
        det_uid(*seed, "pt-series"),
        sc["manufacturer"],
        sc["model"],
        sc["pet_recon"],
        acq["weight_kg"],
        acq["dose_bq"],
        injection,
        series_start,
        acq["half_life_s"],
        seed,
    )
    rois = []
    for k in range(1, len(p.lesions) + 1):
        gname, iname = roi_names(k)
        rois.append(RoiMask(gname, p.gtv == k, GTV_COLOR, "GTV"))
        rois.append(RoiMask(iname, p.igtv == k, IGTV_COLOR, "CTV"))
    write_rtstruct(
        root / "dicom" / "RTSTRUCT_truth.dcm",
        rois,
        CTReference(p.ct_geom, ct_uids, ct_series, ps),
        label="phantom truth",
        series_uid=det_uid(*seed, "rs-series"),
        sop_uid=det_uid(*seed, "rs"),
        when=series_start,
        description="Ground truth GTV/IGTV",
    )
    save_nifti(root / "truth" / "gtv.nii.gz", p.gtv, p.ct_geom)
    save_nifti(root / "truth" / "igtv.nii.gz", p.igtv, p.ct_geom)
    save_nifti(root / "truth" / "pet_suv.nii.gz", p.pet_suv, p.pet_geom)

    pet_on_ct = resample_to(p.pet_suv, p.pet_geom, p.ct_geom)
    lesions = p.lesion_truth()
    for entry in lesions:
        k = entry["lesion"]
        for key, lab in (("gtv", p.gtv), ("igtv", p.igtv)):
            m = lab == k
            entry[f"{key}_suv_max"] = float(pet_on_ct[m].max()) if m.any() else 0.0
        entry["roi_names"] = list(roi_names(k))
        entry["below_qc"] = bool(entry["igtv_cc"] < 3.0 or entry["igtv_suv_max"] < 3.0)
    entry = {
        "folder": name,
        "cohort": cfg.cohort,
        "scanner": sc,
        "ct": p.ct_geom.to_dict(),
        "pet": p.pet_geom.to_dict(),
        "acquisition": {k: acq[k] for k in ("weight_kg", "dose_bq", "uptake_s", "half_life_s")},
        "diaphragm_amplitude_mm": p.anatomy.diaphragm_amp_mm,
        "heart_wall_suv": p.anatomy.suv[4],
        "lesions": lesions,
    }
    if cfg.write_pclt:
        entry["pclt_items"] = export_pclt_patient(p, pet_on_ct, out_dir / "pclt", name, cfg.pclt_size)
    write_text_atomic(root / "truth.json", json.dumps(entry, indent=1))
    return entry


def export_pclt_patient(p: PhantomPatient, pet_on_ct: np.ndarray, pclt_root: Path, pid: str, size: int) -> list[str]:
    """Write every tumour-bearing slice as ``<pid>/<pid>_<slice>_{CT,PET,mask}.png`` (PCLT20K windows).

    The GTV cohort exports GTV masks (like PCLT20K), the IGTV cohort IGTV masks.
    """
    from igtv.data.png import resize_slice, save_png
    from igtv.data.windows import PCLT20K, scale_pet_suv, to_uint8, window_ct

    labels = p.gtv if p.cohort == "gtv" else p.igtv
    items = []
    folder = pclt_root / pid
    for k in np.nonzero(labels.reshape(labels.shape[0], -1).any(axis=1))[0]:
        item = f"{pid}_{int(k):04d}"
        ct = window_ct(p.ct_hu[k], *PCLT20K.ct_hu)
        pet = scale_pet_suv(pet_on_ct[k], *PCLT20K.pet_suv)
        mask = resize_slice((labels[k] > 0).astype(np.float32), size, nearest=True) > 0.5
        save_png(folder / f"{item}_CT.png", to_uint8(resize_slice(ct, size)))
        save_png(folder / f"{item}_PET.png", to_uint8(resize_slice(pet, size)))
        save_png(folder / f"{item}_mask.png", mask.astype(np.uint8) * 255)
        items.append(item)
    return items


def _pclt_lists(out_dir: Path, entries: list[dict], seed: int) -> None:
    """train.txt / test.txt split at patient level (80/20, seeded), as PCLT20K ships them."""
    pids = sorted(e["folder"] for e in entries)
    test = set(patient_split(pids, (0.8, 0.0, 0.2), seed)["test"])
    by_pid = {e["folder"]: e.get("pclt_items", []) for e in entries}
    train_items = [it for pid in pids if pid not in test for it in by_pid[pid]]
    test_items = [it for pid in pids if pid in test for it in by_pid[pid]]
    write_text_atomic(out_dir / "pclt" / "train.txt", "".join(f"{i}\n" for i in train_items))
    write_text_atomic(out_dir / "pclt" / "test.txt", "".join(f"{i}\n" for i in test_items))


def _one(args: tuple[PhantomConfig, int, str]) -> tuple[dict, float]:
    cfg, index, out = args
    t0 = time.perf_counter()
    entry = write_patient(simulate_patient(cfg, index), cfg, Path(out))
    return entry, time.perf_counter() - t0


@dataclass
class CohortResult:
    out_dir: Path
    entries: list[dict]
    seconds: float
    generated: int
    skipped: int


def generate_cohort(
    cfg: PhantomConfig, out_dir: str | Path, preview: bool = False, progress: bool = True
) -> CohortResult:
    """Generate (or complete) a phantom cohort in ``out_dir``; patients already complete are skipped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "phantom.yaml"
    claim_config(cfg, saved, f"{out} already holds a phantom cohort made with other settings ({saved}); "
                             "choose another --out folder or delete it")  # fmt: skip
    remove_stale_temporaries(out)  # a killed run's half-written files
    t0 = time.perf_counter()
    entries: dict[int, dict] = {}
    todo = []
    for i in range(cfg.patients):
        done = out / patient_folder(cfg.cohort, i) / "truth.json"
        if done.exists():
            entries[i] = json.loads(done.read_text())
        else:
            todo.append(i)
    results = map_jobs(
        _one, [(cfg, i, str(out)) for i in todo], cfg.workers, f"phantom {cfg.cohort}", "patient", progress
    )
    for i, (entry, _) in zip(todo, results, strict=True):
        entries[i] = entry
    ordered = [entries[i] for i in range(cfg.patients)]
    if cfg.write_pclt:
        _pclt_lists(out, ordered, cfg.seed)
    write_text_atomic(
        out / "cohort.json",
        json.dumps({"config": to_dict(cfg), "patients": ordered}, indent=1),
    )
    if preview:
        save_preview(out, ordered[0]["folder"], out / "preview.png")
    seconds = time.perf_counter() - t0
    log.info("phantom cohort %s: %d generated, %d skipped in %.1f s", out, len(todo), cfg.patients - len(todo), seconds)
    return CohortResult(out, ordered, seconds, len(todo), cfg.patients - len(todo))


def save_preview(cohort_dir: Path, folder: str, path: Path) -> Path:
    """PNG of one patient: axial CT (lung and mediastinal windows) and PET through the largest lesion with GTV
    (light) / IGTV (dark red), a coronal CT, a coronal PET/CT fusion that shows the IGTV's breathing extent, and
    the PET's coronal maximum-intensity projection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from igtv.geometry import load_nifti, resample_to
    from igtv.io import atomic_path

    root = Path(cohort_dir) / folder
    gtv, ct_geom = load_nifti(root / "truth" / "gtv.nii.gz")
    igtv, _ = load_nifti(root / "truth" / "igtv.nii.gz")
    pet, pet_geom = load_nifti(root / "truth" / "pet_suv.nii.gz")
    from igtv.dicom.index import scan_dicom
    from igtv.dicom.series import read_image_series

    (ct_series,) = [s for ss in scan_dicom(root / "dicom" / "CT").values() for s in ss if s.modality == "CT"]
    ct = read_image_series(ct_series).array.astype(np.float32)  # the reader every other path uses
    pet_ct = resample_to(pet.astype(np.float32), pet_geom, ct_geom)
    counts = np.bincount(igtv.reshape(-1).astype(np.int64))[1:]
    k = int(np.argmax(counts)) + 1 if counts.size else 1
    zz, yy, xx = np.nonzero(igtv == k)
    zc, yc, xc = (int(np.median(a)) for a in (zz, yy, xx)) if zz.size else (ct.shape[0] // 2,) * 3
    sx, sy, sz = ct_geom.spacing_mm
    fig, axes = plt.subplots(2, 3, figsize=(15, 10.5), facecolor="black")
    vmax = max(4.0, float(np.percentile(pet_ct[igtv > 0], 99)) if (igtv > 0).any() else 4.0)
    mip = pet.max(axis=1)[::-1]  # coronal maximum-intensity projection on the PET grid
    psx, _, psz = pet_geom.spacing_mm
    panels = [
        ("axial CT, lung window", ct[zc], "lung", gtv[zc], igtv[zc], sy / sx),
        ("axial CT, mediastinal window", ct[zc], "soft", None, None, sy / sx),
        ("axial PET SUV", pet_ct[zc], "pet", gtv[zc], igtv[zc], sy / sx),
        ("coronal CT", ct[::-1, yc, :], "lung", None, None, sz / sx),
        ("coronal PET/CT fusion", ct[::-1, yc, :], "fuse", gtv[::-1, yc, :], igtv[::-1, yc, :], sz / sx),
        ("PET maximum-intensity projection", mip, "mip", None, None, psz / psx),
    ]
    for ax, (title, img, kind, g, i, aspect) in zip(axes.ravel(), panels, strict=True):
        if kind in ("pet", "mip"):
            ax.imshow(img, cmap="gray_r", vmin=0, vmax=vmax if kind == "pet" else 8.0, aspect=aspect)
        elif kind == "soft":
            ax.imshow(img, cmap="gray", vmin=-160, vmax=240, aspect=aspect)
        else:
            ax.imshow(img, cmap="gray", vmin=-1350, vmax=150, aspect=aspect)
            if kind == "fuse":
                ax.imshow(
                    np.ma.masked_less(pet_ct[::-1, yc, :], 1.5),
                    cmap="hot",
                    vmin=0,
                    vmax=vmax,
                    alpha=0.55,
                    aspect=aspect,
                )
        for m, color in ((i, np.array(IGTV_COLOR) / 255), (g, np.array(GTV_COLOR) / 255)):
            if m is not None and (m > 0).any():
                ax.contour((m > 0).astype(float), levels=[0.5], colors=[color], linewidths=1.4)
        ax.set_title(title, color="white")
        ax.axis("off")
    fig.suptitle(
        f"igtv phantom {folder}: GTV (light red) at end exhale, IGTV (dark red) over the breathing cycle", color="white"
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, facecolor="black")
    plt.close(fig)
    return path
