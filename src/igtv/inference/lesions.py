"""Post-processing of predicted masks: the rules that drop a component, then the PET completion of the kept ones.

Pure functions over ``[z, y, x]`` arrays with a :class:`~igtv.geometry.Geometry`. Lesions are 26-connected
components of the mask. The per-lesion PET statistics live in :mod:`igtv.inference.statistics` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from igtv.data.regions import LUNG_HU, body_mask, thorax_region, tile_region  # noqa: F401 (re-exported)
from igtv.evaluation.metrics import label_lesions_boxed
from igtv.geometry import Geometry
from igtv.inference.completion import box_grown_mm, fill_hulls, grow_components, reached_from  # noqa: F401
from igtv.inference.statistics import (  # noqa: F401 (re-exported)
    SPHERE_1CC_RADIUS_MM,
    lesion_statistics,
    sphere_kernel,
    suv_peak,
)


@dataclass(frozen=True)
class PostprocessConfig:
    """Clean-up of a predicted mask, each rule off at 0 (-1024 HU, fraction 1). Rules are applied in this order and a
    component is dropped by the first rule it fails; the anatomical rules need the CT.

    The defaults were chosen by measurement: on 10 unseen phantom patients (``igtv evaluate``'s
    ``rules_measured_alone``, docs/postprocessing.md), each rule alone removed false-positive volume and no true
    lesion volume, except ``min_suv_max=2.5``, which removed 108 cc of false positives for 5.7 cc of true lesion
    (cold, sub-QC lesions). The air rule later moved from -500 to -700 HU: at -500 it dropped IGTVs, whose mean HU
    includes the lung the tumour moves through; the SUV rule later moved to the training data's QC (3.0 for the
    paper's), which removed blood-pool components and no tumour (docs/postprocessing.md)."""

    min_volume_cc: float = 0.5  # drop components smaller than this (islands)
    # drop components whose SUVmax is below this (no FDG uptake). -1: auto (resolve_auto_rules): the SUVmax QC of
    # the model's training data (the paper's SUVmax >= 3; the model never saw a target below it), else 2.5
    min_suv_max: float = -1.0
    thorax_margin_mm: float = 10.0  # keep only components touching the lungs + mediastinum, grown by this margin
    # drop components whose mean CT is below this (air: the CT shows nothing there). An IGTV holds the lung its
    # tumour moves through, so its mean is far below a GTV's: -700 HU is ~20 % soft tissue in -850 HU lung
    min_mean_hu: float = -700.0
    max_bone_fraction: float = 0.5  # drop components with more than this share of voxels above BONE_HU (bone only)
    # drop components that are not a focus of uptake: the 90th percentile SUV of the soft tissue 5-15 mm around
    # them reaches this share of their SUVmax (0: off). The uptake goes on around them: a piece of myocardium, a
    # vessel's blood pool, the rest of an avid organ. Measured (docs/postprocessing.md): mean 3D Dice +0.03 to
    # +0.05 for three models on 18 unseen phantom patients (false lesions 15-19 -> 2-6) and +0.006 / +0.10 for two
    # on 10 held-out ones; true volume lost 0-0.4 cc per patient. It also judges cold masses kept by the exception
    # below: one no hotter than the soft tissue around it is soft tissue (a cold mass in the lung has none around
    # it and stays).
    max_surround_suv_fraction: float = 0.7
    # ... but a component of lung density (mean CT below LUNG_FOCAL_MAX_HU) with at least LUNG_FOCAL_MIN_CONTACT of
    # its in-plane border in lung, at or above the SUVmax rule, is judged at this share instead (0: as any other). A
    # piece of an organ is soft tissue; a core found inside a faint tumour's breathing smear holds the lung the
    # tumour moves through, and its ring is the rest of the tumour. Measured (docs/postprocessing.md): of the 588
    # components the rule dropped for the quick Table II's 12 fine-tuned models on 103 patients, the found cores of
    # faint masses read ring/SUVmax 0.70-0.81 and every lung-density false one >= 0.85; there, true volume +204 cc
    # against false +4 cc, lesions found 1449 -> 1459, false lesions unchanged. Confirmed on 37 patients made after
    # the rule: lesions found 525 -> 535, false lesions 60 -> 61, mean Dice 77.30 -> 77.31.
    lung_focal_suv_fraction: float = 0.8
    # ... and the surround counts only where the component's uptake goes on into it: soft tissue of the ring not
    # connected to the component (within the ring's reach) through voxels of SUV >= this share of its SUVmax reads 0
    # (0: all of it counts). A piece of an organ goes on into its organ; a tumour in the lung beside a hotter organ
    # (the myocardium) is cut off from it by the lung. For components at or above the SUVmax rule only: at 0.41 x a
    # cold component's SUVmax the soft tissue's background connects anything. Measured (docs/postprocessing.md):
    # 12 fine-tuned models x 140 patients, one 8 cc lesion found by all 12 and kept now (mean Dice 77.33 -> 77.71,
    # false lesions 278 -> 278); no other reading changed there, nor on 33 patients made after the rule.
    focal_connect_suv_fraction: float = 0.41
    # drop components that wrap a cold core and are not bordered by lung: the myocardium around the blood pool.
    # The core is the part of the component's axial convex hulls outside it with SUV below COLD_CORE_SUV_FRACTION of
    # its SUVmax; the rule fires when the core is at least this share of the hulls (0: off) and less than
    # cold_core_max_lung_contact of the component's in-plane border is lung. A tumour with a necrotic or cavitating
    # centre in the lung keeps its lung border and stays. Measured (docs/postprocessing.md) on the quick Table
    # II's three +SIM models, chosen on their 12 validation patients: FP 12-48 -> 4-10 cc per patient, mean Dice
    # +0.03 to +0.12; on the 12 test patients +0.03 to +0.04, FN unchanged.
    max_cold_core_share: float = 0.1
    cold_core_max_lung_contact: float = 0.2
    # the core is also read on the PET object the component belongs to (0: the component alone): the component
    # with the voxels within COLD_CORE_REACH_MM connected to it whose SUV is at least this share of its SUVmax, on
    # the component's slices. The models often find one arc of the myocardium, whose own hulls wrap nothing; the
    # ring it belongs to wraps the blood pool. Measured (docs/postprocessing.md), chosen on the AMD host's quick
    # Table II +SIM validation patients (0.3-0.6 tried): mean Dice there 0.682 -> 0.733, false lesions 7 -> 0; on
    # its test patients 0.788 -> 0.787 (false lesions 20 -> 4, two small true lesions lost); the demo's model on 25
    # unseen patients +0.005 / +0.026, false lesions 11 -> 5, FN unchanged.
    cold_core_object_fraction: float = 0.3
    # ... and at least this SUV (0: no floor): above the soft tissue's background (~1), which a faint component's
    # 0.3 x SUVmax reaches (SUVmax 3.2: 0.96), so that its object is not the whole body. Added after a 0.7 cc true
    # lesion of a test patient went that way (not chosen on validation: 1.5 ties no floor there, 2.0 lost 0.002).
    # A faint tumour touching muscle above the floor still goes (two test lesions of SUVmax 4.4-4.7 did).
    cold_core_object_min_suv: float = 1.5
    # a cold tumour (SUVmax below min_suv_max) is kept when the CT backs it: a solid mass (mean >= SOLID_HU) of at
    # least cold_min_volume_cc with at least cold_min_lung_contact of its in-plane border in lung (0: off; -1:
    # auto, see resolve_auto_rules: on only for models trained with cold lesions, whose CT-only finds it measured)
    cold_min_volume_cc: float = -1.0
    cold_min_lung_contact: float = 0.5
    # ... and shows at least this SUVmax: below the blood pool (~1.5) and below every cold tumour of the phantom
    # (SUVpeak 1.4-2.2) and of the cold-lesion augmentation (SUVmax 1.2-2.5) it is soft tissue, not a tumour. A
    # clean-clone demo kept a 5.8 cc false lesion of SUVmax 0.73 (pleura/chest wall) without this floor.
    cold_min_suv_max: float = 1.0
    # after the rules, each kept component gains, slice by slice, the voxels of its convex hull whose SUV is at
    # least this share of the component's SUVmax (0: off): the models leave holes and notches in large tumours
    # (the hot centre of a mass against the mediastinum looks like the heart or a node to them); 0.41 is the PET
    # threshold of the threshold rows. Measured (docs/postprocessing.md): mean Dice +0.002 to +0.006 on 12
    # unseen patients and +0.02 to +0.07 on the demo's two, for three demo models; FP +1-5 cc, FN -5 to -16 cc.
    hull_fill_suv_fraction: float = 0.41
    # then each kept component grows in 3D into the connected voxels within grow_max_mm of it whose SUV is at least
    # this share of its SUVmax (0: off), unless the growth runs into that distance (see grow_components): the
    # models stop an IGTV short where its tumour's breathing smear fades on the PET (the ends of the motion, small
    # lesions most). Measured (docs/postprocessing.md) on the quick Table II's three +SIM models: mean Dice on 12
    # test patients 0.627 -> 0.686, on 12 validation patients 0.598 -> 0.611.
    grow_suv_fraction: float = 0.41
    grow_max_mm: float = 10.0
    # the growth first tries lower shares, from this one up in steps of 0.05 (0.25, 0.30, 0.35, then 0.41), and
    # takes the lowest whose growth stays inside its reach (0: only grow_suv_fraction). The breathing smear fades
    # below 41 % at the ends of the motion; a share that connects to an organ runs into the reach and is passed
    # over. Measured (docs/postprocessing.md) on the quick Table II's three +SIM models, chosen on their 12
    # validation patients (0.2-0.3 tried): mean Dice +0.012 / +0.019 / +0.010 there, FN -1.8 cc and FP +1.0 cc per
    # patient; on the 12 test patients +0.006 / +0.011 / +0.004.
    grow_min_suv_fraction: float = 0.25
    # a component whose every share runs into grow_max_mm tries the ladder again within this reach (0: off): the
    # models find part of a large central mass, which reaches more than 10 mm past that part. Measured (README
    # *Post-processing*) on the quick Table II's +SIM models, chosen on validation (15 mm tried): mean Dice +0.022 /
    # 0 / 0 there; on the test patients +0.025 / -0.001 / +0.006.
    grow_wide_mm: float = 20.0
    # prediction looks only within this reach of uptake the SUV rules can keep (prediction_tiles; 0: everywhere).
    # Measured (README *Prediction*): 222 patient readings of six quick Table II models unchanged, ~half the tiles
    uptake_reach_mm: float = 30.0


