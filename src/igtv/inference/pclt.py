"""``igtv predict --pclt DIR``: predict PNG slices in the PCLT20K layout (or an ``igtv prepare`` dataset).

Writes ``OUT/<id>/<name>_pred.png`` (0/255, at each PNG's own size) for every listed slice and, where the dataset
has masks, ``OUT/slice_metrics.csv`` (IoU, Dice, pixel accuracy, HD95 in pixels per slice) and
``OUT/summary.json`` (means). Input PNGs are read as they are: the model must have been trained with the same
windows (a warning says when the checkpoint's windows differ from the dataset's).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def list_all_items(root: Path):
    """Every ``<id>/<name>`` of the layout (``*_CT.png`` files), for ``--split all``."""
    from igtv.data.datasets import ItemRef

    return [ItemRef(p.parent.name, p.name[: -len("_CT.png")]) for p in sorted(root.glob("*/*_CT.png"))]


def predict_pclt(
    root: str | Path,
    model_path: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    device: str = "auto",
    tta: bool = False,
    batch_size: int = 8,
    preset: str | None = None,
    progress: bool = True,
    threshold: float | None = None,
) -> dict:
    """Predict a split (or ``all``) of a PNG dataset; returns the summary (also written to ``summary.json``)."""
    from tqdm import tqdm

    from igtv.data.datasets import SliceDataset, dataset_preprocessing, split_items
    from igtv.data.png import load_png, save_png
    from igtv.device import pick_device
    from igtv.evaluation.metrics import dice, hd95, iou, pixel_accuracy
    from igtv.inference.model import load_model
    from igtv.inference.predictor import slice_mask_predictor
    from igtv.io import write_csv_atomic, write_text_atomic

    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    dev = pick_device(device)
    lm = load_model(model_path, dev, preset, threshold)
    data_windows = dataset_preprocessing(root)["preset"]
    if data_windows != lm.preset:
        log.warning("the model was trained on %s windows but %s uses %s windows", lm.preset, root, data_windows)
    items = list_all_items(root) if split == "all" else split_items(root, split)
    if not items:
        raise ValueError(f"{root}: no slices in split {split!r}")
    ds = SliceDataset(root, items=items, mode=lm.mode, size=lm.size)
    rows = []
    predict_batch = slice_mask_predictor(lm, ds, dev, tta)
    for start in tqdm(range(0, len(ds), batch_size), desc="predict", unit="batch", disable=not progress):
        idx = list(range(start, min(start + batch_size, len(ds))))
        for i, pred in zip(idx, predict_batch(idx), strict=True):
            ref = ds.items[i]
            folder = root / ref.folder
            save_png(out / ref.folder / f"{ref.name}_pred.png", pred.astype(np.uint8) * 255)
            truth_path = folder / f"{ref.name}_mask.png"
            row = {"item": ref.name, "patient": ref.folder, "pred_pixels": int(pred.sum())}
            if truth_path.exists():
                truth = load_png(truth_path) > 127
                row.update(
                    truth_pixels=int(truth.sum()),
                    iou=iou(pred, truth),
                    dice=dice(pred, truth),
                    pixel_accuracy=pixel_accuracy(pred, truth),
                    hd95_px=hd95(pred, truth, (1.0, 1.0)),
                )
            rows.append(row)
    summary = {"slices": len(rows), "model": lm.describe(), "split": split}
    if rows and "iou" in rows[0]:
        write_csv_atomic(out / "slice_metrics.csv", rows)
        for key in ("iou", "dice", "pixel_accuracy", "hd95_px"):
            values = np.array([r[key] for r in rows if key in r], dtype=np.float64)
            summary[f"mean_{key}"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        summary["hd95_undefined_slices"] = int(sum(1 for r in rows if not np.isfinite(r.get("hd95_px", 0.0))))
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary
