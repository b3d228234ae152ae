"""Table II's rows on more patients: prepared cohorts that no model of the run saw, scored whole patient.

Twelve test patients decide little: one 5.6 cc nodule moves +SIM's mean by 5 points (docs/table2.md, *Where
the contours stand*). ``igtv table2 --extra-data COHORT ...`` scores every row of every seed on every patient of each
cohort (``split="all"``: e.g. ``igtv phantom --prepared --seed 99``), the same way as the test split, and reads the
table's claims over the test patients and the extra ones together: each row's mean, the paired Wilcoxon against +SIM,
and the fine-tuned rows against the rows without fine-tuning. A patient with no ROI that the QC kept has no Dice to
give and is left out. Each row's result per seed and cohort is saved (``OUT/extra/<cohort>/seedN/<row>/``) and
reused while it is newer than its checkpoint; the probability maps are kept beside the checkpoints as for the test
split. With several seeds, each learnt row's seeds are also read as one ensemble on the extra patients (from the kept
maps: post-processing and scoring only), beside the test split's ensembles, so the ensemble reading, too, rests on
more than twelve patients.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from igtv.experiments.table2_ensembles import one_model, shared_with
from igtv.experiments.table2_finetune import (
    RAW_READING,
    finetune_effect,
    finetune_lines,
    finetune_rows,
    format_p,
    paired,
)
from igtv.experiments.table2_report import REFERENCE_ROW, avoid_sum, false_cell

EXTRA_RESULT = "extra_result.json"
_KEEP = ("patient", "dice_3d", "dice_3d_raw", "false_positive_cc", "false_negative_cc", "lesions_true", "lesions_hit",
         "false_lesions", "false_lesions_avoid")  # fmt: skip


def check_cohorts(cohorts) -> list[Path]:
    """The extra cohorts as paths, refused before any work when one has no prepared volumes or two share a name
    (their results are kept by folder name)."""
    paths = [Path(c) for c in cohorts]
    for c in paths:
        if not (c / "volumes").is_dir():
            raise ValueError(f"{c}: not a prepared dataset (no volumes/ folder; make one with igtv prepare or "
                             "igtv phantom --prepared)")  # fmt: skip
    names = [c.name for c in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"extra cohorts must have distinct folder names, got {names}")
    return paths


def _cohort_rows(
    ckpts: list[Path], cohort: Path, dest: Path, device: str, b, bootstrap: int, what: str, rule: str = ""
):
    """One model's (or ensemble's, or threshold row's) rows on every patient of ``cohort``, named
    ``<cohort>/<patient>``, patients with no QC-kept ROI left out. Scored whole patient from the kept probability maps
    where there are any, saved at ``dest`` and reused while newer than every checkpoint and holding every field of
    ``_KEEP`` (a result saved before a field was added is scored again)."""
    from igtv.experiments.whole_patient import WholePatientConfig, evaluate_whole_patients
    from igtv.io import write_text_atomic

    saved = dest / EXTRA_RESULT
    rows = json.loads(saved.read_text()) if saved.exists() else None
    fresh = rows is not None and all(saved.stat().st_mtime > c.stat().st_mtime for c in ckpts)
    if not (fresh and all(k in x for x in rows for k in _KEEP)):
        wcfg = WholePatientConfig(split="all", overlap=b.overlap, bootstrap=bootstrap, cache_probabilities=True)
        model = None if rule else ckpts if len(ckpts) > 1 else ckpts[0]
        s = evaluate_whole_patients(model, cohort, dest, wcfg, device, progress=False, threshold_rule=rule)
        rows = [{k: x.get(k) for k in _KEEP} for x in s["rows"]]
        write_text_atomic(saved, json.dumps(rows, default=float))
        scored = [x["dice_3d"] for x in rows if x["lesions_true"]]
        print(f"[table2] {cohort.name} {what}: whole patient 3D Dice {np.mean(scored) * 100:.2f} over "
              f"{len(scored)} patients")  # fmt: skip
    return [{**x, "patient": f"{cohort.name}/{x['patient']}"} for x in rows if x["lesions_true"]]


def _share_maps(src: Path, dst: Path, cohort: Path) -> None:
    """``src``'s kept maps of ``cohort``'s patients linked (else copied) into ``dst``: the same model's maps, valid for
    its copy, whose checkpoint keeps the size and mtime the maps are keyed on."""
    import os
    import shutil

    from igtv.inference.ensemble import probability_cache_path

    for vol in sorted((cohort / "volumes").iterdir()):
        a, b = probability_cache_path(src, "all", vol), probability_cache_path(dst, "all", vol)
        if a.exists() and not b.exists():
            b.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(a, b)
            except OSError:
                shutil.copy2(a, b)


def score_extra(selected, out: Path, seeds, cohorts: list[Path], b, bootstrap: int, device: str) -> dict:
    """Every row of every seed scored on every patient of ``cohorts``: ``row key -> {seed: [patient rows]}``, the
    patients named ``<cohort>/<patient>``. Threshold rows are deterministic: one seed. A seed's applied row that is
    another seed's model (one shared pre-training) gets that seed's rows and kept maps, not a second reading."""
    found: dict[str, dict[int, list[dict]]] = {}
    for cohort in cohorts:
        for r in selected:
            for seed in seeds[:1] if r.rule else seeds:
                ckpts = [] if r.rule else [out / "runs" / f"seed{seed}" / r.key / "best.pt"]
                if not all(c.exists() for c in ckpts):
                    continue
                same = None if r.rule else shared_with(ckpts[0].parent)
                if same is not None and same != seed and found.get(r.key, {}).get(same):
                    _share_maps(out / "runs" / f"seed{same}" / r.key / "best.pt", ckpts[0], cohort)
                    mine = [x for x in found[r.key][same] if x["patient"].startswith(f"{cohort.name}/")]
                    found[r.key].setdefault(seed, []).extend(mine)
                    continue
                dest = out / "extra" / cohort.name / f"seed{seed}" / r.key
                rows = _cohort_rows(ckpts, cohort, dest, device, b, bootstrap, f"seed {seed} {r.label}", r.rule)
                found.setdefault(r.key, {}).setdefault(seed, []).extend(rows)
    return found


def score_extra_ensembles(selected, out: Path, seeds, cohorts: list[Path], b, bootstrap: int, device: str) -> dict:
    """Each learnt row's seeds as one ensemble (the mean of their probabilities) on every patient of ``cohorts``:
    ``row key -> [patient rows]``, as :func:`score_extra` names them. The members' maps were kept when
    :func:`score_extra` scored them, so this costs the post-processing."""
    found: dict[str, list[dict]] = {}
    if len(seeds) < 2:
        return found
    for cohort in cohorts:
        for r in selected:
            ckpts = [out / "runs" / f"seed{s}" / r.key / "best.pt" for s in seeds]
            if r.rule or not all(c.exists() for c in ckpts):
                continue
            if one_model(out, r.key, seeds):  # score_extra read that model on this cohort as the first seed
                own = out / "extra" / cohort.name / f"seed{seeds[0]}" / r.key
                rows = _cohort_rows(ckpts[:1], cohort, own, device, b, bootstrap, f"seed {seeds[0]} {r.label}")
                found.setdefault(r.key, []).extend(rows)
                continue
            dest = out / "extra" / cohort.name / "ensemble" / r.key
            found.setdefault(r.key, []).extend(
                _cohort_rows(ckpts, cohort, dest, device, b, bootstrap, f"{r.label}, ensemble of seeds {list(seeds)}")
            )
    return found


def _per_patient_mean(by_seed: dict[int, list[dict]], key: str) -> dict[str, float]:
    """``{patient: mean over seeds of key}`` from the seeds' rows, rows without ``key`` left out."""
    acc: dict[str, list[float]] = {}
    for seed_rows in by_seed.values():
        for x in seed_rows:
            if x.get(key) is not None:
                acc.setdefault(x["patient"], []).append(x[key])
    return {p: float(np.mean(v)) for p, v in acc.items()}


