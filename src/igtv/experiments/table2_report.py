"""Table II's rows, the paper's own figures, and the report of a run: aggregation over seeds, table2.md / .csv /
.json, and the Fig. 4-style comparison."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igtv.evaluation.statistics import wilcoxon_p
from igtv.experiments.table2_finetune import finetune_lines, format_p


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    model: str  # model base name without width ("" for threshold rows)
    init: str  # "", "pretrain" (fine-tune), "applied" (pretrained weights, no IGTV training)
    rule: str = ""  # threshold rule for the PET rows


ROWS = (
    Row("2d_applied", "Baseline 2D, no fine-tune (GTV-pretrained, applied)", "cipa_2d", "applied"),
    Row("2d_scratch", "Baseline 2D, no fine-tune (IGTV from scratch)", "cipa_2d", ""),
    Row("25d_applied", "Baseline 2.5D, no fine-tune (GTV-pretrained, applied)", "cipa_25d", "applied"),
    Row("25d_scratch", "Baseline 2.5D, no fine-tune (IGTV from scratch)", "cipa_25d", ""),
    Row("25d_ft", "Baseline 2.5D, fine-tuned", "cipa_25d", "pretrain"),
    Row("cbam_ft", "+CBAM, fine-tuned", "cipa_25d_cbam", "pretrain"),
    Row("nonlocal_ft", "+Non-Local, fine-tuned", "cipa_25d_nonlocal", "pretrain"),
    Row("sim_ft", "+SIM, fine-tuned (ours)", "cipa_25d_sim", "pretrain"),
    Row("unet", "MONAI U-Net 2.5D (IGTV from scratch)", "unet_25d", ""),
    Row("pet41", "PET 41 % SUVmax (threshold)", "", "", "pet41"),
    Row("suv25", "PET SUV >= 2.5 (threshold)", "", "", "suv25"),
)

REFERENCE_ROW = "sim_ft"

# The paper's Table II (LUCID-PET/CT IGTV test set), copied from ../shared/paper (Luo et al., Table II): IoU, Dice,
# Acc as fractions, HD95 as printed. The paper's "no fine-tune" rows do not say which reading they are, so both of
# ours are shown against them.
PAPER_TABLE2 = {
    "2d_applied": (0.238, 0.385, 0.646, 36.40),
    "2d_scratch": (0.238, 0.385, 0.646, 36.40),
    "25d_applied": (0.240, 0.387, 0.686, 31.39),
    "25d_scratch": (0.240, 0.387, 0.686, 31.39),
    "25d_ft": (0.363, 0.532, 0.823, 22.21),
    "cbam_ft": (0.296, 0.457, 0.787, 48.68),
    "nonlocal_ft": (0.369, 0.539, 0.772, 25.93),
    "sim_ft": (0.438, 0.609, 0.846, 24.81),
}


def _fmt(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    if not np.isfinite(mean):
        return "n/a"
    s = f"{mean * scale:.{digits}f}"
    return s + (f" ± {std * scale:.{digits}f}" if np.isfinite(std) and std > 0 else "")


def aggregate(selected, results, settings: dict, budget: str, seconds: float) -> dict:
    ref_patients = _patient_dice(results.get(REFERENCE_ROW, []))
    table_rows = []
    for r in selected:
        runs = results[r.key]
        if not runs:
            continue
        row = {"key": r.key, "label": r.label, "seeds": len(runs), "paper_table": PAPER_TABLE2.get(r.key)}
        for conv in ("paper", "cipa"):
            row[f"conv_{conv}"] = {
                m: _over_seeds([(x["headline"][m]["value"] if conv == "paper" else x["cipa"][m]) for x in runs])
                for m in ("iou", "dice", "accuracy", "hd95")
            }
        row["ci95_first_seed"] = {m: runs[0]["headline"][m]["ci95"] for m in ("iou", "dice", "accuracy", "hd95")}
        row["hd95_unit"] = runs[0].get("hd95_unit", "")
        row["per_patient_first_seed"] = runs[0].get("per_patient", {})
        row["hd95_undefined"] = runs[0].get("hd95_undefined", 0)
        pats = _patient_dice(runs)
        row["patient_dice_3d"] = pats
        row["patient_dice_3d_raw"] = _patient_dice(runs, "dice_3d_raw")
        common = sorted(set(pats) & set(ref_patients))
        row["wilcoxon_p_vs_sim"] = (
            wilcoxon_p([pats[p] for p in common], [ref_patients[p] for p in common]) if r.key != REFERENCE_ROW else None
        )
        wholes = [x["whole"] for x in runs if x.get("whole")]
        if wholes:

            def mean_of(key: str, stat: str = "mean", ws=wholes) -> dict:
                return _over_seeds([w.get(key, {}).get(stat, np.nan) for w in ws])

            row["whole_patient"] = {
                "dice_3d": mean_of("dice_3d"),
                "dice_3d_all_lesions": mean_of("dice_3d_all_lesions"),
                "dice_3d_raw": _raw_dice(runs),
                "hd95_3d_mm_median": mean_of("hd95_3d_mm", "median"),
                "false_positive_cc": mean_of("false_positive_cc"),
                "false_negative_cc": mean_of("false_negative_cc"),
                "lesions_hit": int(sum(w["lesions_hit"] for w in wholes)),
                "lesions_true": int(sum(w["lesions_true"] for w in wholes)),
                "false_lesions": int(sum(w["false_lesions"] for w in wholes)),
                "false_lesions_avoid": avoid_sum(w.get("false_lesions_avoid") for w in wholes),
                "patients": int(wholes[0]["patients"]),
                "dice_3d_ci95_first_seed": wholes[0]["dice_3d"].get("ci95"),
                "postprocess_rules_first_seed": wholes[0].get("postprocess_rules", {}),
            }
        row["seconds"] = float(sum(x["seconds"] for x in runs))
        table_rows.append(row)
    return {"budget": budget, "settings": settings, "rows": table_rows, "seconds": seconds}


def ensemble_rows(selected, ensembles: dict[str, dict]) -> list[dict]:
    """The seed-ensemble reading of each learnt row: mean per-patient 3D Dice, FP / FN cc per patient, lesions, and
    the paired Wilcoxon p against the +SIM ensemble over the same patients."""
    ref = {p["patient"]: p["dice_3d"] for p in ensembles.get(REFERENCE_ROW, {}).get("rows", [])}
    out = []
    for r in selected:
        e = ensembles.get(r.key)
        if not e:
            continue
        pats = {p["patient"]: p["dice_3d"] for p in e["rows"]}
        common = sorted(set(pats) & set(ref))
        w = e["whole"]
        out.append({
            "key": r.key, "label": r.label, "seeds": e.get("seeds", []), "patients": len(pats),
            "dice_3d": float(np.mean(list(pats.values()))), "patient_dice_3d": pats,
            "false_positive_cc": w["false_positive_cc"]["mean"], "false_negative_cc": w["false_negative_cc"]["mean"],
            "lesions_hit": int(w["lesions_hit"]), "lesions_true": int(w["lesions_true"]),
            "false_lesions": int(w["false_lesions"]), "false_lesions_avoid": w.get("false_lesions_avoid"),
            "wilcoxon_p_vs_sim": None if r.key == REFERENCE_ROW or not ref
            else wilcoxon_p([pats[p] for p in common], [ref[p] for p in common]),
        })  # fmt: skip
    return out


def _ensemble_lines(table: dict) -> list[str]:
    rows = table.get("ensembles") or []
    if not rows:
        return []
    per_seed = {r["key"]: r.get("whole_patient", {}).get("dice_3d", {}).get("mean") for r in table["rows"]}
    lines = [
        "",
        f"Seed ensembles (the mean probability of seeds {rows[0]['seeds']}, one contour per patient; whole patient, "
        "test split, scored as above; Wilcoxon against the +SIM ensemble):",
        "",
        "| Method | 3D Dice (%) | per-seed mean above (%) | FP (cc) | FN (cc) | lesions found | false lesions "
        "| Wilcoxon p vs +SIM |",
        "|---" * 8 + "|",
    ]
    for e in rows:
        p, ps = e["wilcoxon_p_vs_sim"], per_seed.get(e["key"])
        lines.append(
            f"| {e['label']} | {e['dice_3d'] * 100:.2f} | {'-' if ps is None else f'{ps * 100:.2f}'} | "
            f"{e['false_positive_cc']:.1f} | {e['false_negative_cc']:.1f} | {e['lesions_hit']}/{e['lesions_true']} | "
            f"{false_cell(e['false_lesions'], e.get('false_lesions_avoid'))} | {format_p(p)} |"
        )
    return lines


def avoid_sum(counts) -> int | None:
    """False lesions on structures marked to leave out (the phantom's nodes), summed; None unless every part knows."""
    counts = list(counts)
    return None if not counts or any(c is None for c in counts) else int(sum(counts))


def false_cell(n: int, on_avoid: int | None) -> str:
    """A false-lesion count, with those on the marked structures (nodes) in brackets where known: ``4 (3)``."""
    return str(n) if on_avoid is None else f"{n} ({on_avoid})"


def _over_seeds(values) -> dict:
    """``{"mean", "std"}`` of per-seed values, NaNs left out (mean NaN when there is none; std 0 for one seed)."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    return {"mean": float(v[finite].mean()) if finite.any() else float("nan"),
            "std": float(v[finite].std()) if len(v) > 1 and finite.any() else 0.0}  # fmt: skip


def _raw_dice(runs: list[dict]) -> dict:
    """Mean and std over seeds of the patients' mean 3D Dice of the raw output (the model's mask, or the threshold's,
    before post-processing; QC-kept ROIs), from each seed's saved patient rows (so older saved results have it)."""
    per_seed = []
    for x in runs:
        v = np.array([p.get("dice_3d_raw", np.nan) for p in x.get("whole_rows") or []], dtype=float)
        per_seed.append(v[np.isfinite(v)].mean() if np.isfinite(v).any() else np.nan)
    return _over_seeds(per_seed)