BONE_HU = 300.0
SOLID_HU = -300.0
SURROUND_MM = (5.0, 15.0)  # the shell around a component that the focal-uptake rule reads
SURROUND_PERCENTILE = 90.0
LUNG_FOCAL_MAX_HU = -50.0  # a component below this mean CT holds lung (see lung_focal_suv_fraction)
LUNG_FOCAL_MIN_CONTACT = 0.3  # ... and at least this share of its in-plane border is lung
COLD_CORE_SUV_FRACTION = 0.4  # a hull voxel below this share of the component's SUVmax is cold (the blood pool)
COLD_CORE_REACH_MM = 30.0  # how far a component's PET object may reach past its box


COLD_MIN_VOLUME_CC = 5.0  # what auto means for a model trained with cold lesions
FALLBACK_MIN_SUV_MAX = 2.5  # what auto means when the model's training data records no SUVmax QC


def resolve_auto_rules(cfg: PostprocessConfig, cold_lesions: bool, qc_suv_max: float) -> PostprocessConfig:
    """``cfg`` with its automatic settings made explicit for one model:

    - ``min_suv_max < 0``: the SUVmax QC of the model's training data (its card's ``min_suv_max``; ``prepare``'s
      default is the paper's 3.0), else 2.5. Measured (docs/postprocessing.md): on 18 unseen phantom patients,
      3.0 instead of 2.5 removed the demo model's blood-pool components (the superior vena cava, SUVmax 2.5-3) and
      no tumour (mean Dice 0.678 -> 0.695); for two quick Table II models it changed little and cost no tumour.
    - ``cold_min_volume_cc < 0``: 5 cc for a model trained with cold lesions (its card's ``cold_lesions``), else
      off. Measured: for two demo models trained with cold lesions, on 8 unseen patients, it kept 5.6 cc of tumour
      for no false volume in one and let 9.2 cc of false volume through for no tumour in the other (it is what
      finds seed 4242's cold tumour); for the quick Table II models, trained without them, it let 90-116 cc of
      false volume through for 13-14 cc of tumour on 13 patients."""
    if cfg.min_suv_max < 0:
        cfg = replace(cfg, min_suv_max=qc_suv_max if qc_suv_max > 0 else FALLBACK_MIN_SUV_MAX)
    if cfg.cold_min_volume_cc < 0:
        cfg = replace(cfg, cold_min_volume_cc=COLD_MIN_VOLUME_CC if cold_lesions else 0.0)
    return cfg