def extra_reading(selected, table: dict, extra: dict, cohorts: list[Path], ensembles: dict | None = None) -> dict:
    """Each row on the extra patients (per-seed means, FP / FN cc, lesions) and on the test and extra patients
    together (per-patient means over seeds, paired Wilcoxon against +SIM), and the fine-tuning reading over both;
    with ``ensembles`` (:func:`score_extra_ensembles`) the same for the seed ensembles, whose test-split scores are
    the table's (``table["ensembles"]``)."""
    test = {r["key"]: r.get("patient_dice_3d") or {} for r in table.get("rows", [])}
    both: dict[str, dict[str, float]] = {}
    rows = []
    for r in selected:
        by_seed = extra.get(r.key)
        if not by_seed:
            continue
        per_patient = _per_patient_mean(by_seed, "dice_3d")
        both[r.key] = {**test.get(r.key, {}), **per_patient}
        flat = [x for seed_rows in by_seed.values() for x in seed_rows]
        rows.append({
            "key": r.key, "label": r.label, "patients": len(per_patient), "test_patients": len(test.get(r.key, {})),
            "dice_3d_per_seed": [float(np.mean([x["dice_3d"] for x in v])) for v in by_seed.values()],
            "false_positive_cc": float(np.mean([x["false_positive_cc"] for x in flat])),
            "false_negative_cc": float(np.mean([x["false_negative_cc"] for x in flat])),
            "lesions_hit": int(sum(x["lesions_hit"] for x in flat)),
            "lesions_true": int(sum(x["lesions_true"] for x in flat)),
            "false_lesions": int(sum(x["false_lesions"] for x in flat)),
            "false_lesions_avoid": avoid_sum(x.get("false_lesions_avoid") for x in flat),
            "dice_3d_test_and_extra": float(np.mean(list(both[r.key].values()))),
        })  # fmt: skip
    ref = both.get(REFERENCE_ROW, {})
    for row in rows:
        is_ref = row["key"] == REFERENCE_ROW or not ref
        row["wilcoxon_p_vs_sim"] = None if is_ref else paired(both[row["key"]], ref)["p"]
    tuned, other = finetune_rows(selected)
    reading = {"cohorts": [c.name for c in cohorts], "rows": rows}
    reading["finetune_vs_not"] = finetune_effect(both, tuned, other)
    test_raw = {r["key"]: r.get("patient_dice_3d_raw") or {} for r in table.get("rows", [])}
    both_raw = {k: {**test_raw.get(k, {}), **_per_patient_mean(extra[k], "dice_3d_raw")} for k in both}
    reading["finetune_vs_not_raw"] = finetune_effect(both_raw, tuned, other)
    if ensembles:
        test_ens = {e["key"]: e.get("patient_dice_3d") or {} for e in table.get("ensembles") or []}
        both_ens = {k: {**test_ens.get(k, {}), **{x["patient"]: x["dice_3d"] for x in v}} for k, v in ensembles.items()}
        ref_ens = both_ens.get(REFERENCE_ROW, {})
        for row in rows:
            ens = ensembles.get(row["key"])
            if not ens:
                continue
            row["dice_3d_ensemble"] = float(np.mean([x["dice_3d"] for x in ens]))
            row["dice_3d_ensemble_test_and_extra"] = float(np.mean(list(both_ens[row["key"]].values())))
            is_ref = row["key"] == REFERENCE_ROW or not ref_ens
            row["ensemble_wilcoxon_p_vs_sim"] = None if is_ref else paired(both_ens[row["key"]], ref_ens)["p"]
        reading["finetune_vs_not_ensemble"] = finetune_effect(both_ens, tuned, other)
    return reading