def _patient_dice(runs: list[dict], key: str = "dice_3d") -> dict[str, float]:
    """Per-patient 3D Dice (``key``: ``dice_3d``, or ``dice_3d_raw`` for the raw output) averaged over seeds (falls
    back to per-patient mean slice Dice for PCLT20K, for ``dice_3d`` only; patients without ``key`` are left out)."""
    acc: dict[str, list[float]] = {}
    for x in runs:
        prow = x.get("whole_rows") or x.get("_patient_rows") or []
        if prow:
            for p in prow:
                if p.get(key) is not None and np.isfinite(p[key]):
                    acc.setdefault(p["patient"], []).append(p[key])
        elif key == "dice_3d":  # PCLT20K: no whole-patient rows
            by: dict[str, list[float]] = {}
            for s in x["_slice_rows"]:
                by.setdefault(s["patient"], []).append(s["dice"])
            for p, v in by.items():
                acc.setdefault(p, []).append(float(np.mean(v)))
    return {p: float(np.mean(v)) for p, v in acc.items()}


def write_outputs(out: Path, table: dict, tail: list[str] = ()) -> None:
    """``table2.md`` (our numbers next to the paper's, then ``tail``'s lines) and ``table2.csv``."""
    from igtv.io import write_csv_atomic, write_text_atomic

    unit = next((r["hd95_unit"] for r in table["rows"] if r["hd95_unit"]), "")
    head = (
        f"| Method | IoU (%) | Dice (%) | Acc (%) | HD95 ({unit}) | 3D Dice (%) | 3D Dice, all ROIs (%) "
        "| 3D Dice, raw output (%) | HD95 3D median (mm) | FP (cc) "
        "| FN (cc) | lesions found | false lesions | Wilcoxon p vs +SIM | Paper: IoU / Dice / Acc / HD95 |"
    )
    lines = [head, "|---" * 15 + "|"]
    csv_rows = []
    for r in table["rows"]:
        v = r["conv_paper"]
        pats = r["patient_dice_3d"]
        dice3 = float(np.mean(list(pats.values()))) if pats else float("nan")
        pval = r["wilcoxon_p_vs_sim"]
        paper = r["paper_table"]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["label"],
                    _fmt(v["iou"]["mean"], v["iou"]["std"]),
                    _fmt(v["dice"]["mean"], v["dice"]["std"]),
                    _fmt(v["accuracy"]["mean"], v["accuracy"]["std"]),
                    _fmt(v["hd95"]["mean"], v["hd95"]["std"], scale=1.0),
                    *_whole_cells(r.get("whole_patient"), dice3),
                    format_p(pval),
                    " / ".join([f"{x * 100:.1f}" for x in paper[:3]] + [f"{paper[3]:.2f}"]) if paper else "-",
                ]
            )
            + " |"
        )
        flat = {"key": r["key"], "label": r["label"], "seeds": r["seeds"]}
        for conv in ("paper", "cipa"):
            for m, d in r[f"conv_{conv}"].items():
                flat[f"{conv}_{m}_mean"] = d["mean"]
                flat[f"{conv}_{m}_std"] = d["std"]
        flat["dice_3d_mean"] = dice3
        for k, v in (r.get("whole_patient") or {}).items():
            if isinstance(v, dict) and "mean" in v:
                flat[f"whole_{k}_mean"] = v["mean"]
                flat[f"whole_{k}_std"] = v["std"]
            elif isinstance(v, int):
                flat[f"whole_{k}"] = v
        flat["wilcoxon_p_vs_sim"] = "" if pval is None else pval
        flat["seconds"] = r["seconds"]
        csv_rows.append(flat)
    s = table["settings"]
    lines += [
        "",
        f"Budget `{table['budget']}`: CIPA width `{s['width']}`, input {s['size'] or 'native'} px, "
        f"{s['pretrain_epochs']} pre-training / {s['finetune_epochs']} IGTV epochs"
        + (f" of at most {s['max_steps']} steps" if s["max_steps"] else "")
        + f", batch {s['batch_size']}"
        + (f" (IGTV {s['igtv_batch_size']})" if s.get("igtv_batch_size") else "")
        + f", seeds {table.get('seeds', list(s['seeds']))}"
        + (
            f" (one pre-training, seed {s['seeds'][0]}, fine-tuned by each; the applied rows scored once)"
            if s.get("shared_pretrain")
            else ""
        )
        + "; "
        + f"{table['seconds'] / 60:.1f} min for this run; the rows, as they were run (a re-run reuses saved rows), "
        + f"{sum(r['seconds'] for r in table['rows']) / 60:.1f} min.",
        "IoU, Dice, Acc, HD95: the paper's protocol, per-slice means (Eqs. 9-12) over the ROI slices of the IGTV "
        "test split, mean ± std over seeds. 3D Dice, HD95 3D, FP, FN, lesions: whole patient, the predict pipeline "
        "on each test patient with nothing from the truth (threshold rows are given each lesion's box + 15 mm), "
        "scored against the ROIs the QC kept (the ROIs it excluded are ignored; 'all ROIs' scores them too; "
        "'raw output' scores the model's or the threshold's mask before post-processing), "
        "means per patient over seeds; lesions summed over seeds; false lesions (components touching no true lesion) "
        "with, in brackets, those on a structure the data marks to leave out (avoid.nii.gz: the phantom's lymph "
        "nodes). Wilcoxon: paired, per-patient 3D Dice against "
        "+SIM. Paper: Table II of Luo et al. (../shared/paper), LUCID-PET/CT, IoU/Dice/Acc in %; its no-fine-tune "
        "rows are shown against both of our readings.",
    ]
    lines += _ensemble_lines(table)
    lines += finetune_lines(table.get("finetune_vs_not") or {}, {r["key"]: r["label"] for r in table["rows"]})
    lines += list(tail)
    write_text_atomic(out / "table2.md", "\n".join(lines) + "\n")
    write_csv_atomic(out / "table2.csv", csv_rows)


