"""``igtv evaluate``: per-slice and per-patient metrics of a model (or a classic PET threshold) on a dataset split.

Two conventions (``--convention``), because published tables differ:

``paper`` (the seed paper, Eqs. 9-12)
    IoU, Dice, pixel accuracy (Eq. 11) and HD95 computed per slice and averaged over slices. A slice where
    prediction and truth are both empty scores IoU = Dice = 1 and HD95 = 0; where exactly one is empty, IoU = Dice
    = 0 and HD95 is undefined: it is left out of the HD95 mean and counted in ``hd95_undefined``.
``cipa`` (the CIPA authors' PCLT20K numbers)
    IoU and Dice from TP/FP/FN pooled over all test pixels; "Acc" is balanced accuracy (mean of sensitivity and
    specificity, pooled); HD95 per image with a fixed rule: both empty -> 0, exactly one empty -> the image
    diagonal (the largest distance possible), so a missed slice is penalised instead of skipped.

Both conventions write the same per-slice rows; the headline numbers and their patient-level bootstrap 95 % CIs
follow the chosen convention. HD95 is in mm when the dataset records its geometry (``igtv prepare`` output) and
in pixels otherwise (PCLT20K). Per patient, the slice predictions are put back on the native CT grid (prepared
datasets: ``volumes/<P>/labels.nii.gz``) and scored in 3D: Dice, IoU, HD95 (mm), surface Dice at 2 mm and volumes.
Slices that are not samples of the split count as predicted empty.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from igtv.evaluation import metrics as M
from igtv.evaluation.baselines import MARGIN_MM, threshold_mask
from igtv.evaluation.statistics import bootstrap_ci

log = logging.getLogger(__name__)

SLICE_METRICS = ("iou", "dice", "accuracy", "hd95")


@dataclass(frozen=True)
class EvalConfig:
    convention: Literal["paper", "cipa"] = "paper"
    bootstrap: int = 1000
    seed: int = 0
    tta: bool = False
    batch_size: int = 16
    threshold: float | None = None  # probability threshold of the masks (None: the checkpoint's)


# --- pure pieces --------------------------------------------------------------------------------------------------
def slice_row(pred: np.ndarray, truth: np.ndarray, spacing_mm: tuple[float, float] | None) -> dict:
    """Counts and both conventions' per-slice values of one slice."""
    sp = spacing_mm or (1.0, 1.0)
    tp, fp, fn, tn = M.counts(pred, truth)
    diag = float(np.hypot(pred.shape[0] * sp[0], pred.shape[1] * sp[1]))
    h = M.hd95(pred, truth, sp)
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "iou": M.iou(pred, truth),
        "dice": M.dice(pred, truth),
        "accuracy": M.pixel_accuracy(pred, truth),
        "balanced_accuracy": M.balanced_accuracy(pred, truth),
        "hd95": h,
        "hd95_cipa": h if np.isfinite(h) else diag,
    }


def headline(rows: Sequence[dict], convention: str) -> dict[str, float]:
    """The four numbers of a table row from per-slice rows, under a convention."""
    if not rows:
        return {k: float("nan") for k in SLICE_METRICS}
    if convention == "cipa":
        tp, fp, fn, tn = (float(sum(r[k] for r in rows)) for k in ("tp", "fp", "fn", "tn"))
        return {
            "iou": M.iou_from_counts(tp, fp, fn),
            "dice": M.dice_from_counts(tp, fp, fn),
            "accuracy": M.balanced_accuracy_from_counts(tp, fp, fn, tn),
            "hd95": float(np.mean([r["hd95_cipa"] for r in rows])),
        }
    hd = np.array([r["hd95"] for r in rows], dtype=np.float64)
    return {
        "iou": float(np.mean([r["iou"] for r in rows])),
        "dice": float(np.mean([r["dice"] for r in rows])),
        "accuracy": float(np.mean([r["accuracy"] for r in rows])),
        "hd95": float(np.nanmean(hd)) if np.isfinite(hd).any() else float("nan"),
    }