def prediction_tiles(thorax: np.ndarray | None, pet_suv: np.ndarray, geom: Geometry, cfg: PostprocessConfig):
    """Where prediction must look for ``cfg``'s rules (:func:`~igtv.data.regions.tile_region`, None: everywhere):
    ``thorax`` within ``cfg.uptake_reach_mm`` of uptake at the lowest SUVmax a kept component can have, as
    :func:`component_verdicts` reads the rules: ``min_suv_max`` (auto: 2.5), or ``cold_min_suv_max`` when the
    cold-mass exception is on."""
    min_suv = cfg.min_suv_max if cfg.min_suv_max >= 0 else FALLBACK_MIN_SUV_MAX
    lowest = min(min_suv, cfg.cold_min_suv_max) if min_suv and cfg.cold_min_volume_cc > 0 else min_suv
    return tile_region(thorax, pet_suv, geom, lowest, cfg.uptake_reach_mm)


def lung_contact(comp: np.ndarray, ct_hu: np.ndarray, width_px: int = 2) -> float:
    """Share of the in-plane border of ``comp`` (a ring ``width_px`` wide around it on each slice) that is lung
    (CT < LUNG_HU). ``ct_hu`` covers the same box as ``comp`` grown by ``width_px`` in y and x; 0 when no ring."""
    from scipy import ndimage

    pad = np.pad(comp, ((0, 0), (width_px, width_px), (width_px, width_px)))
    ring = ndimage.binary_dilation(pad, structure=np.ones((1, 3, 3), bool), iterations=width_px) & ~pad
    n = int(ring.sum())
    return float((ct_hu[ring] < LUNG_HU).sum()) / n if n else 0.0