def _whole_cells(w: dict | None, dice3: float) -> list[str]:
    """3D Dice (QC-kept ROIs), 3D Dice (all ROIs), 3D Dice of the raw output, HD95 3D, FP, FN, lesions found, false
    lesions; without a whole-patient reading, the 3D Dice of the slice predictions put back on the CT grid and
    dashes."""
    if not w:
        return [_fmt(dice3, 0.0)] + ["-"] * 7
    nan = {"mean": float("nan"), "std": 0.0}
    every, raw = w.get("dice_3d_all_lesions", nan), w.get("dice_3d_raw", nan)
    return [
        _fmt(w["dice_3d"]["mean"], w["dice_3d"]["std"]),
        _fmt(every["mean"], every["std"]),
        _fmt(raw["mean"], raw["std"]),
        _fmt(w["hd95_3d_mm_median"]["mean"], 0.0, scale=1.0, digits=1),
        _fmt(w["false_positive_cc"]["mean"], w["false_positive_cc"]["std"], scale=1.0, digits=1),
        _fmt(w["false_negative_cc"]["mean"], w["false_negative_cc"]["std"], scale=1.0, digits=1),
        f"{w['lesions_hit']}/{w['lesions_true']}",
        false_cell(w["false_lesions"], w.get("false_lesions_avoid")),
    ]