def summarize(slice_rows: list[dict], patient_rows: list[dict], cfg: EvalConfig) -> dict:
    """Headline numbers, per-metric mean / std / median over slices and patients, bootstrap CIs."""
    head = headline(slice_rows, cfg.convention)
    by_patient: dict[str, list] = defaultdict(list)
    for r in slice_rows:
        by_patient[r["patient"]].append(r)
    ci = bootstrap_ci(by_patient, lambda rows: headline(rows, cfg.convention), cfg.bootstrap, cfg.seed)
    out: dict = {
        "convention": cfg.convention,
        "slices": len(slice_rows),
        "patients": len(by_patient),
        "hd95_unit": slice_rows[0]["hd95_unit"] if slice_rows else "",
        "hd95_undefined": int(sum(1 for r in slice_rows if not np.isfinite(r["hd95"]))),
        "headline": {k: {"value": v, "ci95": list(ci.get(k, (np.nan, np.nan)))} for k, v in head.items()},
    }
    for name, rows, keys in (
        ("per_slice", slice_rows, ("iou", "dice", "accuracy", "balanced_accuracy", "hd95")),
        ("per_patient", patient_rows, ("dice_3d", "iou_3d", "hd95_3d_mm", "surface_dice_2mm", "volume_difference_cc")),
    ):
        stats = {}
        for k in keys:
            a = np.asarray([r.get(k, np.nan) for r in rows], dtype=np.float64)
            a = a[np.isfinite(a)]
            stats[k] = (
                {"mean": float(a.mean()), "std": float(a.std()), "median": float(np.median(a)), "n": int(a.size)}
                if a.size
                else {"n": 0}
            )
        out[name] = stats
    if patient_rows:
        dices = {r["patient"]: [r["dice_3d"]] for r in patient_rows}
        out["per_patient"]["dice_3d"]["ci95"] = list(
            bootstrap_ci(dices, lambda v: {"d": float(np.mean(v))}, cfg.bootstrap, cfg.seed).get("d", (np.nan,) * 2)
        )
    return out


# --- datasets -----------------------------------------------------------------------------------------------------
@dataclass
class DatasetGeometry:
    """What a prepared dataset knows of each patient's CT: geometry, per-ROI SUVmax, the sample -> slice map."""

    ct: dict  # patient -> Geometry
    roi_suv_max: dict  # (patient, roi) -> SUVmax
    slice_index: dict  # item -> (patient, roi, z)

    @classmethod
    def load(cls, root: Path) -> DatasetGeometry | None:
        from igtv.geometry import Geometry

        if not (root / "slices.csv").exists() or not (root / "patients").is_dir():
            return None
        ct = {}
        for p in (root / "patients").glob("*.json"):
            rec = json.loads(p.read_text())
            ct[rec["patient"]] = Geometry.from_dict(rec["ct_geometry"])
        with open(root / "rois.csv", newline="") as f:
            suv = {(r["patient"], int(r["roi"])): float(r["suv_max"]) for r in csv.DictReader(f)}
        with open(root / "slices.csv", newline="") as f:
            idx = {r["item"]: (r["patient"], int(r["roi"]), int(r["slice_index"])) for r in csv.DictReader(f)}
        return cls(ct, suv, idx)

    def pixel_spacing(self, item: str, png_shape: tuple[int, int]) -> tuple[float, float] | None:
        ref = self.slice_index.get(item)
        if ref is None:
            return None
        g = self.ct[ref[0]]
        ny, nx = g.shape_zyx[1:]
        return (g.spacing_mm[1] * ny / png_shape[0], g.spacing_mm[0] * nx / png_shape[1])


def patient_rows_3d(root: Path, geo: DatasetGeometry, preds: dict[str, np.ndarray]) -> list[dict]:
    """Per patient 3D metrics on the native CT grid from the per-slice predicted masks (PNG resolution)."""
    import torch

    from igtv.geometry import load_nifti

    by_patient: dict[str, list[str]] = defaultdict(list)
    for item in preds:
        if item in geo.slice_index:
            by_patient[geo.slice_index[item][0]].append(item)
    rows = []
    for patient, items in sorted(by_patient.items()):
        labels_path = root / "volumes" / patient / "labels.nii.gz"
        if not labels_path.exists():
            continue
        labels, g = load_nifti(labels_path)
        rois = sorted({geo.slice_index[i][1] for i in items})
        truth = np.isin(labels, rois)
        pred = np.zeros(labels.shape, dtype=bool)
        ny, nx = labels.shape[1:]
        for item in items:
            _, _, z = geo.slice_index[item]
            m = torch.from_numpy(preds[item].astype(np.float32))[None, None]
            up = torch.nn.functional.interpolate(m, size=(ny, nx), mode="nearest")[0, 0].numpy() > 0.5
            pred[z] |= up
        spacing = tuple(g.spacing_mm[::-1])
        rows.append(
            {
                "patient": patient,
                "rois": len(rois),
                "dice_3d": M.dice(pred, truth),
                "iou_3d": M.iou(pred, truth),
                "hd95_3d_mm": M.hd95(pred, truth, spacing),
                "surface_dice_2mm": M.surface_dice(pred, truth, spacing, 2.0),
                **M.overlap_volumes_cc(pred, truth, spacing),
            }
        )
    return rows


@dataclass
class MaskEvaluation:
    """What :func:`evaluate_masks` measured: the JSON-safe summary, the rows it came from, and the masks."""

    summary: dict
    slice_rows: list[dict]
    patient_rows: list[dict]
    predictions: dict[str, np.ndarray]