def extra_lines(reading: dict | None) -> list[str]:
    """Markdown for ``table2.md``."""
    if not reading or not reading.get("rows"):
        return []
    ens = any("dice_3d_ensemble" in r for r in reading["rows"])
    lines = [
        "",
        f"More patients (extra cohorts {', '.join(reading['cohorts'])}, no model saw them; whole patient, scored as "
        "above, patients with no QC-kept ROI left out; 3D Dice per seed, then the per-patient mean over seeds on the "
        "test and extra patients together; Wilcoxon against +SIM over those):",
        "",
        "| Method | extra patients | 3D Dice (%), per seed | FP (cc) | FN (cc) | lesions found | false lesions "
        "| test + extra: patients | 3D Dice (%) | Wilcoxon p vs +SIM |"
        + (" seed ensemble: extra (%) | test + extra (%) | Wilcoxon p vs +SIM |" if ens else ""),
        "|---" * (13 if ens else 10) + "|",
    ]
    for r in reading["rows"]:
        seeds = r["dice_3d_per_seed"]
        p, false = r["wilcoxon_p_vs_sim"], false_cell(r["false_lesions"], r.get("false_lesions_avoid"))
        lines.append(
            f"| {r['label']} | {r['patients']} | {np.mean(seeds) * 100:.2f} ("
            + " / ".join(f"{d * 100:.1f}" for d in seeds)
            + f") | {r['false_positive_cc']:.1f} | {r['false_negative_cc']:.1f} | {r['lesions_hit']}/"
            f"{r['lesions_true']} | {false} | {r['patients'] + r['test_patients']} | "
            f"{r['dice_3d_test_and_extra'] * 100:.2f} | " + format_p(p) + " |" + (_ensemble_cells(r) if ens else "")
        )
    labels = {r["key"]: r["label"] for r in reading["rows"]}
    effects = {"test + extra patients, per-seed mean": reading.get("finetune_vs_not"),
               "test + extra patients, seed ensemble": reading.get("finetune_vs_not_ensemble"),
               f"test + extra patients, per-seed mean, {RAW_READING}": reading.get("finetune_vs_not_raw")}  # fmt: skip
    return lines + finetune_lines(effects, labels)


def _ensemble_cells(r: dict) -> str:
    if "dice_3d_ensemble" not in r:
        return " - | - | - |"
    return (f" {r['dice_3d_ensemble'] * 100:.2f} | {r['dice_3d_ensemble_test_and_extra'] * 100:.2f} | "
            f"{format_p(r['ensemble_wilcoxon_p_vs_sim'])} |")  # fmt: skip