def choose_fig4_slices(root: Path, items: list, n_each: int = 1) -> list[tuple[str, str]]:
    """Test slices for the figure: the largest tumour section, a marginal slice with weak PET, and the slice
    with the most saturated PET outside the tumour (high uptake next to it, e.g. the heart)."""
    from igtv.data.png import load_png

    scored = []
    for ref in items:
        truth = load_png(root / ref.folder / f"{ref.name}_mask.png") > 127
        if not truth.any():
            continue
        pet = load_png(root / ref.folder / f"{ref.name}_PET.png").astype(float)
        scored.append((ref, int(truth.sum()), float(pet[truth].mean()), float((pet[~truth] >= 250).mean())))
    if not scored:
        return []
    picks = []
    largest = max(scored, key=lambda t: t[1])
    picks.append((largest[0], "largest"))
    small = [t for t in scored if t[1] <= np.percentile([t[1] for t in scored], 30)] or scored
    weak = min(small, key=lambda t: t[2])
    picks.append((weak[0], "marginal, weak PET"))
    hot = max(scored, key=lambda t: t[3])
    picks.append((hot[0], "high uptake nearby"))
    seen, out = set(), []
    for ref, why in picks:
        if ref.name not in seen:
            seen.add(ref.name)
            out.append((ref, why))
    return out