def evaluate_masks(
    root: str | Path,
    split: str,
    predict_batch: Callable[[list[int]], list[np.ndarray]],
    dataset,
    cfg: EvalConfig,
    out: str | Path | None = None,
    extra: dict | None = None,
) -> MaskEvaluation:
    """Score ``predict_batch(indices) -> boolean masks at each PNG's own size`` over ``dataset`` (a SliceDataset
    of ``split``); writes ``per_slice.csv``, ``per_patient.csv`` and ``summary.json`` into ``out`` when given."""
    from igtv.data.png import load_png
    from igtv.io import write_csv_atomic, write_text_atomic

    root = Path(root)
    geo = DatasetGeometry.load(root)
    slice_rows, preds = [], {}
    for start in range(0, len(dataset), cfg.batch_size):
        idx = list(range(start, min(start + cfg.batch_size, len(dataset))))
        masks = predict_batch(idx)
        for i, pred in zip(idx, masks, strict=True):
            ref = dataset.items[i]
            truth = load_png(root / ref.folder / f"{ref.name}_mask.png") > 127
            if pred.shape != truth.shape:
                raise ValueError(f"prediction {pred.shape} and mask {truth.shape} sizes differ for {ref.name}")
            spacing = geo.pixel_spacing(ref.name, truth.shape) if geo else None
            row = {"item": ref.name, "patient": ref.folder, **slice_row(pred, truth, spacing)}
            row["hd95_unit"] = "mm" if spacing else "px"
            slice_rows.append(row)
            preds[ref.name] = pred
    patient_rows = patient_rows_3d(root, geo, preds) if geo else []
    summary = {"split": split, **summarize(slice_rows, patient_rows, cfg), **(extra or {})}
    if out is not None:
        out = Path(out)
        write_csv_atomic(out / "per_slice.csv", slice_rows)
        write_csv_atomic(out / "per_patient.csv", patient_rows)
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return MaskEvaluation(summary, slice_rows, patient_rows, preds)


def evaluate_checkpoint(
    model_path: str | Path,
    data: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    cfg: EvalConfig | None = None,
    device: str = "auto",
) -> dict:
    """``igtv evaluate``: score a checkpoint on a split of a PNG dataset (PCLT20K or ``igtv prepare`` output)."""
    from igtv.data.datasets import SliceDataset
    from igtv.device import pick_device
    from igtv.inference.model import load_model
    from igtv.inference.predictor import slice_mask_predictor

    cfg = cfg or EvalConfig()
    dev = pick_device(device)
    lm = load_model(model_path, dev, threshold=cfg.threshold)
    ds = SliceDataset(data, split, mode=lm.mode, size=lm.size)  # type: ignore[arg-type]
    if len(ds) == 0:
        raise ValueError(f"{data}: split {split!r} is empty")
    predict_batch = slice_mask_predictor(lm, ds, dev, cfg.tta)
    return evaluate_masks(data, split, predict_batch, ds, cfg, out, {"model": lm.describe()})


def threshold_predictor(root: str | Path, dataset, rule: str) -> Callable[[list[int]], list[np.ndarray]]:
    """Batches of a SliceDataset -> threshold masks at each PNG's size (reads the PET and mask PNGs)."""
    from igtv.data.datasets import dataset_preprocessing
    from igtv.data.png import load_png
    from igtv.data.windows import PRESETS

    root = Path(root)
    preset = PRESETS[dataset_preprocessing(root)["preset"]]
    geo = DatasetGeometry.load(root)

    def run(idx: list[int]) -> list[np.ndarray]:
        out = []
        for i in idx:
            ref = dataset.items[i]
            grey = load_png(root / ref.folder / f"{ref.name}_PET.png").astype(np.float64)
            truth = load_png(root / ref.folder / f"{ref.name}_mask.png") > 127
            roi_max = None
            spacing = geo.pixel_spacing(ref.name, truth.shape) if geo else None
            if preset.pet_mode == "roi_max":
                if geo is None or ref.name not in geo.slice_index:
                    raise ValueError(f"{ref.name}: LUCID PNGs need rois.csv/slices.csv to recover SUV")
                patient, roi, _ = geo.slice_index[ref.name]
                roi_max = geo.roi_suv_max[(patient, roi)]
                suv = grey / 255.0 * roi_max
            else:
                lo, hi = preset.pet_suv
                suv = lo + grey / 255.0 * (hi - lo)
            margin = int(round(MARGIN_MM / min(spacing))) if spacing else max(truth.shape[0] // 32, 2)
            out.append(threshold_mask(suv, truth, rule, margin, roi_max))
        return out

    return run