def component_verdicts(
    mask: np.ndarray,
    pet_suv: np.ndarray,
    geom: Geometry,
    cfg: PostprocessConfig,
    ct_hu: np.ndarray | None = None,
    region: np.ndarray | None = None,
    components: tuple[np.ndarray, list] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Label the components of ``mask`` (or take ``components``, ``label_lesions_boxed(mask)``, read only) and judge
    each by the rules of ``cfg``: (labels, one record per component with its label, bounding box, volume, SUVmax,
    mean HU, the rule that drops it ('' = kept) and the reason). ``region``: a precomputed :func:`thorax_region`."""
    labels, boxes = components if components is not None else label_lesions_boxed(mask)
    if cfg.thorax_margin_mm and ct_hu is not None and boxes and region is None:
        region = thorax_region(ct_hu, geom, cfg.thorax_margin_mm)
    use_region = bool(cfg.thorax_margin_mm) and region is not None
    min_suv = cfg.min_suv_max if cfg.min_suv_max >= 0 else FALLBACK_MIN_SUV_MAX  # auto without a model
    out = []
    for lab, box in enumerate(boxes, start=1):
        comp = labels[box] == lab  # local: components are small next to the volume
        vol = float(comp.sum()) * geom.voxel_volume_cc
        suv_max = float(pet_suv[box][comp].max())
        hu = ct_hu[box][comp] if ct_hu is not None else None
        mean_hu = float(hu.mean()) if hu is not None else float("nan")
        rule, reason = "", ""
        below_qc = cold = bool(min_suv) and suv_max < min_suv
        connect = 0.0 if below_qc else cfg.focal_connect_suv_fraction  # the focal rule's reach (see its field)
        if (
            cold
            and hu is not None
            and cfg.cold_min_volume_cc > 0
            and vol >= cfg.cold_min_volume_cc
            and mean_hu >= SOLID_HU
            and suv_max >= cfg.cold_min_suv_max
        ):
            cold = lung_contact(comp, _grown(ct_hu, box, 2)) < cfg.cold_min_lung_contact  # a mass in the lung stays
        if cfg.min_volume_cc and vol < cfg.min_volume_cc:
            rule, reason = "min_volume_cc", f"volume {vol:.3f} cc < {cfg.min_volume_cc:g} cc"
        elif cold:
            rule, reason = "min_suv_max", f"SUVmax {suv_max:.2f} < {min_suv:g}"
        elif use_region and not region[box][comp].any():
            rule, reason = "thorax_margin_mm", f"outside the lungs and mediastinum (+{cfg.thorax_margin_mm:g} mm)"
        elif hu is not None and cfg.min_mean_hu > -1024 and mean_hu < cfg.min_mean_hu:
            rule, reason = "min_mean_hu", f"mean CT {mean_hu:.0f} HU < {cfg.min_mean_hu:g} HU (air)"
        elif hu is not None and cfg.max_bone_fraction < 1 and float((hu > BONE_HU).mean()) > cfg.max_bone_fraction:
            rule, reason = "max_bone_fraction", f"{float((hu > BONE_HU).mean()):.0%} of voxels > {BONE_HU:g} HU (bone)"
        elif (
            ct_hu is not None
            and cfg.max_surround_suv_fraction > 0
            and (around := surround_suv(labels, lab, box, pet_suv, ct_hu, geom, connect))
            >= cfg.max_surround_suv_fraction * suv_max
            and around >= (share := focal_share(cfg, comp, ct_hu, box, mean_hu, below_qc)) * suv_max
        ):
            rule = "max_surround_suv_fraction"
            lo, hi = SURROUND_MM
            reached = " that its uptake reaches" if connect else ""
            reason = (f"not focal: SUV p{SURROUND_PERCENTILE:g} {around:.2f} in the soft tissue {lo:g}-{hi:g} mm "
                      f"around{reached} >= {share:g} x SUVmax {suv_max:.2f}")  # fmt: skip
        elif (
            ct_hu is not None
            and cfg.max_cold_core_share > 0
            and (contact := lung_contact(comp, _grown(ct_hu, box, 2))) < cfg.cold_core_max_lung_contact
            and (core := _cold_core(labels, lab, box, comp, pet_suv, geom, suv_max, cfg))[0] >= cfg.max_cold_core_share
        ):
            rule = "max_cold_core_share"
            reason = (f"wraps a cold core ({core[0]:.0%} of {core[1]}, SUV < {COLD_CORE_SUV_FRACTION:g} x SUVmax) "
                      f"with {contact:.0%} of its border in lung: the myocardium around the blood pool")  # fmt: skip
        out.append({"label": lab, "box": box, "volume_cc": round(vol, 3), "suv_max": round(suv_max, 3),
                    "mean_hu": round(mean_hu, 1), "rule": rule, "reason": reason})  # fmt: skip
    return labels, out


def focal_share(
    cfg: PostprocessConfig, comp: np.ndarray, ct_hu: np.ndarray, box: tuple[slice, ...], mean_hu: float, below_qc: bool
) -> float:
    """The share of its SUVmax at which a component's surround makes it not focal: ``lung_focal_suv_fraction`` for a
    component at or above the SUVmax rule (not ``below_qc``) of lung density (``mean_hu`` < LUNG_FOCAL_MAX_HU) with
    at least LUNG_FOCAL_MIN_CONTACT of its in-plane border in lung, else ``max_surround_suv_fraction``; the lung
    share only ever relaxes the rule (a lower one is not used). ``comp``: the component within ``box``."""
    share = cfg.max_surround_suv_fraction
    if (
        cfg.lung_focal_suv_fraction > share
        and not below_qc
        and mean_hu < LUNG_FOCAL_MAX_HU
        and lung_contact(comp, _grown(ct_hu, box, 2)) >= LUNG_FOCAL_MIN_CONTACT
    ):
        return cfg.lung_focal_suv_fraction
    return share


def _cold_core(labels, lab, box, comp, pet_suv, geom, suv_max, cfg) -> tuple[float, str]:
    """The cold-core share of a component's own axial hulls, else of its PET object's (see PostprocessConfig)."""
    share = cold_core_share(comp, pet_suv[box], suv_max)
    if share >= cfg.max_cold_core_share or cfg.cold_core_object_fraction <= 0:
        return share, "its hulls"
    floor = max(cfg.cold_core_object_fraction * suv_max, cfg.cold_core_object_min_suv)
    return max(share, object_cold_core_share(labels, lab, box, pet_suv, geom, suv_max, floor)), (
        f"the hulls of its PET object (SUV >= {floor:.2f})"
    )


def object_cold_core_share(
    labels: np.ndarray,
    lab: int,
    box: tuple[slice, ...],
    pet_suv: np.ndarray,
    geom: Geometry,
    suv_max: float,
    min_suv: float,
) -> float:
    """:func:`cold_core_share` of the PET object of component ``lab``: the component with the voxels within
    ``COLD_CORE_REACH_MM`` connected to it whose SUV is at least ``min_suv``, on its own slices."""
    from scipy import ndimage

    grown = box_grown_mm(box, geom.spacing_mm[::-1], COLD_CORE_REACH_MM)
    comp = labels[grown] == lab
    pet = pet_suv[grown]
    hot, _ = ndimage.label(comp | (pet >= min_suv))
    ids = np.unique(hot[comp])
    obj = np.isin(hot, ids[ids > 0]) & comp.any(axis=(1, 2))[:, None, None]  # (z, y, x) on the component's slices
    return cold_core_share(obj, pet, suv_max)


def cold_core_share(comp: np.ndarray, pet_suv: np.ndarray, suv_max: float) -> float:
    """Share of the axial convex hulls of ``comp`` (slices of 3+ voxels; ``pet_suv`` covers its box) that lies
    outside it with SUV below ``COLD_CORE_SUV_FRACTION`` x ``suv_max``: the cold blood pool a myocardium wraps."""
    from skimage.morphology import convex_hull_image

    hull_px = core_px = 0
    for z in range(comp.shape[0]):
        if comp[z].sum() >= 3:  # a hull needs 3 points
            hull = convex_hull_image(comp[z])
            hull_px += int(hull.sum())
            core_px += int((hull & ~comp[z] & (pet_suv[z] < COLD_CORE_SUV_FRACTION * suv_max)).sum())
    return core_px / hull_px if hull_px else 0.0


def surround_suv(
    labels: np.ndarray,
    lab: int,
    box: tuple[slice, ...],
    pet_suv: np.ndarray,
    ct_hu: np.ndarray,
    geom: Geometry,
    connect_fraction: float = 0.0,
) -> float:
    """The ``SURROUND_PERCENTILE`` SUV of the soft tissue (CT > -400 HU: lung and air left out) between
    ``SURROUND_MM`` around component ``lab`` of ``labels`` (its bounding box ``box``); 0 when there is none. With
    ``connect_fraction``, soft tissue that the component does not reach through voxels (26-connected, within the
    outer distance) of SUV >= that share of its SUVmax reads 0: uptake that does not go on from the component."""
    from scipy import ndimage

    inner, outer = SURROUND_MM
    spacing_zyx = geom.spacing_mm[::-1]
    grown = box_grown_mm(box, spacing_zyx, outer)
    comp = labels[grown] == lab
    dist = ndimage.distance_transform_edt(~comp, sampling=spacing_zyx)
    shell = (dist > inner) & (dist <= outer) & (ct_hu[grown] > LUNG_HU)
    if not shell.any():
        return 0.0
    pet = pet_suv[grown]
    ring = pet[shell]
    if connect_fraction > 0:
        avid = (pet >= connect_fraction * float(pet[comp].max())) & (dist <= outer)
        ring = np.where(reached_from(comp, avid)[shell], ring, 0.0)  # (n_shell,)
    return float(np.percentile(ring, SURROUND_PERCENTILE))


def _grown(volume: np.ndarray, box: tuple[slice, ...], px: int) -> np.ndarray:
    """``volume[box]`` grown by ``px`` in y and x, padded with -1024 (air) beyond the volume's edge."""
    zs, ys, xs = box
    ny, nx = volume.shape[1:]
    y0, y1, x0, x1 = ys.start - px, ys.stop + px, xs.start - px, xs.stop + px
    sub = volume[zs, max(y0, 0) : min(y1, ny), max(x0, 0) : min(x1, nx)]
    pad = ((0, 0), (max(0, -y0), max(0, y1 - ny)), (max(0, -x0), max(0, x1 - nx)))
    return np.pad(sub, pad, constant_values=-1024)


def drop_components(mask: np.ndarray, labels: np.ndarray, verdicts: list[dict]) -> np.ndarray:
    """``mask`` without the components that a rule drops (from :func:`component_verdicts`), box by box."""
    keep = np.asarray(mask, dtype=bool).copy()
    for v in verdicts:
        if v["rule"]:
            keep[v["box"]] &= labels[v["box"]] != v["label"]
    return keep


def refine(mask: np.ndarray, pet_suv: np.ndarray, geom: Geometry, cfg: PostprocessConfig) -> np.ndarray:
    """The kept components after the rules, completed from the PET: hulls filled (:func:`fill_hulls`), then grown
    (:func:`grow_components`)."""
    filled = fill_hulls(mask, pet_suv, cfg.hull_fill_suv_fraction)
    return grow_components(
        filled, pet_suv, geom, cfg.grow_suv_fraction, cfg.grow_max_mm, cfg.grow_min_suv_fraction, cfg.grow_wide_mm
    )


def postprocess(
    mask: np.ndarray,
    pet_suv: np.ndarray,
    geom: Geometry,
    cfg: PostprocessConfig,
    ct_hu: np.ndarray | None = None,
    region: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Drop the components that fail a rule of ``cfg`` (see :func:`component_verdicts`), then fill the kept ones'
    hulls and grow them where the PET is avid (:func:`refine`); returns the cleaned mask and one record per dropped
    component (volume, SUVmax, mean HU, rule, reason). ``region``: a precomputed :func:`thorax_region`."""
    labels, verdicts = component_verdicts(mask, pet_suv, geom, cfg, ct_hu, region)
    keep = refine(drop_components(mask, labels, verdicts), pet_suv, geom, cfg)
    dropped = [{k: v[k] for k in ("volume_cc", "suv_max", "mean_hu", "rule", "reason")} for v in verdicts if v["rule"]]
    return keep, dropped
