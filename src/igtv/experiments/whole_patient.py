"""Whole-patient evaluation: the number a user gets from ``igtv predict``, nothing taken from the truth.

Every test patient's prepared volumes (``volumes/<P>/{ct_hu,pet_suv,labels}.nii.gz``) go through the prediction
pipeline of ``igtv predict`` (windows from the checkpoint, sliding window or whole slices, PET candidates found
on the PET alone, post-processing) and the resulting 3D mask is scored against the union of the patient's
labelled ROIs that the dataset's QC kept, on the CT grid (the ROIs it excluded, below 3 cc or SUVmax 3 for the
paper's QC, are ignored, and the Dice against all ROIs is reported beside it): Dice, HD95 (mm), false-positive
and false-negative volume (every wrong voxel), lesion-level detection (a true lesion is hit when a predicted
component overlaps it; one touching no true lesion is a false lesion) and autoPET's FP/FN volumes (cc of false and
missed lesions). For each post-processing rule it also reports what the rule removed that was false (FP cc) and
what it removed that was true (TP cc), so each rule's worth is measured.

The paper's per-slice protocol is read from the same prediction: Eqs. 9-12 on every ROI slice of the split (the
slices of ``slices.csv`` with role ``sample``), without the truth's SUVmax window or box.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from igtv.evaluation import metrics as M
from igtv.evaluation.metrics import lesion_detection
from igtv.experiments.mask_cache import cached_mask
from igtv.inference.lesions import PostprocessConfig, resolve_auto_rules
from igtv.inference.sliding import DEFAULT_OVERLAP

log = logging.getLogger(__name__)


def rule_effects(
    raw: np.ndarray,
    truth: np.ndarray,
    labels: np.ndarray,
    verdicts: list[dict],
    voxel_cc: float,
    ignore: np.ndarray | None = None,
):
    """Per post-processing rule: cc it removed outside the truth (false positives removed) and inside it (true
    positives lost); voxels of ``ignore`` (ROIs the dataset's QC excluded) count as neither."""
    out: dict[str, dict[str, float]] = {}
    for v in verdicts:
        if not v["rule"]:
            continue
        box = v["box"]
        comp = labels[box] == v["label"]
        if ignore is not None:
            comp &= ~ignore[box]
        e = out.setdefault(v["rule"], {"components": 0, "fp_removed_cc": 0.0, "tp_removed_cc": 0.0})
        e["components"] += 1
        e["tp_removed_cc"] += float((comp & truth[box]).sum()) * voxel_cc
        e["fp_removed_cc"] += float((comp & ~truth[box]).sum()) * voxel_cc
    return out


# Each post-processing rule measured alone on every evaluated patient (whatever the applied settings are), so the
# README can say what each rule buys: false-positive cc it removes against true-positive cc it costs.
NO_RULES = PostprocessConfig(
    min_volume_cc=0.0,
    min_suv_max=0.0,
    thorax_margin_mm=0.0,
    min_mean_hu=-1024.0,
    max_bone_fraction=1.0,
    max_surround_suv_fraction=0.0,
    lung_focal_suv_fraction=0.0,
    focal_connect_suv_fraction=0.0,
    max_cold_core_share=0.0,
    cold_min_volume_cc=0.0,
    hull_fill_suv_fraction=0.0,
    grow_suv_fraction=0.0,
)
CANDIDATE_RULES = {
    "min_volume_cc=0.5": replace(NO_RULES, min_volume_cc=0.5),
    "min_suv_max=2.5": replace(NO_RULES, min_suv_max=2.5),
    "min_suv_max=2.5, cold CT mass >= 5 cc kept": replace(NO_RULES, min_suv_max=2.5, cold_min_volume_cc=5.0),
    "min_suv_max=3 (the paper's QC)": replace(NO_RULES, min_suv_max=3.0),
    "min_suv_max=3, cold CT mass >= 5 cc kept": replace(NO_RULES, min_suv_max=3.0, cold_min_volume_cc=5.0),
    "thorax_margin_mm=10": replace(NO_RULES, thorax_margin_mm=10.0),
    "min_mean_hu=-700": replace(NO_RULES, min_mean_hu=-700.0),
    "max_bone_fraction=0.5": replace(NO_RULES, max_bone_fraction=0.5),
    "max_surround_suv_fraction=0.7": replace(NO_RULES, max_surround_suv_fraction=0.7),
    "max_surround_suv_fraction=0.7, lung-density components 0.8": replace(
        NO_RULES, max_surround_suv_fraction=0.7, lung_focal_suv_fraction=0.8
    ),
    "max_surround_suv_fraction=0.7, its surround reached at 0.41 x SUVmax": replace(
        NO_RULES, max_surround_suv_fraction=0.7, focal_connect_suv_fraction=0.41
    ),
    "max_cold_core_share=0.1": replace(NO_RULES, max_cold_core_share=0.1),
}


@dataclass(frozen=True)
class WholePatientConfig:
    split: str = "test"
    tta: bool = False
    batch_size: int = 0  # tiles per forward pass; 0: 16 on a CPU, igtv.device.auto_batch_size (and >= 16) on CUDA
    overlap: float = DEFAULT_OVERLAP  # sliding-window tile overlap (patch models)
    keep_masks: bool = False  # return the predicted masks of the ROI slices (figures)
    precision: str = "auto"  # forward passes: auto (AMP on CUDA, fp32 on CPU), fp32 or bf16
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    # predict only the tiles `igtv predict` predicts: those overlapping the thorax rule's region within reach of
    # uptake the SUV rules keep (patch models; the rules' measured worth is then what they remove from the prediction
    # a user gets)
    region_tiles: bool = True
    # keep each checkpoint's probability maps beside it (probabilities/<split>/<patient>-<dataset>.npz, keyed on the
    # checkpoint and these settings) and reuse them: an ensemble of seeds already scored costs only its post-processing
    cache_probabilities: bool = False
    # score against the ROIs the dataset's QC kept (the paper's inclusion: >= 3 cc, SUVmax >= 3); voxels of the ROIs
    # it excluded count as neither false positive nor false negative, as nnU-Net's ignore label, and so does a
    # predicted component that touches one of them and no scored ROI (see ignored_voxels). The score against
    # all ROIs is reported beside it (dice_3d_all_lesions).
    ignore_qc_excluded: bool = True
    bootstrap: int = 1000
    seed: int = 0
    threshold: float | None = None  # probability threshold of the masks (None: the checkpoint's)


def ignored_voxels(pred: np.ndarray, truth: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """What scoring leaves out: the voxels of the ROIs the QC excluded, and every predicted component (26-connected)
    that overlaps one of them and no scored ROI, so that a contour of an excluded lesion, which may reach past its
    ROI, is neither a false positive nor a false lesion."""
    from igtv.evaluation.metrics import label_lesions

    out = np.asarray(excluded, dtype=bool).copy()
    if not out.any() or not pred.any():
        return out
    labels, _ = label_lesions(pred)
    on_excluded = np.unique(labels[out & (labels > 0)])
    on_truth = np.unique(labels[truth & (labels > 0)])
    out |= np.isin(labels, np.setdiff1d(on_excluded, on_truth))
    return out


def qc_excluded_rois(root: Path, patient: str) -> list[int]:
    """Labels of the patient's ROIs that ``igtv prepare``'s QC excluded (its ``patients/<P>.json``; none if absent)."""
    path = root / "patients" / f"{patient}.json"
    if not path.exists():
        return []
    return [int(r["roi"]) for r in json.loads(path.read_text()).get("rois", []) if r.get("status") == "excluded"]


def _sample_slices(root: Path, patient: str) -> dict[int, set[int]]:
    """ROI -> slice indices that are samples of the paper protocol (slices.csv, role sample)."""
    out: dict[int, set[int]] = {}
    path = root / "slices.csv"
    if not path.exists():
        return out
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["patient"] == patient and r.get("role", "sample") == "sample":
                out.setdefault(int(r["roi"]), set()).add(int(r["slice_index"]))
    return out


def model_raw_mask(lm, device, cfg: WholePatientConfig, cache_as: Path | None = None):
    """``(ct_hu, pet_suv, geom, truth, region) -> raw mask`` of a loaded model, or of an ensemble (a list of them:
    the mean probability), through the predict pipeline (the truth is not used; ``region``, when not None, limits
    the tiles as in ``igtv predict``). With ``cache_as`` (the patient's volume folder), each member's map is kept
    beside its checkpoint and reused (:func:`igtv.inference.ensemble.cached_probability`), keyed on the checkpoint,
    the settings and the patient's CT file, so another dataset's patient of the same name is never mistaken for it."""
    import torch

    from igtv.device import auto_batch_size
    from igtv.inference.ensemble import cache_key, cached_patient_probability, ensemble_probability
    from igtv.inference.predict import predict_volume
    from igtv.inference.predictor import apply_flips, canonical_flips

    members = list(lm) if isinstance(lm, (list, tuple)) else [lm]
    dev = torch.device(device)
    batch = cfg.batch_size or max(16, auto_batch_size(dev, members[0].patch))  # 16 on a CPU
    settings = {"overlap": cfg.overlap, "tta": cfg.tta, "batch_size": batch, "precision": cfg.precision,
                "device": dev.type}  # fmt: skip

    def run(ct, pet, geom, truth, region=None):
        flips = canonical_flips(geom)
        ct_c, pet_c = apply_flips(ct, flips), apply_flips(pet, flips)
        region_c = None if region is None else apply_flips(region, flips)

        def one(m) -> tuple[np.ndarray, list]:
            def compute() -> np.ndarray:
                prob_c, _ = predict_volume(
                    m, ct_c, pet_c, geom.spacing_mm, device, cfg.tta, batch, False, cfg.overlap, region_c
                )
                return np.ascontiguousarray(apply_flips(prob_c, flips))

            if cache_as is None:
                return compute(), []
            ct_file = (cache_as / "ct_hu.nii.gz").resolve()
            volume = {"ct": str(ct_file), "ct_size": ct_file.stat().st_size, "ct_mtime_ns": ct_file.stat().st_mtime_ns}
            key = cache_key(m, {**settings, **volume, "region": None if region is None else int(region.sum())})
            return cached_patient_probability(Path(m.path), cfg.split, cache_as, key, compute), []

        prob, _ = ensemble_probability(members, one)
        return prob >= members[0].threshold * 255.0

    return run


def threshold_raw_mask(rule: str):
    """``(ct_hu, pet_suv, geom, truth) -> mask`` of a PET threshold inside each true lesion's box + 15 mm."""
    from igtv.evaluation.baselines import threshold_volume

    return lambda ct, pet, geom, truth, region=None: threshold_volume(pet, truth, tuple(geom.spacing_mm[::-1]), rule)


def evaluate_patient(predict_raw, volume_dir: Path, cfg: WholePatientConfig, root: Path | None = None) -> dict:
    """Contour one prepared patient with ``predict_raw`` (see :func:`model_raw_mask`), post-process and score it;
    returns its row, the post-processing rules' effects and the paper-protocol slice rows."""
    from igtv.data.cases import load_avoid
    from igtv.experiments.evaluate import slice_row
    from igtv.geometry import load_nifti
    from igtv.inference.lesions import component_verdicts

    t0 = time.perf_counter()
    ct, geom = load_nifti(volume_dir / "ct_hu.nii.gz")
    pet, _ = load_nifti(volume_dir / "pet_suv.nii.gz")
    labels, _ = load_nifti(volume_dir / "labels.nii.gz")
    ct, pet = ct.astype(np.float32), pet.astype(np.float32)
    excluded = qc_excluded_rois(root, volume_dir.name) if root is not None and cfg.ignore_qc_excluded else []
    truth = (labels > 0) & ~np.isin(labels, excluded)
    avoid = load_avoid(volume_dir, ct.shape)
    from igtv.inference.lesions import drop_components, prediction_tiles, refine, thorax_region

    ct_file, pet_file = volume_dir / "ct_hu.nii.gz", volume_dir / "pet_suv.nii.gz"

    @functools.cache  # thorax region per margin (once per process: Table II scores ten rows on the same patients)
    def region_of(margin_mm: float) -> np.ndarray:
        return cached_mask([ct_file], ("thorax", float(margin_mm)), lambda: thorax_region(ct, geom, margin_mm))

    margin, post = cfg.postprocess.thorax_margin_mm, cfg.postprocess

    def tiles_of() -> np.ndarray | None:
        return prediction_tiles(region_of(margin) if margin else None, pet, geom, post)

    tiles = cached_mask([ct_file, pet_file], ("tiles", post), tiles_of)  # the files' and the rules' only
    raw = predict_raw(ct, pet, geom, truth, tiles if cfg.region_tiles else None)

    def region(margin_mm: float) -> np.ndarray | None:
        return region_of(margin_mm) if margin_mm and raw.any() else None

    components = M.label_lesions_boxed(raw)  # one labelling for the applied rules and each rule measured alone
    comp_labels, verdicts = component_verdicts(
        raw, pet, geom, cfg.postprocess, ct, region(cfg.postprocess.thorax_margin_mm), components
    )
    kept = drop_components(raw, comp_labels, verdicts)
    pred = refine(kept, pet, geom, cfg.postprocess)
    spacing = tuple(geom.spacing_mm[::-1])
    vcc = geom.voxel_volume_cc
    ignore = ignored_voxels(pred, truth, np.isin(labels, excluded))  # scored as neither right nor wrong
    scored, scored_raw, scored_kept = pred & ~ignore, raw & ~ignore, kept & ~ignore
    row = {
        "patient": volume_dir.name,
        "dice_3d": M.dice(scored, truth),
        "iou_3d": M.iou(scored, truth),
        "hd95_3d_mm": M.hd95(scored, truth, spacing),
        "dice_3d_raw": M.dice(scored_raw, truth),
        "dice_3d_all_lesions": M.dice(pred, labels > 0),
        "qc_excluded_rois": len(excluded),
        **M.overlap_volumes_cc(scored, truth, spacing),
        "false_lesions_avoid": None,  # unknown without avoid.nii.gz; lesion_detection counts it with one
        **lesion_detection(scored, truth, vcc, avoid),
        **refine_effects(scored_kept, scored, truth, vcc),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    slices, masks = [], {}
    if root is not None:
        sp2 = (geom.spacing_mm[1], geom.spacing_mm[0])
        for roi, zs in sorted(_sample_slices(root, volume_dir.name).items()):
            for z in sorted(zs):
                r = slice_row(pred[z], labels[z] == roi, sp2)
                item = f"{volume_dir.name}_r{roi}_{z:04d}"
                slices.append({"item": item, "patient": volume_dir.name, **r, "hd95_unit": "mm"})
                if cfg.keep_masks:
                    masks[item] = pred[z].copy()
    measured = {}
    for name, single in CANDIDATE_RULES.items():
        lab_s, ver_s = component_verdicts(raw, pet, geom, single, ct, region(single.thorax_margin_mm), components)
        eff = rule_effects(raw, truth, lab_s, ver_s, vcc, ignore)
        measured[name] = next(iter(eff.values()), {"components": 0, "fp_removed_cc": 0.0, "tp_removed_cc": 0.0})
    rules = rule_effects(raw, truth, comp_labels, verdicts, vcc, ignore)
    return {"row": row, "rules": rules, "measured": measured, "slices": slices, "masks": masks}


def refine_effects(kept: np.ndarray, pred: np.ndarray, truth: np.ndarray, voxel_cc: float) -> dict[str, float]:
    """What the PET completion (:func:`~igtv.inference.lesions.refine`: hull fill and growth) added to the kept
    components: cc inside the truth (true positives gained) and outside it (false positives added)."""
    added = np.asarray(pred, dtype=bool) & ~np.asarray(kept, dtype=bool)
    return {"refine_tp_added_cc": float((added & truth).sum()) * voxel_cc,
            "refine_fp_added_cc": float((added & ~truth).sum()) * voxel_cc}  # fmt: skip


def _sum_effects(per_patient: list[dict]) -> dict:
    total: dict[str, dict[str, float]] = {}
    for per in per_patient:
        for rule, e in per.items():
            t = total.setdefault(rule, {"components": 0, "fp_removed_cc": 0.0, "tp_removed_cc": 0.0})
            for key in t:
                t[key] += e[key]
    return total


def summarize_patients(rows: list[dict], rules: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Means, medians and bootstrap 95 % CI of the 3D Dice; totals of FP/FN, lesions and rule effects."""
    from igtv.evaluation.statistics import bootstrap_ci

    out: dict = {"patients": len(rows)}
    keys = ("dice_3d", "dice_3d_all_lesions", "iou_3d", "hd95_3d_mm", "false_positive_cc", "false_negative_cc",
            "false_lesion_cc", "missed_lesion_cc")  # fmt: skip
    for k in keys:
        a = np.asarray([r.get(k, np.nan) for r in rows], dtype=np.float64)
        a = a[np.isfinite(a)]
        out[k] = {"mean": float(a.mean()), "median": float(np.median(a)), "n": int(a.size)} if a.size else {"n": 0}
    if rows:
        dices = {r["patient"]: [r["dice_3d"]] for r in rows}
        ci = bootstrap_ci(dices, lambda v: {"d": float(np.mean(v))}, n_boot, seed).get("d", (np.nan, np.nan))
        out["dice_3d"]["ci95"] = list(ci)
    for k in ("lesions_true", "lesions_hit", "lesions_missed", "false_lesions"):
        out[k] = int(sum(r[k] for r in rows))
    known = [r["false_lesions_avoid"] for r in rows if r.get("false_lesions_avoid") is not None]
    out["false_lesions_avoid"] = int(sum(known)) if known else None  # on the marked structures (nodes), where known
    for k in ("refine_tp_added_cc", "refine_fp_added_cc"):  # totals over the patients
        out[k] = float(sum(r.get(k, 0.0) for r in rows))
    out["postprocess_rules"] = _sum_effects(rules)
    return out


def evaluate_whole_patients(
    model_path: str | Path | Sequence[str | Path] | None,
    data: str | Path,
    out: str | Path | None = None,
    cfg: WholePatientConfig | None = None,
    device: str = "auto",
    progress: bool = True,
    threshold_rule: str = "",
) -> dict:
    """Score a checkpoint (or, with ``threshold_rule``, a PET threshold given each lesion's box) on every patient of
    a split of a prepared dataset, whole patient; writes ``whole_patient.csv``, ``whole_patient_slices.csv`` and
    ``whole_patient.json`` into ``out`` when given."""
    from tqdm import tqdm

    from igtv.data.cases import split_patients
    from igtv.device import pick_device
    from igtv.experiments.evaluate import EvalConfig, summarize
    from igtv.inference.ensemble import describe_members, load_models
    from igtv.io import write_csv_atomic, write_text_atomic

    cfg = cfg or WholePatientConfig()
    root = Path(data)
    if threshold_rule:
        predict_raw, facts = threshold_raw_mask(threshold_rule), {"model": f"PET threshold {threshold_rule}"}
    else:
        dev = pick_device(device)
        members = load_models(model_path, dev, threshold=cfg.threshold)
        for m in members:
            m.precision = cfg.precision
        lm = members[0]
        cfg = replace(cfg, postprocess=resolve_auto_rules(cfg.postprocess, lm.cold_lesions, lm.min_suv_max))
        predict_raw, facts = None, describe_members(members)
    patients = [p for p in split_patients(root, cfg.split) if (root / "volumes" / p / "labels.nii.gz").exists()]
    if not patients:
        raise ValueError(f"{root}: no patient of split {cfg.split!r} has volumes (run igtv prepare)")
    rows, rules, measured, slices, masks = [], [], [], [], {}
    for p in tqdm(patients, desc="whole-patient", unit="patient", disable=not progress):
        volume = root / "volumes" / p
        raw = predict_raw or model_raw_mask(members, dev, cfg, volume if cfg.cache_probabilities else None)
        r = evaluate_patient(raw, volume, cfg, root)
        rows.append(r["row"])
        rules.append(r["rules"])
        measured.append(r["measured"])
        slices += r["slices"]
        masks.update(r["masks"])
    summary = {
        "split": cfg.split,
        "model": facts,
        "postprocess": asdict(cfg.postprocess),
        "whole_patient": summarize_patients(rows, rules, cfg.bootstrap, cfg.seed),
        "rules_measured_alone": _sum_effects(measured),
        "paper_protocol_slices": summarize(slices, [], EvalConfig(bootstrap=cfg.bootstrap, seed=cfg.seed))
        if slices
        else {},
    }
    if out is not None:
        out = Path(out)
        write_csv_atomic(out / "whole_patient.csv", rows)
        if slices:
            write_csv_atomic(out / "whole_patient_slices.csv", slices)
        write_text_atomic(out / "whole_patient.json", json.dumps(summary, indent=1, default=float))
    summary["rows"] = rows
    summary["slice_rows"] = slices
    if cfg.keep_masks:
        summary["masks"] = masks
    return summary
