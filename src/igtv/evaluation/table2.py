"""``igtv table2``: the paper's Table II ablation, end to end, by one command.

Per seed: 2D CIPA pre-training on the GTV data; then every row below trained (or not) on the IGTV training split
with the same seed, epochs and batch, and scored on the IGTV test split (per slice, both conventions, and per
patient in 3D). The paper's "no fine-tune" has two readings; both are produced and labelled:

- *applied*: the GTV-pretrained weights evaluated on IGTV with no IGTV training (2.5D: the 2D weights carried
  into the 2.5D network, whose three input channels take slices t-1, t, t+1 instead of one slice repeated);
- *scratch*: trained on the IGTV split from random initialisation.

"Fine-tuned" rows start from the GTV pre-training with every compatible weight transferred (the paper's Sec.
IV-D). Rows no anchor has: PET 41 % SUVmax and SUV >= 2.5 threshold contouring inside the lesion's
neighbourhood, and a MONAI U-Net on the same 6-channel 2.5D input trained from scratch.

Two readings of every row, side by side:

- *paper protocol*: Eqs. 9-12 per ROI slice of the IGTV test split, averaged over slices. Whole-slice models
  (``--budget paper``) read the dataset's PNGs, windowed with the true ROI's SUVmax (LUCID) as in the paper;
  patch models (``--budget quick``) are scored on the ROI slices of their whole-patient prediction;
- *whole patient*: ``igtv predict``'s pipeline on every test patient's volumes with nothing taken from the truth
  (:mod:`igtv.evaluation.whole_patient`): 3D Dice, HD95 (mm), false-positive / false-negative volume, lesions
  found and false lesions. The threshold rows are given each true lesion's box; the learnt rows are not.

Outputs in ``OUT``: ``table2.md``, ``table2.csv``, ``table2.json`` (mean +- std over seeds, bootstrap CIs of the
first seed, paired Wilcoxon p of per-patient 3D Dice against +SIM), ``fig4.png`` (Fig. 4-style comparison) and
every run folder under ``OUT/runs``.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """How much data and training a Table II run gets."""

    width: str  # registered model width: tiny, s or t
    size: int  # input side (0: the PNGs' own)
    pretrain_epochs: int
    finetune_epochs: int
    max_steps: int  # per epoch (0: all)
    batch_size: int
    pretrain_lr: float
    finetune_lr: float
    scratch_lr: float
    seeds: tuple[int, ...]
    gtv_patients: int
    igtv_patients: int
    matrix_scale: float
    patience: int = 0
    sampler: str = "slices"  # "patches": patches of `patch` px at `spacing_mm` from the volumes (igtv.data.sampling)
    spacing_mm: float = 2.0
    patch: int = 96
    samples_per_epoch: int = 512
    overlap: float = 0.5  # sliding-window overlap of the whole-patient prediction
    whole_patient: bool = True  # add the whole-patient reading when the dataset has volumes


BUDGETS = {
    # 2-core CPU, phantom, small CIPA on 96 px patches at 2 mm, >= 10 test patients: measured 68 min per seed (13
    # test patients, Non-Local 27 of them), so 3 seeds take ~3.4 h, over the 90 min aimed at; `--seeds` runs them apart.
    "quick": Budget("s", 0, 3, 3, 0, 8, 2e-3, 1e-3, 2e-3, (0, 1, 2), 24, 90, 1.0, 0, "patches", 2.0, 96, 320, 0.25),
    # the paper's settings (Sec. IV-E): CIPA-T at 512 px, lr 1e-3 pre-training, 6e-5 fine-tuning, 3 seeds; a GPU.
    "paper": Budget("t", 0, 50, 30, 0, 16, 1e-3, 6e-5, 1e-3, (0, 1, 2), 60, 60, 1.0, 10),
    # tests and a first look: tiny CIPA at 32 px, one step per epoch.
    "smoke": Budget("tiny", 32, 1, 1, 1, 2, 1e-3, 1e-3, 1e-3, (0,), 3, 8, 0.25),
    # tests of the patch path: tiny CIPA on 32 px patches at the CT's own pixel size.
    "smoke_patches": Budget("tiny", 0, 1, 1, 1, 2, 1e-3, 1e-3, 1e-3, (0,), 3, 8, 0.25, 0, "patches", 0.0, 32, 4),
}


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


def make_data(out: Path, budget: Budget, workers: int) -> tuple[Path, Path]:
    """Phantom GTV cohort (PCLT20K layout; prepared with volumes for patch budgets) and a prepared IGTV cohort."""
    from igtv.data.phantom import PhantomConfig
    from igtv.data.phantom_io import generate_cohort
    from igtv.data.prepare import PrepareConfig, prepare_dataset

    size = budget.size or 512
    gtv = generate_cohort(
        PhantomConfig(
            cohort="gtv", patients=budget.gtv_patients, seed=10, matrix_scale=budget.matrix_scale,
            workers=workers, pclt_size=size, write_pclt=budget.sampler != "patches",
        ),
        out / "phantom_gtv",
    )  # fmt: skip
    igtv = generate_cohort(
        PhantomConfig(
            cohort="igtv", patients=budget.igtv_patients, seed=11, matrix_scale=budget.matrix_scale,
            workers=workers, write_pclt=False,
        ),
        out / "phantom_igtv",
    )  # fmt: skip
    prep = prepare_dataset(igtv.out_dir, out / "dataset_igtv", PrepareConfig(size=size, workers=workers, seed=0))
    if budget.sampler == "patches":
        pre = prepare_dataset(gtv.out_dir, out / "dataset_gtv", PrepareConfig(roi="GTV", size=size, workers=workers))
        return pre.out_dir, prep.out_dir
    return gtv.out_dir / "pclt", prep.out_dir


def _train_once(cfg, run_dir: Path, label: str = "") -> None:
    """Train into ``run_dir`` unless a finished run is there (``log.csv`` holds every epoch); an interrupted run
    (``last.pt`` without every epoch) is resumed, not restarted, and never taken for a finished one."""
    from igtv.training.loop import train

    log_csv = run_dir / "log.csv"
    done = len(log_csv.read_text().splitlines()) - 1 if log_csv.exists() else 0
    if (run_dir / "best.pt").exists() and done >= cfg.train.epochs:
        return
    if label:
        print(label)
    train(cfg, run_dir, resume=(run_dir / "last.pt").exists(), progress=False)


def _run_config(budget: Budget, model: str, root: Path, stage: str, seed: int, init: str, device: str):
    from igtv.config import load_config, replace
    from igtv.demo import CONFIGS
    from igtv.training.config import RunConfig

    base = load_config(RunConfig, CONFIGS / ("pretrain_gtv.yaml" if stage == "pretrain" else "finetune_igtv.yaml"))
    lr = {"pretrain": budget.pretrain_lr, "finetune": budget.finetune_lr, "scratch": budget.scratch_lr}[stage]
    epochs = budget.pretrain_epochs if stage == "pretrain" else budget.finetune_epochs
    mode = "25d" if "_25d" in model else "2d"
    return replace(
        base,
        stage="pretrain" if stage == "pretrain" else "finetune",
        model=model,
        seed=seed,
        device=device,
        init=init,
        evaluate_test=False,
        data=replace(
            base.data,
            root=str(root),
            mode=mode,
            size=budget.size,
            num_workers=0,
            sampler=budget.sampler,
            spacing_mm=budget.spacing_mm,
            patch=budget.patch,
            samples_per_epoch=budget.samples_per_epoch,
            eval_samples=min(128, budget.samples_per_epoch),
            pet_gain_p=0.4,
            pet_gain_range=(0.3, 1.3),
        ),  # fmt: skip
        train=replace(
            base.train,
            lr=lr,
            min_lr=lr / 10,
            epochs=epochs,
            batch_size=budget.batch_size,
            max_steps_per_epoch=budget.max_steps,
            patience=budget.patience,
            grad_clip=1.0,
            batch_dice=budget.sampler == "patches",
        ),
    )


def _applied_checkpoint(pretrain_ckpt: Path, model: str, out: Path, igtv_root: Path, size: int) -> Path:
    """The GTV-pretrained weights in ``model`` (2D or 2.5D), saved as a checkpoint without any IGTV training."""
    from igtv.config import to_dict
    from igtv.data.datasets import dataset_preprocessing
    from igtv.models import create_model
    from igtv.training.checkpoint import load_checkpoint, save_checkpoint
    from igtv.training.transfer import transfer_weights

    src = load_checkpoint(pretrain_ckpt)
    net = create_model(model)
    report = transfer_weights(net, src["model"])
    mode = "25d" if "_25d" in model else "2d"
    run = dict(src["run_config"])
    run["data"] = {**run["data"], "mode": mode, "size": size}
    path = out / "best.pt"
    save_checkpoint(
        path,
        {
            "model_name": model,
            "model_config": to_dict(net.config),
            "input_slices": 3 if mode == "25d" else 1,
            "run_config": run,
            "preprocessing": src["preprocessing"]
            if (src.get("preprocessing") or {}).get("sampler") == "patches"
            else dataset_preprocessing(igtv_root),
            "model": net.state_dict(),
            "transfer": report.to_dict(),
        },
    )
    return path


def _evaluate_row(r: Row, ckpt: Path | None, data: Path, run_dir: Path, b: Budget, cfg, device: str) -> dict:
    """Both readings of one row: ``headline`` / ``_slice_rows`` / ``_patient_rows`` / ``_predictions`` (paper
    protocol) and ``whole`` (whole-patient summary with its per-patient ``rows``)."""
    from igtv.data.datasets import SliceDataset
    from igtv.evaluation.baselines import threshold_predictor
    from igtv.evaluation.evaluate import evaluate_checkpoint, evaluate_masks, summarize
    from igtv.evaluation.whole_patient import WholePatientConfig, evaluate_whole_patients
    from igtv.inference.model import load_model

    has_volumes = (data / "volumes").is_dir()
    patch_model = ckpt is not None and load_model(ckpt, "cpu").patch > 0
    whole = None
    if b.whole_patient and has_volumes:
        wcfg = WholePatientConfig(split="test", overlap=b.overlap, keep_masks=True, bootstrap=cfg.bootstrap)
        whole = evaluate_whole_patients(
            ckpt, data, run_dir / "whole_patient", wcfg, device, progress=False, threshold_rule=r.rule
        )
    if patch_model and whole is not None:  # paper protocol from the same prediction, on the ROI slices
        rows = whole["slice_rows"]
        res = {"split": "test", **summarize(rows, [], cfg), "_slice_rows": rows}
        res["_patient_rows"] = [{"patient": x["patient"], "dice_3d": x["dice_3d"]} for x in whole["rows"]]
        res["_predictions"] = whole.get("masks", {})
    elif r.rule:
        ds = SliceDataset(data, "test", mode="2d")
        res = evaluate_masks(data, "test", threshold_predictor(data, ds, r.rule), ds, cfg, run_dir, True)
    else:
        res = evaluate_checkpoint(ckpt, data, "test", run_dir / "eval", cfg, device, True)
    if whole is not None:
        res["whole"] = whole["whole_patient"]
        res["whole_rows"] = whole["rows"]
    return res


ROW_RESULT = "row_result.json"  # one row's scores of one seed, next to its checkpoint: a re-run reuses them


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def _save_row(run_dir: Path, res: dict) -> None:
    """Write a row's result (without the masks kept for Fig. 4) atomically, so an interrupted table resumes."""
    from igtv.io import write_text_atomic

    run_dir.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in res.items() if k != "_predictions"}
    write_text_atomic(run_dir / ROW_RESULT, json.dumps(keep, default=_jsonable))


