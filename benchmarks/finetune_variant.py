"""Fine-tune one Table II row again with a changed setting, and score it whole patient on validation and test.

    python benchmarks/finetune_variant.py TABLE_DIR OUT [--row sim_ft] [--seeds 0 1 2] [--set train.epochs=8 ...]
        [--extra-data u99 u77] [--gtv-patients 72] [--pretrain-set train.epochs=15 ...] [--igtv-patients 180]

TABLE_DIR is a finished (or at least pre-trained) `igtv table2` output: each seed's run configuration
(`runs/seed<N>/<row>/config.yaml`) is read from it, with the 2D pre-training it names (``runs/pretrain``, shared by
the seeds, since session 43; ``runs/seed<N>/pretrain`` before) and its data, and the ``--set``
overrides are applied on top (the same syntax as `igtv train --set`). With no override the run reproduces the
table's own row (fine-tuning is deterministic on one host), which is how a change is told from run-to-run noise.
A finished run already in OUT/seed<N> is scored without training: hard-link the table's own there (`cp -al`) to
score its ``last.pt`` beside its ``best.pt``.

Prints, per seed and split, the whole-patient 3D Dice (QC-kept ROIs, the Table II reading), FP / FN cc per patient,
lesions found and false lesions, then the mean over seeds. ``--extra-data``: also every patient of prepared cohorts
no model saw (`igtv phantom --prepared --out u99 --patients 16 --seed 99`), pooled over the cohorts as the split
"fresh". A change is chosen on the validation split (and such fresh cohorts) before the test split is read.
Asserts nothing; writes each seed's scores to OUT/seed<N>/whole_<checkpoint>_<split>.json.

``--gtv-patients`` / ``--pretrain-set``: the rows fine-tune from a 2D pre-training made again first, in OUT/pretrain,
from the table's own pre-training configuration with these changes: a GTV phantom cohort of that many patients (the
table's seed and scanner, simulated into OUT/dataset_gtv<N>) and ``--set`` overrides of its own. With neither it
reproduces the table's pre-training. Session 44 ran ``--gtv-patients 72 --pretrain-set train.epochs=15``.

``--igtv-patients``: the row trains on the table's IGTV cohort simulated at that many patients (OUT/dataset_igtv<N>;
its first patients are the table's own, bit for bit), with the table's validation and test lists kept as they are:
every other patient with a QC-kept ROI trains. Session 50 ran ``--igtv-patients 180`` (140 training patients
instead of 58).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from igtv.config import load_config
from igtv.data.datasets import read_list
from igtv.experiments.table2 import BUDGETS, _train_once, igtv_cohort_config, igtv_prepare_config, make_gtv_dataset
from igtv.experiments.table2_report import avoid_sum, false_cell
from igtv.experiments.whole_patient import WholePatientConfig, evaluate_whole_patients
from igtv.io import write_text_atomic
from igtv.training.config import RunConfig, apply_overrides


def _summary(res: dict) -> dict:
    """The figures this script prints, from :func:`evaluate_whole_patients`' summary, and each patient's Dice."""
    w = res["whole_patient"]
    return {
        "dice_3d": w["dice_3d"]["mean"],
        "fp_cc": w["false_positive_cc"]["mean"],
        "fn_cc": w["false_negative_cc"]["mean"],
        "found": w["lesions_hit"],
        "lesions": w["lesions_true"],
        "false": w["false_lesions"],
        "false_avoid": w.get("false_lesions_avoid"),  # of them on marked structures (the phantom's nodes), if known
        "per_patient": {r["patient"]: round(float(r["dice_3d"]), 4) for r in res["rows"]},
    }


def _pooled(parts: list[dict]) -> dict:
    """Cohorts' summaries as one: means over all their patients (weighted by patient count), counts summed."""
    n = [len(p["per_patient"]) for p in parts]
    out = {k: float(np.average([p[k] for p in parts], weights=n)) for k in ("dice_3d", "fp_cc", "fn_cc")}
    out.update({k: sum(p[k] for p in parts) for k in ("found", "lesions", "false")})
    out["false_avoid"] = avoid_sum(p.get("false_avoid") for p in parts)
    out["per_patient"] = {k: v for p in parts for k, v in p["per_patient"].items()}
    return out