def fig4(root: Path, labels: dict[str, str], preds: dict[str, dict], path: Path) -> Path | None:
    """Fig. 4-style grid: rows = chosen test slices; columns CT, PET, truth, then each model (truth red,
    prediction green)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from igtv.data.datasets import split_items
    from igtv.data.png import load_png
    from igtv.io import write_bytes_atomic

    chosen = choose_fig4_slices(root, split_items(root, "test"))
    keys = [k for k in labels if k in preds]
    if not chosen or not keys:
        return None
    cols = 3 + len(keys)
    fig, axes = plt.subplots(len(chosen), cols, figsize=(1.9 * cols, 2.1 * len(chosen)), squeeze=False)
    for i, (ref, why) in enumerate(chosen):
        ct = load_png(root / ref.folder / f"{ref.name}_CT.png")
        pet = load_png(root / ref.folder / f"{ref.name}_PET.png")
        truth = load_png(root / ref.folder / f"{ref.name}_mask.png") > 127
        panels = [("CT", ct, None), ("PET", pet, None), ("truth", ct, None)] + [
            (labels[k], ct, preds[k].get(ref.name)) for k in keys
        ]
        for j, (title, img, pred) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap="gray" if title != "PET" else "hot")
            if j >= 2:
                ax.contour(truth.astype(float), levels=[0.5], colors=["red"], linewidths=0.8)
            if pred is not None and pred.shape != truth.shape:  # whole-patient masks are on the CT grid
                from igtv.data.png import resize_slice

                pred = resize_slice(pred.astype(np.float32), truth.shape[0], nearest=True) > 0.5
            if pred is not None and pred.any():
                ax.contour(pred.astype(float), levels=[0.5], colors=["lime"], linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=6, wrap=True)
        axes[i, 0].set_ylabel(why, fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return path