def _cached_row(run_dir: Path, ckpt: Path | None) -> dict | None:
    """The saved result of this row and seed, unless its checkpoint is newer than it."""
    path = run_dir / ROW_RESULT
    if not path.exists() or (ckpt is not None and ckpt.exists() and ckpt.stat().st_mtime > path.stat().st_mtime):
        return None
    res = json.loads(path.read_text())
    res["_predictions"] = {}
    return res


def _wilcoxon(a: list[float], b: list[float]) -> float:
    from scipy.stats import wilcoxon

    d = np.asarray(a) - np.asarray(b)
    if len(d) < 2 or np.allclose(d, 0):
        return float("nan")
    return float(wilcoxon(a, b).pvalue)


def _fmt(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    if not np.isfinite(mean):
        return "n/a"
    s = f"{mean * scale:.{digits}f}"
    return s + (f" ± {std * scale:.{digits}f}" if np.isfinite(std) and std > 0 else "")


def run_table2(
    out: str | Path,
    data: str | Path | None = None,
    pretrain_data: str | Path | None = None,
    budget: str = "quick",
    workers: int = 2,
    device: str = "auto",
    rows: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
) -> dict:
    """Run the ablation; returns the table as a dict (also written as ``table2.json``).

    ``seeds`` overrides the budget's seeds. Every row's result of every seed is saved next to its checkpoint
    (``row_result.json``), so an interrupted run, or one extended to more seeds, redoes only what is missing.
    """
    from igtv.evaluation.evaluate import EvalConfig, headline
    from igtv.io import write_text_atomic

    t0 = time.perf_counter()
    b = BUDGETS[budget]
    out = Path(out)
    if data is None:
        print(f"[table2] phantom data: {b.gtv_patients} GTV + {b.igtv_patients} IGTV patients")
        gen_pre, data = make_data(out / "data", b, workers)
        pretrain_data = pretrain_data or gen_pre
    data = Path(data)
    pretrain_data = Path(pretrain_data or data)
    selected = [r for r in ROWS if rows is None or r.key in rows]
    cfg = EvalConfig(convention="paper")
    results: dict[str, list[dict]] = {r.key: [] for r in selected}
    fig_preds: dict[str, dict] = {}
    seeds = tuple(seeds) if seeds else b.seeds
    for seed in seeds:
        runs = out / "runs" / f"seed{seed}"
        pre_ckpt = runs / "pretrain" / "best.pt"
        if any(r.init for r in selected):
            _train_once(
                _run_config(b, f"cipa_2d_{b.width}", pretrain_data, "pretrain", seed, "", device),
                runs / "pretrain",
                f"[table2] seed {seed}: 2D pre-training on {pretrain_data.name}",
            )
        for r in selected:
            if r.rule and seed != seeds[0]:
                continue  # deterministic: one evaluation
            t_row = time.perf_counter()
            run_dir = runs / r.key
            ckpt = None if r.rule else run_dir / "best.pt"
            cached = _cached_row(run_dir, ckpt)
            if cached is not None:
                results[r.key].append(cached)
                print(f"[table2] seed {seed} {r.label}: saved result reused ({run_dir / ROW_RESULT})")
                continue
            if not r.rule:
                model = f"{r.model}_{b.width}"
                if r.init == "applied":
                    if not ckpt.exists():
                        _applied_checkpoint(pre_ckpt, model, run_dir, data, b.size)
                else:
                    stage = "finetune" if r.init == "pretrain" else "scratch"
                    init = str(pre_ckpt) if r.init == "pretrain" else ""
                    _train_once(_run_config(b, model, data, stage, seed, init, device), run_dir)
            res = _evaluate_row(r, ckpt, data, run_dir, b, cfg, device)
            res["cipa"] = headline(res["_slice_rows"], "cipa")
            res["seconds"] = time.perf_counter() - t_row
            res["seed"] = seed
            _save_row(run_dir, res)
            if seed == seeds[0]:
                fig_preds[r.key] = res["_predictions"]
            results[r.key].append(res)
            h = res["headline"]
            w = res.get("whole")
            print(
                f"[table2] seed {seed} {r.label}: IoU {h['iou']['value'] * 100:.2f} Dice {h['dice']['value'] * 100:.2f}"
                + (f"; whole patient 3D Dice {w['dice_3d']['mean'] * 100:.2f}" if w else "")
                + f" ({res['seconds']:.0f} s)"
            )
    table = _aggregate(selected, results, b, budget, time.perf_counter() - t0)
    table["seeds"] = list(seeds)
    _write_outputs(out, table)
    try:
        fig4(data, {r.key: r.label for r in selected}, fig_preds, out / "fig4.png")
    except Exception as exc:  # the figure is a nicety; the table stands without it
        log.warning("fig4.png not written: %s", exc)
    write_text_atomic(out / "table2.json", json.dumps(table, indent=1))
    return table


def _aggregate(selected, results, b: Budget, budget: str, seconds: float) -> dict:
    ref_patients = _patient_dice(results.get(REFERENCE_ROW, []))
    table_rows = []
    for r in selected:
        runs = results[r.key]
        if not runs:
            continue
        row = {"key": r.key, "label": r.label, "seeds": len(runs), "paper_table": PAPER_TABLE2.get(r.key)}
        for conv in ("paper", "cipa"):
            vals = {}
            for m in ("iou", "dice", "accuracy", "hd95"):
                v = np.array(
                    [(x["headline"][m]["value"] if conv == "paper" else x["cipa"][m]) for x in runs], dtype=float
                )
                vals[m] = {"mean": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                           "std": float(np.nanstd(v)) if len(v) > 1 else 0.0}  # fmt: skip
            row[f"conv_{conv}"] = vals
        row["ci95_first_seed"] = {m: runs[0]["headline"][m]["ci95"] for m in ("iou", "dice", "accuracy", "hd95")}
        row["hd95_unit"] = runs[0].get("hd95_unit", "")
        row["per_patient_first_seed"] = runs[0].get("per_patient", {})
        row["hd95_undefined"] = runs[0].get("hd95_undefined", 0)
        pats = _patient_dice(runs)
        row["patient_dice_3d"] = pats
        common = sorted(set(pats) & set(ref_patients))
        row["wilcoxon_p_vs_sim"] = (
            _wilcoxon([pats[p] for p in common], [ref_patients[p] for p in common]) if r.key != REFERENCE_ROW else None
        )
        wholes = [x["whole"] for x in runs if x.get("whole")]
        if wholes:

            def mean_of(key: str, stat: str = "mean", ws=wholes) -> dict:
                v = np.array([w[key].get(stat, np.nan) for w in ws], dtype=float)
                return {"mean": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                        "std": float(np.nanstd(v)) if len(v) > 1 else 0.0}  # fmt: skip

            row["whole_patient"] = {
                "dice_3d": mean_of("dice_3d"),
                "hd95_3d_mm_median": mean_of("hd95_3d_mm", "median"),
                "false_positive_cc": mean_of("false_positive_cc"),
                "false_negative_cc": mean_of("false_negative_cc"),
                "lesions_hit": int(sum(w["lesions_hit"] for w in wholes)),
                "lesions_true": int(sum(w["lesions_true"] for w in wholes)),
                "false_lesions": int(sum(w["false_lesions"] for w in wholes)),
                "patients": int(wholes[0]["patients"]),
                "dice_3d_ci95_first_seed": wholes[0]["dice_3d"].get("ci95"),
                "postprocess_rules_first_seed": wholes[0].get("postprocess_rules", {}),
            }
        row["seconds"] = float(sum(x["seconds"] for x in runs))
        table_rows.append(row)
    return {"budget": budget, "settings": b.__dict__, "rows": table_rows, "seconds": seconds}


def _patient_dice(runs: list[dict]) -> dict[str, float]:
    """Per-patient 3D Dice averaged over seeds (falls back to per-patient mean slice Dice for PCLT20K)."""
    acc: dict[str, list[float]] = {}
    for x in runs:
        prow = x.get("whole_rows") or x.get("_patient_rows") or []
        if prow:
            for p in prow:
                acc.setdefault(p["patient"], []).append(p["dice_3d"])
        else:
            by: dict[str, list[float]] = {}
            for s in x["_slice_rows"]:
                by.setdefault(s["patient"], []).append(s["dice"])
            for p, v in by.items():
                acc.setdefault(p, []).append(float(np.mean(v)))
    return {p: float(np.mean(v)) for p, v in acc.items()}


def _write_outputs(out: Path, table: dict) -> None:
    """``table2.md`` (our numbers next to the paper's) and ``table2.csv``."""
    from igtv.io import write_csv_atomic, write_text_atomic

    unit = next((r["hd95_unit"] for r in table["rows"] if r["hd95_unit"]), "")
    head = (
        f"| Method | IoU (%) | Dice (%) | Acc (%) | HD95 ({unit}) | 3D Dice (%) | HD95 3D median (mm) | FP (cc) "
        "| FN (cc) | lesions found | false lesions | Wilcoxon p vs +SIM | Paper: IoU / Dice / Acc / HD95 |"
    )
    lines = [head, "|---" * 13 + "|"]
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
                    "ref." if pval is None else ("n/a" if not np.isfinite(pval) else f"{pval:.3f}"),
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
        + f", batch {s['batch_size']}, seeds {table.get('seeds', list(s['seeds']))}; "
        + f"{table['seconds'] / 60:.1f} min in all.",
        "IoU, Dice, Acc, HD95: the paper's protocol, per-slice means (Eqs. 9-12) over the ROI slices of the IGTV "
        "test split, mean ± std over seeds. 3D Dice, HD95 3D, FP, FN, lesions: whole patient, the predict pipeline "
        "on each test patient with nothing from the truth (threshold rows are given each lesion's box + 15 mm), "
        "means per patient over seeds; lesions summed over seeds. Wilcoxon: paired, per-patient 3D Dice against "
        "+SIM. Paper: Table II of Luo et al. (../shared/paper), LUCID-PET/CT, IoU/Dice/Acc in %; its no-fine-tune "
        "rows are shown against both of our readings.",
    ]
    write_text_atomic(out / "table2.md", "\n".join(lines) + "\n")
    write_csv_atomic(out / "table2.csv", csv_rows)


def _whole_cells(w: dict | None, dice3: float) -> list[str]:
    """3D Dice, HD95 3D, FP, FN, lesions found, false lesions; without a whole-patient reading, the 3D Dice of the
    slice predictions put back on the CT grid and dashes."""
    if not w:
        return [_fmt(dice3, 0.0)] + ["-"] * 5
    return [
        _fmt(w["dice_3d"]["mean"], w["dice_3d"]["std"]),
        _fmt(w["hd95_3d_mm_median"]["mean"], 0.0, scale=1.0, digits=1),
        _fmt(w["false_positive_cc"]["mean"], w["false_positive_cc"]["std"], scale=1.0, digits=1),
        _fmt(w["false_negative_cc"]["mean"], w["false_negative_cc"]["std"], scale=1.0, digits=1),
        f"{w['lesions_hit']}/{w['lesions_true']}",
        str(w["false_lesions"]),
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