def pretrain_variant(
    table_dir: Path,
    out: Path,
    sets: tuple[str, ...] = (),
    gtv_patients: int = 0,
    budget: str = "quick",
    workers: int = 2,
) -> Path:
    """The table's 2D pre-training made again in OUT/pretrain (unless finished there) with ``sets`` on top, on a GTV
    phantom cohort of ``gtv_patients`` (0: the table's own GTV data); returns its ``best.pt``."""
    from dataclasses import replace

    shared = table_dir / "runs" / "pretrain"
    table_run = shared if shared.exists() else table_dir / "runs" / "seed0" / "pretrain"  # before session 43
    cfg = load_config(RunConfig, table_run / "config.yaml")
    overrides = list(sets)
    if gtv_patients:
        b = replace(BUDGETS[budget], gtv_patients=gtv_patients)
        overrides.insert(0, f"data.root={make_gtv_dataset(out / f'dataset_gtv{gtv_patients}', b, workers)}")
    cfg = apply_overrides(cfg, overrides) if overrides else cfg
    what = ", ".join(overrides) or "as the table"
    _train_once(cfg, out / "pretrain", f"2D pre-training in {out / 'pretrain'} ({what})")
    return out / "pretrain" / "best.pt"


def igtv_variant_data(table_dir: Path, out: Path, patients: int, budget: str = "quick", workers: int = 2) -> Path:
    """The table's IGTV cohort simulated at ``patients`` patients into OUT/dataset_igtv<N>, with the table's own
    validation and test lists; every other listed item trains. Returns the dataset's root."""
    from dataclasses import replace

    from igtv.phantom.dataset import write_prepared_cohort

    table = table_dir / "data" / "dataset_igtv"
    b = replace(BUDGETS[budget], igtv_patients=patients)
    prep = igtv_prepare_config(b, workers)
    root = write_prepared_cohort(igtv_cohort_config(b, workers), out / f"dataset_igtv{patients}", prep).out_dir
    held = {name: (table / f"{name}.txt").read_text() for name in ("val", "test")}
    kept = {r.folder for name in held for r in read_list(table, name)}
    train = []
    for name in ("train", "val", "test"):  # each list's lines, in order, beside the items read_list makes of them
        lines = [ln.strip() for ln in (root / f"{name}.txt").read_text().splitlines() if ln.strip()]
        train += [ln for ln, r in zip(lines, read_list(root, name), strict=True) if r.folder not in kept]
    for name, text in held.items():
        write_text_atomic(root / f"{name}.txt", text)
    write_text_atomic(root / "train.txt", "".join(f"{ln}\n" for ln in train))
    # splits.json says the same (its patients, with or without a QC-kept ROI)
    splits, table_splits = (json.loads((d / "splits.json").read_text()) for d in (root, table))
    everyone = {p for name in ("train", "val", "test") for p in splits[name]}
    held_patients = {p for name in ("val", "test") for p in table_splits[name]}
    splits.update({name: table_splits[name] for name in ("val", "test")}, train=sorted(everyone - held_patients))
    write_text_atomic(root / "splits.json", json.dumps(splits))
    return root


