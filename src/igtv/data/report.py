"""``igtv dataset-report``: the paper's Fig. 2 statistics of a prepared dataset as one PNG."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np


def read_rois(dataset: Path) -> list[dict]:
    path = Path(dataset) / "rois.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a dataset made by 'igtv prepare'")
    with path.open() as f:
        return list(csv.DictReader(f))


def dataset_report(dataset: str | Path, out_png: str | Path | None = None) -> Path:
    """Slices per ROI, ROI volume, ROI SUVmax and scanner shares of the ROIs kept by QC (excluded ROIs greyed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from igtv.io import atomic_path

    dataset = Path(dataset)
    rois = read_rois(dataset)
    if not rois:
        raise ValueError(f"{dataset}/rois.csv: no ROIs")
    kept = [r for r in rois if r["status"] == "kept"]
    excl = [r for r in rois if r["status"] == "excluded"]

    def col(rows, key):
        return np.array([float(r[key]) for r in rows], dtype=float)

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    panels = [("n_slices", "slices per ROI", False), ("volume_cc", "ROI volume (cc)", True),
              ("suv_max", "ROI SUVmax", False)]  # fmt: skip
    for ax, (key, title, log) in zip(axes[:3], panels, strict=True):
        data_k, data_e = col(kept, key), col(excl, key)
        both = np.concatenate([data_k, data_e])
        both = both[both > 0] if log else both
        if both.size:
            lo, hi = float(both.min()), float(both.max())
            bins = np.geomspace(lo, hi * 1.001, 16) if log and lo > 0 else np.linspace(lo, hi + 1e-6, 16)
            ax.hist([data_k, data_e], bins=bins, stacked=True, color=["tab:red", "0.7"], label=["kept", "excluded"])
            if log:
                from matplotlib.ticker import NullFormatter, ScalarFormatter

                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{title} (n={len(kept)} kept, {len(excl)} excluded)")
        ax.legend()
    shares = Counter(f"{r['manufacturer']} {r['model']}".strip() or "unknown" for r in kept or rois)
    axes[3].pie(list(shares.values()), labels=list(shares.keys()), autopct="%1.0f%%", textprops={"fontsize": 8})
    axes[3].set_title("PET/CT scanners (ROIs)")
    for key, thr in (("volume_cc", 3.0), ("suv_max", 3.0)):
        axes[1 if key == "volume_cc" else 2].axvline(thr, color="k", ls="--", lw=1)
    fig.suptitle(f"{dataset.name}: dataset statistics (cf. paper Fig. 2)")
    fig.tight_layout()
    out_png = Path(out_png) if out_png else dataset / "dataset_report.png"
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return out_png
