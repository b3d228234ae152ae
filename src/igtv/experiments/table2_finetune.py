"""Table II's fine-tuning claim, tested per patient: the fine-tuned rows against the rows without fine-tuning.

The paper's Table II says fine-tuning is what matters (2.5D: 0.240 -> 0.363 IoU). Issue 14 asks that the fine-tuned
rows beat the "applied" and "scratch" rows on whole-patient 3D Dice with a paired test over the test patients. This
module reads that claim off a run's per-patient 3D Dice: every fine-tuned row against every CIPA row without
fine-tuning (paired Wilcoxon, patients better / worse), and the pooled reading (per patient, the mean of the
fine-tuned rows against the mean of the others). The same reading is made for the per-seed means and for the seed
ensembles.
"""

from __future__ import annotations

import numpy as np

from igtv.evaluation.statistics import wilcoxon_p


def finetune_rows(rows) -> tuple[list[str], list[str]]:
    """Keys of the fine-tuned CIPA rows and of the CIPA rows without fine-tuning (applied or from scratch), in
    table order. Threshold rows and the U-Net (another network) are in neither group."""
    tuned = [r.key for r in rows if r.model.startswith("cipa") and r.init == "pretrain"]
    other = [r.key for r in rows if r.model.startswith("cipa") and r.init != "pretrain"]
    return tuned, other


def paired(a: dict[str, float], b: dict[str, float]) -> dict:
    """``a`` against ``b`` over their common patients: mean difference, patients better / worse / tied, and the
    two-sided paired Wilcoxon p (NaN with fewer than two pairs or no difference)."""
    common = sorted(set(a) & set(b))
    d = np.array([a[p] - b[p] for p in common], dtype=np.float64)
    return {
        "patients": len(common),
        "mean_a": float(np.mean([a[p] for p in common])) if common else float("nan"),
        "mean_b": float(np.mean([b[p] for p in common])) if common else float("nan"),
        "diff": float(d.mean()) if common else float("nan"),
        "better": int((d > 1e-9).sum()),
        "worse": int((d < -1e-9).sum()),
        "p": wilcoxon_p([a[p] for p in common], [b[p] for p in common]),
    }


def finetune_effect(patient_dice: dict[str, dict[str, float]], tuned: list[str], other: list[str]) -> dict | None:
    """Fine-tuned rows against rows without fine-tuning, from ``row key -> {patient: 3D Dice}``.

    Returns ``{"pairs": [{"tuned", "other", **paired}], "pooled": {**paired, "tuned_rows", "other_rows"}}``, or
    None when either group has no row with patients. The pooled reading averages each group's rows per patient,
    over the patients every row of both groups has."""
    tuned = [k for k in tuned if patient_dice.get(k)]
    other = [k for k in other if patient_dice.get(k)]
    if not tuned or not other:
        return None
    pairs = [{"tuned": t, "other": o, **paired(patient_dice[t], patient_dice[o])} for t in tuned for o in other]
    common = set.intersection(*(set(patient_dice[k]) for k in tuned + other))

    def group_mean(keys: list[str]) -> dict[str, float]:
        return {p: float(np.mean([patient_dice[k][p] for k in keys])) for p in common}

    pooled = {**paired(group_mean(tuned), group_mean(other)), "tuned_rows": tuned, "other_rows": other}
    return {"pairs": pairs, "pooled": pooled}


RAW_READING = "network output before post-processing"


def finetune_readings(selected, table: dict) -> dict[str, dict | None]:
    """The readings of a Table II run (``aggregate``'s rows and ``ensemble_rows``): ``{"test split, per-seed mean":
    ..., "test split, seed ensemble": ..., "test split, per-seed mean, network output before post-processing":
    ...}``, each as ``finetune_effect`` gives it. The last scores the networks' own masks (``dice_3d_raw``): the
    post-processing completes every model's contour from the PET, which is most of what fine-tuning on IGTVs
    teaches (docs/table2.md), so the networks' difference shows there first."""
    tuned, other = finetune_rows(selected)
    per_seed = {r["key"]: r.get("patient_dice_3d") or {} for r in table.get("rows", [])}
    ensemble = {e["key"]: e.get("patient_dice_3d") or {} for e in table.get("ensembles") or []}
    raw = {r["key"]: r.get("patient_dice_3d_raw") or {} for r in table.get("rows", [])}
    return {
        "test split, per-seed mean": finetune_effect(per_seed, tuned, other),
        "test split, seed ensemble": finetune_effect(ensemble, tuned, other),
        f"test split, per-seed mean, {RAW_READING}": finetune_effect(raw, tuned, other),
    }


def format_p(p: float | None) -> str:
    """A p-value as the tables print it: three decimals, "< 0.001" below 0.0005 (not "0.000"), "ref." for the
    reference row (None), "n/a" where no test was possible."""
    if p is None:
        return "ref."
    if not np.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.0005 else f"{p:.3f}"


def finetune_lines(effects: dict[str, dict | None], labels: dict[str, str]) -> list[str]:
    """Markdown for ``table2.md``: one matrix per reading (e.g. ``"test split, per-seed mean"``), cells
    "difference in points (better/worse, p)", then the pooled line."""
    lines: list[str] = []
    for reading, eff in effects.items():
        if not eff:
            continue
        other = eff["pooled"]["other_rows"]
        pool = eff["pooled"]
        p_text = format_p(pool["p"])
        lines += [
            "",
            f"Fine-tuned rows against the rows without fine-tuning ({reading}; whole-patient 3D Dice; cell: "
            "fine-tuned minus the other row in points, patients better / worse, paired Wilcoxon p):",
            "",
            "| fine-tuned row | " + " | ".join(labels.get(o, o) for o in other) + " |",
            "|---" * (len(other) + 1) + "|",
        ]
        by = {(c["tuned"], c["other"]): c for c in eff["pairs"]}
        for t in pool["tuned_rows"]:
            cells = [by[(t, o)] for o in other]
            lines.append(
                f"| {labels.get(t, t)} | "
                + " | ".join(
                    f"{c['diff'] * 100:+.1f} ({c['better']}/{c['worse']}, p {format_p(c['p'])})" for c in cells
                )  # fmt: skip
                + " |"
            )
        lines += [
            "",
            f"Pooled ({reading}): per patient, the mean of the {len(pool['tuned_rows'])} fine-tuned rows "
            f"{pool['mean_a'] * 100:.2f} against the mean of the {len(other)} others {pool['mean_b'] * 100:.2f}; "
            f"better on {pool['better']} of {pool['patients']} patients, worse on {pool['worse']}, "
            f"p {'' if p_text.startswith('<') else '= '}{p_text}.",
        ]
    return lines
