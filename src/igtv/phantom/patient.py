"""One phantom patient: :func:`simulate_patient` returns CT and PET arrays with their geometry and ground truth.

Motion follows the Lujan model s(t) = sin^4(pi t) (t in [0, 1), s = 0 at end exhale, s = 1 at end inhale):
tumours move inferiorly by A_si * s(t) with smaller AP/LR components lagging by a hysteresis phase; the
diaphragm (liver, abdomen) and, less, the heart move with it. The planning CT is the end-exhale phase; the PET
is the time average over the cycle on a finer grid, blurred by the scanner PSF, averaged onto the PET's own
coarser grid and given signal-dependent noise. GTV = tumour at the CT phase; IGTV = union over all phases.

Coordinates: anatomy is defined in millimetres in an *anatomical* frame (DICOM LPS axes: +x patient left,
+y posterior, +z superior) whose origin is the top of the right diaphragm dome on the body's midline at end
exhale. The patient (DICOM) frame is the anatomical frame shifted by a per-patient table offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from igtv.geometry import Geometry
from igtv.phantom.anatomy import Anatomy
from igtv.phantom.config import CT_MATRIX, LUCID_SCANNERS, PCLT_SCANNERS, PhantomConfig
from igtv.phantom.draw import sample_anatomy
from igtv.phantom.imaging import RECON_STYLES, image_grids, simulate_ct, simulate_pet
from igtv.phantom.lesion import Lesion, hila, igtv_mask, sample_lesion


@dataclass
class PhantomPatient:
    """One synthetic patient: images with geometry, ground truth and acquisition metadata."""

    index: int
    cohort: str
    ct_hu: np.ndarray  # int16 [z, y, x]
    ct_geom: Geometry
    pet_suv: np.ndarray  # float32 [z, y, x], the ground-truth SUV stored (as Bq/ml) in the PET series
    pet_geom: Geometry
    gtv: np.ndarray  # uint8 [z, y, x] on the CT grid, value k = lesion k (1-based)
    igtv: np.ndarray  # uint8 [z, y, x] on the CT grid
    lesions: list[Lesion]
    anatomy: Anatomy
    scanner: dict
    acquisition: dict  # weight, dose, times, half-life
    offset_mm: tuple[float, float, float]  # patient = anatomical + offset
    imaging: dict = field(default_factory=dict)  # acquisition physics drawn for this patient

    def lesion_truth(self) -> list[dict]:
        vox_cc = self.ct_geom.voxel_volume_cc
        out = []
        for k, les in enumerate(self.lesions, start=1):
            out.append(
                {
                    "lesion": k,
                    "location": les.location,
                    "gtv_cc": float((self.gtv == k).sum() * vox_cc),
                    "igtv_cc": float((self.igtv == k).sum() * vox_cc),
                    "target_volume_cc": les.target_volume_cc,
                    "suv_peak_true": les.suv_peak,
                    "amplitude_mm": {"si": les.amp_si, "ap": les.amp_ap, "lr": les.amp_lr},
                    "hysteresis_cycle": les.hysteresis,
                    "centre_mm": [c + o for c, o in zip(les.centre, self.offset_mm, strict=True)],
                }
            )
        return out


def pick_scanner(cohort: str, rng: np.random.Generator, randomize: bool = False) -> dict:
    """A scanner of the cohort's Table I mix; under domain randomisation, voxel sizes, PSF and reconstruction are
    drawn from wide continuous ranges instead."""
    table = PCLT_SCANNERS if cohort == "gtv" else LUCID_SCANNERS
    p = np.array([w for w, _ in table])
    prof = table[int(rng.choice(len(table), p=p / p.sum()))][1]
    out = {
        "manufacturer": prof.manufacturer,
        "model": str(rng.choice(prof.models)),
        "ct_pixel_mm": float(rng.choice(prof.ct_pixel_mm)),
        "ct_slice_mm": float(rng.choice(prof.ct_slice_mm)),
        "pet_pixel_mm": float(rng.choice(prof.pet_pixel_mm)),
        "pet_slice_mm": float(rng.choice(prof.pet_slice_mm)),
        "pet_recon": str(rng.choice(prof.pet_recon)),
        "psf_fwhm_mm": float(rng.uniform(*prof.psf_fwhm_mm)),
    }
    if randomize:
        out.update(
            ct_pixel_mm=round(float(rng.uniform(0.6, 1.5)), 3),
            ct_slice_mm=round(float(rng.uniform(1.25, 5.0)), 2),
            pet_pixel_mm=round(float(rng.uniform(2.0, 5.5)), 3),
            pet_slice_mm=round(float(rng.uniform(2.0, 5.0)), 2),
            pet_recon=str(rng.choice(sorted(RECON_STYLES))),
            psf_fwhm_mm=float(rng.uniform(3.0, 9.0)),
        )
    return out


def sample_imaging(cfg: PhantomConfig, anat: Anatomy, scanner: dict, rng: np.random.Generator) -> dict:
    """Acquisition physics of one patient: CT noise and breathing state, PET iterations, PSF overshoot, noise,
    misregistration and arm truncation."""
    r = cfg.randomize
    n_ct = max(16, int(round(CT_MATRIX * cfg.matrix_scale)))
    out = {
        "ct_noise_hu": float(rng.uniform(4.0, 30.0) if r else rng.uniform(9.0, 14.0)),
        "lung_gradient_hu": float(rng.uniform(0.0, 90.0) if r else rng.uniform(20.0, 60.0)),
        "pet_iterations": int(rng.integers(2, 5)),
        "psf_overshoot": float(rng.uniform(0.0, 0.6) if r else rng.uniform(0.2, 0.45)),
        "pet_noise": float(rng.uniform(0.05, 0.3) if r else rng.uniform(0.1, 0.14)),
        "ct_half_fov_mm": scanner["ct_pixel_mm"] * CT_MATRIX / 2.0 * (n_ct / n_ct),
        "truncation_factor": float(rng.uniform(0.35, 0.65)),
        "free_breathing_ct": bool(rng.random() < (0.3 if r else 0.15)),
        "pet_misregistration_mm": float(rng.uniform(-12.0, 12.0)) if rng.random() < (0.4 if r else 0.2) else 0.0,
    }
    return out


def patient_rng(cfg: PhantomConfig, index: int) -> np.random.Generator:
    """Each patient draws from its own stream, so patients are independent of each other and of worker count."""
    cohort_id = {"gtv": 1, "igtv": 2}[cfg.cohort]
    return np.random.default_rng([cfg.seed, cohort_id, index])


def simulate_patient(cfg: PhantomConfig, index: int) -> PhantomPatient:
    """Synthesise patient ``index`` of the cohort described by ``cfg`` (deterministic in seed, cohort, index)."""
    rng = patient_rng(cfg, index)
    anat = sample_anatomy(rng, cfg.randomize)
    scanner = pick_scanner(cfg.cohort, rng, cfg.randomize)
    z_lo = anat.dome_left_z - anat.recess_mm - rng.uniform(20, 40)
    z_top = z_lo + cfg.z_extent_mm - 10.0  # lesions stay inside the scanned length
    n_les = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
    n_les = min(n_les, cfg.max_lesions)
    lesions: list[Lesion] = []
    for _ in range(n_les):
        sub = rng.random() < cfg.sub_qc_fraction
        kind = rng.random()
        lesions.append(
            sample_lesion(
                anat,
                rng,
                cold=sub and kind < 0.5,
                small=sub and kind >= 0.5,
                avoid=lesions,
                randomize=cfg.randomize,
                z_max=z_top,
            )
        )
    anat = _with_atelectasis(anat, lesions, rng)
    imaging = sample_imaging(cfg, anat, scanner, rng)
    offset = np.array([rng.uniform(-15, 15), rng.uniform(-40, 0), rng.uniform(-250, -120)])
    ct_geom, pet_geom = image_grids(cfg, scanner, z_lo, offset)
    if imaging["free_breathing_ct"]:
        imaging["ct_slice_phase"] = rng.uniform(0.0, 1.0, ct_geom.shape_zyx[0])
    ct, gtv, igtv = simulate_ct(anat, lesions, ct_geom, offset, rng, imaging)
    for k, les in enumerate(lesions, start=1):
        sl, union = igtv_mask(les, ct_geom, offset, max(1.0, 0.5 * min(ct_geom.spacing_mm)))
        region = igtv[sl]
        region[union & (region == 0)] = k
    pet = simulate_pet(anat, lesions, pet_geom, offset, scanner, cfg.n_phases, rng, imaging)
    acquisition = {
        "weight_kg": float(np.round(rng.uniform(48, 110), 1)),
        "dose_bq": float(np.round(rng.uniform(180e6, 420e6), -5)),
        "uptake_s": float(np.round(rng.uniform(50, 75) * 60)),
        "half_life_s": 6586.2,
        "injection_hms": (int(rng.integers(7, 15)), int(rng.integers(0, 60)), int(rng.integers(0, 60))),
        "date": f"2024{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
    }
    return PhantomPatient(
        index=index,
        cohort=cfg.cohort,
        ct_hu=ct,
        ct_geom=ct_geom,
        pet_suv=pet,
        pet_geom=pet_geom,
        gtv=gtv,
        igtv=igtv,
        lesions=lesions,
        anatomy=anat,
        scanner=scanner,
        acquisition=acquisition,
        offset_mm=tuple(float(o) for o in offset),
        imaging={k: v for k, v in imaging.items() if k != "ct_slice_phase"},
    )


def _with_atelectasis(anat: Anatomy, lesions: list[Lesion], rng: np.random.Generator) -> Anatomy:
    """Half of the central (hilar) tumours collapse the lung beyond them: a cone pointing away from the hilum."""
    cones = []
    for les in lesions:
        if les.location != "hilar" or rng.random() >= 0.5:
            continue
        hil = min(hila(anat), key=lambda h: np.linalg.norm(np.asarray(h) - np.asarray(les.centre)))
        u = np.asarray(les.centre) - np.asarray(hil)
        u[2] -= 0.5 * np.linalg.norm(u)  # and downwards (lower lobe collapse is the commonest)
        u /= np.linalg.norm(u) + 1e-9
        half = np.deg2rad(rng.uniform(18, 32))
        cones.append((*les.centre, *u, float(np.cos(half)), float(rng.uniform(50, 90))))
    if not cones:
        return anat
    feats = {**anat.features, "atelectasis": len(cones)}
    return replace(anat, atelectasis=tuple(cones), features=feats)