def run_variant(
    table_dir: Path,
    out: Path,
    row: str = "sim_ft",
    seeds: tuple[int, ...] = (0, 1, 2),
    sets: tuple[str, ...] = (),
    splits: tuple[str, ...] = ("val", "test"),
    checkpoints: tuple[str, ...] = ("best",),
    budget: str = "quick",
    extra_data: tuple[Path, ...] = (),
) -> dict[tuple[str, str], list[dict]]:
    """Train (unless finished) and score ``row`` for each seed; returns each (checkpoint, split)'s summaries, with
    the ``extra_data`` cohorts pooled as the split ``"fresh"``."""
    overlap = BUDGETS[budget].overlap
    means: dict[tuple[str, str], list[dict]] = {(c, s): [] for c in checkpoints for s in splits}
    if extra_data:
        means.update({(c, "fresh"): [] for c in checkpoints})
    for seed in seeds:
        cfg = load_config(RunConfig, table_dir / "runs" / f"seed{seed}" / row / "config.yaml")
        cfg = apply_overrides(cfg, list(sets)) if sets else cfg
        run = out / f"seed{seed}"
        # as the table trains: a finished run (e.g. the table's own, hard-linked into OUT) is scored as it is
        _train_once(cfg, run, f"seed {seed}: training {row} in {run}")
        for ckpt, split in means:
            cohorts = [(Path(cfg.data.root), split, split)]
            if split == "fresh":
                cohorts = [(Path(d), "all", f"{split}_{Path(d).name}") for d in extra_data]
            parts = []
            for root, which, name in cohorts:
                wcfg = WholePatientConfig(split=which, overlap=overlap, bootstrap=0)
                where = run / f"whole_{ckpt}_{name}"
                res = evaluate_whole_patients(run / f"{ckpt}.pt", root, where, wcfg, progress=False)
                part = _summary(res)
                if split == "fresh":  # phantom cohorts reuse pseudonyms (patient i of any seed): name the cohort
                    part["per_patient"] = {f"{root.name}/{k}": v for k, v in part["per_patient"].items()}
                parts.append(part)
            s = parts[0] if len(parts) == 1 else _pooled(parts)
            write_text_atomic(run / f"whole_{ckpt}_{split}.json", json.dumps(s, indent=1))
            means[ckpt, split].append(s)
            false = false_cell(s["false"], s.get("false_avoid"))
            print(
                f"seed {seed} {ckpt}.pt {split}: Dice {s['dice_3d']:.4f}  FP {s['fp_cc']:.1f} cc  "
                f"FN {s['fn_cc']:.1f} cc  found {s['found']}/{s['lesions']}  false {false}",
                flush=True,
            )
    return means


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--row", default="sim_ft")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--splits", nargs="*", default=["val", "test"], help="none: only the --extra-data cohorts")
    ap.add_argument("--checkpoints", nargs="+", default=["best"], choices=["best", "last"], help="which to score")
    ap.add_argument("--budget", default="quick", help="the table's budget (its sliding-window overlap)")
    ap.add_argument("--extra-data", type=Path, nargs="+", default=[], help="prepared cohorts no model saw")
    ap.add_argument("--gtv-patients", type=int, default=0, help="pre-train again on a GTV phantom cohort this large")
    ap.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE", help="pre-train again with it")
    ap.add_argument("--igtv-patients", type=int, default=0, help="train on the table's IGTV cohort this large")
    args = ap.parse_args()
    if args.igtv_patients:
        root = igtv_variant_data(args.table_dir, args.out, args.igtv_patients, args.budget)
        args.set = [f"data.root={root}", *args.set]
    if args.gtv_patients or args.pretrain_set:
        init = pretrain_variant(args.table_dir, args.out, tuple(args.pretrain_set), args.gtv_patients, args.budget)
        args.set = [f"init={init}", *args.set]
    means = run_variant(
        args.table_dir, args.out, args.row, tuple(args.seeds), tuple(args.set), tuple(args.splits),
        tuple(args.checkpoints), args.budget, tuple(args.extra_data),
    )  # fmt: skip
    for (ckpt, split), ss in means.items():
        per_seed = " / ".join(f"{s['dice_3d']:.3f}" for s in ss)
        print(f"{ckpt}.pt {split}: mean Dice {np.mean([s['dice_3d'] for s in ss]):.4f} (seeds {per_seed})")


if __name__ == "__main__":
    main()
