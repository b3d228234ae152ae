"""Realism check of the phantom (``igtv phantom --stats``): per patient, HU percentiles of lung and soft tissue,
organ SUV means measured on the simulated PET, and the share of body voxels per tissue, beside the literature
ranges of :mod:`igtv.phantom.literature`."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from igtv.phantom import config as C
from igtv.phantom.anatomy import labels
from igtv.phantom.config import PhantomConfig
from igtv.phantom.literature import HU_LITERATURE, SUV_LITERATURE
from igtv.phantom.patient import PhantomPatient, simulate_patient

# organ -> labels measured (PET: eroded masks so the PSF's spill-over from neighbours does not count)
SUV_ORGANS = {
    "liver": (C.LIVER,),
    "blood_pool": (C.AORTA,),
    "myocardium": (C.HEART_WALL,),
    "spleen": (C.SPLEEN,),
    "bone_marrow": (C.VERTEBRA,),
    "muscle": (C.SOFT,),
    "lung": (C.LUNG,),
}
HU_TISSUES = {
    "lung": (C.LUNG,),
    "fat": (C.FAT,),
    "muscle": (C.SOFT,),
    "liver": (C.LIVER,),
    "spleen": (C.SPLEEN,),
    "kidney": (C.KIDNEY,),
    "blood": (C.AORTA,),
    "cancellous_bone": (C.VERTEBRA,),
}
SHARES = {
    "lung": C.LUNG_LIKE,
    "fat": (C.FAT, C.MED_FAT, C.BREAST, C.BROWN_FAT),
    "muscle/soft": (C.SOFT, C.AIRWAY_WALL, C.OESOPHAGUS),
    "bone": (C.RIB, C.BONE, C.VERTEBRA, C.MARROW),
    "heart+vessels": (C.HEART_WALL, C.HEART_BLOOD, C.HEART_RV, C.AORTA, C.PULM_ARTERY, C.VEIN),
    "abdominal organs": (C.LIVER, C.ABDOMEN, C.SPLEEN, C.KIDNEY, C.KIDNEY_PELVIS, C.STOMACH, C.GAS),
}
NOT_BODY = (C.AIR, C.TABLE, C.TABLE_CORE)


def tissue_map(p: PhantomPatient) -> np.ndarray:
    """The patient's tissue labels on its CT grid (end exhale)."""
    x, y, z = p.ct_geom.axis_coordinates_mm()
    o = p.offset_mm
    return labels(p.anatomy, x - o[0], y - o[1], z - o[2])


def _eroded(mask: np.ndarray, px: int) -> np.ndarray:
    if px <= 0 or not mask.any():
        return mask
    core = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool), iterations=px)
    return core if core.sum() >= 20 else mask


def patient_stats(p: PhantomPatient) -> dict:
    """Measured HU percentiles, organ SUV means and tissue shares of one simulated patient."""
    from igtv.geometry import resample_to

    lab = tissue_map(p)
    lesion = (p.gtv > 0) | (p.igtv > 0)
    pet = resample_to(p.pet_suv, p.pet_geom, p.ct_geom)
    px_mm = p.ct_geom.spacing_mm[0]
    out: dict = {"hu": {}, "suv": {}, "share": {}}
    for name, labs in HU_TISSUES.items():
        m = _eroded(np.isin(lab, labs), max(1, int(round(2.0 / px_mm)))) & ~lesion
        if m.sum() >= 20:
            v = p.ct_hu[m]
            out["hu"][name] = [float(np.percentile(v, q)) for q in (5, 50, 95)]
    for name, labs in SUV_ORGANS.items():
        m = _eroded(np.isin(lab, labs), max(1, int(round(6.0 / px_mm)))) & ~lesion
        if m.sum() >= 20:
            out["suv"][name] = float(pet[m].mean())
    body = ~np.isin(lab, NOT_BODY)
    n_body = max(int(body.sum()), 1)
    for name, labs in SHARES.items():
        out["share"][name] = float(np.isin(lab, labs).sum()) / n_body
    out["features"] = p.anatomy.features
    return out


def _flag(value: float, rng: tuple[float, float], tol: float) -> str:
    lo, hi = rng
    return "ok" if lo - tol <= value <= hi + tol else "OUT"


def phantom_stats(cfg: PhantomConfig, print_fn=print) -> list[dict]:
    """Simulate every patient of ``cfg`` (nothing written) and print its realism statistics; returns them."""
    rows = []
    for i in range(cfg.patients):
        p = simulate_patient(cfg, i)
        st = patient_stats(p)
        rows.append(st)
        print_fn(
            f"patient {i + 1} ({cfg.cohort}, seed {cfg.seed}{', randomised' if cfg.randomize else ''}): "
            f"{st['features']}"
        )
        print_fn(f"  {'HU':18s} {'p5':>7s} {'p50':>7s} {'p95':>7s}   literature (median checked)")
        for name, (p5, p50, p95) in st["hu"].items():
            lit = HU_LITERATURE.get(name)
            tol = 60.0 if name == "lung" else 10.0  # lung: the CT is at end exhale (denser than inspiration)
            mark = f"{lit[0][0]:.0f} to {lit[0][1]:.0f} [{_flag(p50, lit[0], tol)}]" if lit else ""
            print_fn(f"  {name:18s} {p5:7.0f} {p50:7.0f} {p95:7.0f}   {mark}")
        print_fn(f"  {'SUV (mean)':18s} {'meas.':>7s}   literature")
        for name, v in st["suv"].items():
            lit = SUV_LITERATURE.get(name)
            mark = f"{lit[0][0]:.1f} to {lit[0][1]:.1f} [{_flag(v, lit[0], 0.15)}]" if lit else ""
            print_fn(f"  {name:18s} {v:7.2f}   {mark}")
        shares = ", ".join(f"{k} {100 * v:.1f} %" for k, v in st["share"].items())
        print_fn(f"  share of body voxels: {shares}")
    return rows
