"""``igtv table2``: the paper's Table II ablation, end to end, by one command.

2D CIPA pre-training on the GTV data (one shared by every seed, ``Budget.shared_pretrain``, or one per seed); then
per seed every row below trained (or not) on the IGTV training split with the same seed, epochs and batch
(:mod:`igtv.experiments.table2_budgets`), and scored on the IGTV test split (per slice, both conventions, and per
patient in 3D). With a shared pre-training the *applied* rows are one model: scored once, the result carried to the
other seeds. The paper's "no fine-tune" has two readings; both are
produced and labelled:

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
  (:mod:`igtv.experiments.whole_patient`): 3D Dice, HD95 (mm), false-positive / false-negative volume, lesions
  found and false lesions. The threshold rows are given each true lesion's box; the learnt rows are not.

With several seeds, each learnt row's seeds are also scored as one ensemble (:mod:`igtv.experiments.table2_ensembles`).
Outputs in ``OUT``: ``table2.md``, ``table2.csv``, ``table2.json`` (mean +- std over seeds, bootstrap CIs of the
first seed, paired Wilcoxon p of per-patient 3D Dice against +SIM, the seed ensembles), ``fig4.png`` (Fig. 4-style
comparison), every run folder under ``OUT/runs``, the ensembles' under ``OUT/ensembles`` and the extra cohorts'
under ``OUT/extra``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from igtv.experiments.table2_budgets import BUDGETS, Budget, run_config, select_rows
from igtv.experiments.table2_ensembles import score_ensembles
from igtv.experiments.table2_extra import check_cohorts, extra_lines, extra_reading, score_extra, score_extra_ensembles
from igtv.experiments.table2_finetune import finetune_readings
from igtv.experiments.table2_report import Row, aggregate, ensemble_rows, fig4, write_outputs

if TYPE_CHECKING:
    from igtv.data.prepare import PrepareConfig
    from igtv.phantom.config import PhantomConfig

log = logging.getLogger(__name__)


def gtv_cohort_config(budget: Budget, workers: int) -> PhantomConfig:
    """The PhantomConfig of the budget's GTV (pre-training) cohort: ``budget.gtv_patients`` PCLT20K-like patients,
    seed 10."""
    from igtv.phantom.config import PhantomConfig

    return PhantomConfig(
        cohort="gtv", patients=budget.gtv_patients, seed=10, matrix_scale=budget.matrix_scale,
        z_extent_mm=budget.z_extent_mm, workers=workers, pclt_size=budget.size or 512,
        write_pclt=budget.sampler != "patches",
    )  # fmt: skip


def make_gtv_dataset(out_dir: Path, budget: Budget, workers: int) -> Path:
    """The budget's GTV cohort simulated straight into a prepared dataset at ``out_dir`` (the patch budgets'
    pre-training data); patients already there are kept."""
    from igtv.data.prepare import PrepareConfig
    from igtv.phantom.dataset import write_prepared_cohort

    prep = PrepareConfig(roi="GTV", size=budget.size or 512, workers=workers)
    return write_prepared_cohort(gtv_cohort_config(budget, workers), out_dir, prep).out_dir


def igtv_cohort_config(budget: Budget, workers: int) -> PhantomConfig:
    """The PhantomConfig of the budget's IGTV cohort: ``budget.igtv_patients`` patients, seed 11 (patient *i* is the
    same at any cohort size: each patient's generator is seeded by the seed, the cohort and *i*)."""
    from igtv.phantom.config import PhantomConfig

    return PhantomConfig(
        cohort="igtv", patients=budget.igtv_patients, seed=11, matrix_scale=budget.matrix_scale,
        z_extent_mm=budget.z_extent_mm, workers=workers, write_pclt=False,
    )  # fmt: skip


def igtv_prepare_config(budget: Budget, workers: int) -> PrepareConfig:
    """The PrepareConfig of the budget's IGTV dataset (the PNG side and seed of its patient-level split)."""
    from igtv.data.prepare import PrepareConfig

    return PrepareConfig(size=budget.size or 512, workers=workers, seed=0)


def make_data(out: Path, budget: Budget, workers: int) -> tuple[Path, Path]:
    """Phantom GTV and IGTV cohorts, prepared. Patch budgets read only the prepared volumes, so both cohorts are
    simulated straight into prepared datasets (:mod:`igtv.phantom.dataset`: same pseudonyms, split and samples as
    through DICOM, ~1.4x faster); whole-slice budgets pre-train on the GTV cohort's PCLT20K PNG export and prepare
    the IGTV cohort from its DICOM."""
    from igtv.data.prepare import prepare_dataset
    from igtv.phantom.cohort import generate_cohort
    from igtv.phantom.config import PHANTOM_PSEUDONYM_KEY
    from igtv.phantom.dataset import write_prepared_cohort

    igtv_cfg = igtv_cohort_config(budget, workers)
    igtv_prep = igtv_prepare_config(budget, workers)
    if budget.sampler == "patches":
        pre = make_gtv_dataset(out / "dataset_gtv", budget, workers)
        return pre, write_prepared_cohort(igtv_cfg, out / "dataset_igtv", igtv_prep).out_dir
    gtv = generate_cohort(gtv_cohort_config(budget, workers), out / "phantom_gtv")
    igtv = generate_cohort(igtv_cfg, out / "phantom_igtv")
    key = PHANTOM_PSEUDONYM_KEY  # synthetic patients: a rerun gives the same pseudonyms, sample order and models
    prep = prepare_dataset(igtv.out_dir, out / "dataset_igtv", igtv_prep, pseudonym_key=key)
    return gtv.out_dir / "pclt", prep.out_dir


def _train_once(cfg, run_dir: Path, label: str = "") -> bool:
    """Train into ``run_dir`` unless a finished run is there (``log.csv`` holds every epoch); an interrupted run
    (``last.pt`` without every epoch) is resumed, not restarted, and never taken for a finished one. True if it
    trained."""
    from igtv.training.trainer import train

    log_csv = run_dir / "log.csv"
    done = len(log_csv.read_text().splitlines()) - 1 if log_csv.exists() else 0
    if (run_dir / "best.pt").exists() and done >= cfg.train.epochs:
        return False
    if label:
        print(label)
    train(cfg, run_dir, resume=(run_dir / "last.pt").exists(), progress=False)
    return True


def _share_row(src: Path, dst: Path, seed: int, first_seed: int) -> None:
    """An applied row of the shared pre-training for another seed: ``src``'s checkpoint, kept maps and result under
    ``dst`` (hard links where the file system allows, else copies with their times), the result marked as seed
    ``first_seed``'s model. The checkpoint keeps its size and mtime, so its kept maps stay valid for the ensembles."""
    from igtv.io import write_text_atomic

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy, dirs_exist_ok=True)
    res = json.loads((src / ROW_RESULT).read_text())
    res.update(seed=seed, seconds=0.0, same_model_as_seed=first_seed)
    write_text_atomic(dst / ROW_RESULT, json.dumps(res, default=_jsonable))  # a new file: the link to src's goes


def _applied_checkpoint(
    pretrain_ckpt: Path, model: str, out: Path, igtv_root: Path, size: int, init_slices: str = "repeat"
) -> Path:
    """The GTV-pretrained weights in ``model`` (2D or 2.5D), saved as a checkpoint without any IGTV training."""

    from igtv.checkpoint import load_checkpoint, read_card, save_model
    from igtv.config import to_dict
    from igtv.data.datasets import dataset_preprocessing
    from igtv.models import create_model
    from igtv.training.transfer import transfer_weights

    src = load_checkpoint(pretrain_ckpt)
    src_card = read_card(src, pretrain_ckpt)
    net = create_model(model)
    report = transfer_weights(net, src["model"], init_slices)
    card = dc_replace(src_card, name=model, in_slices=net.in_slices, architecture=to_dict(net.config))
    if card.sampler == "slices":  # whole slices: the IGTV dataset's own windows, at the budget's size
        card = dc_replace(card, preset=dataset_preprocessing(igtv_root)["preset"], input_size=size)
    run = dict(src["run_config"])
    run["data"] = {**run["data"], "mode": card.mode, "size": size}
    run["model"] = model
    return save_model(out / "best.pt", net.state_dict(), card, run_config=run, transfer=report.to_dict())


def _evaluate_row(r: Row, ckpt: Path | None, data: Path, run_dir: Path, b: Budget, cfg, device: str) -> dict:
    """Both readings of one row: ``headline`` / ``_slice_rows`` / ``_patient_rows`` / ``_predictions`` (paper
    protocol) and ``whole`` (whole-patient summary with its per-patient ``rows``)."""
    from igtv.data.datasets import SliceDataset
    from igtv.experiments.evaluate import evaluate_checkpoint, evaluate_masks, summarize, threshold_predictor
    from igtv.experiments.whole_patient import WholePatientConfig, evaluate_whole_patients
    from igtv.inference.model import load_model

    has_volumes = (data / "volumes").is_dir()
    patch_model = ckpt is not None and load_model(ckpt, "cpu").patch > 0
    whole = None
    if b.whole_patient and has_volumes:
        wcfg = WholePatientConfig(
            split="test", overlap=b.overlap, keep_masks=True, bootstrap=cfg.bootstrap, cache_probabilities=True
        )
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
        res = _row_record(evaluate_masks(data, "test", threshold_predictor(data, ds, r.rule), ds, cfg, run_dir))
    else:
        res = _row_record(evaluate_checkpoint(ckpt, data, "test", run_dir / "eval", cfg, device))
    if whole is not None:
        res["whole"] = whole["whole_patient"]
        res["whole_rows"] = whole["rows"]
    return res


def _row_record(ev) -> dict:
    """A row's record from an :class:`~igtv.experiments.evaluate.MaskEvaluation`: the summary, and the rows and
    masks this runner keeps under ``_`` keys (the masks are not saved with the row's result)."""
    return {
        **ev.summary,
        "_slice_rows": ev.slice_rows,
        "_patient_rows": ev.patient_rows,
        "_predictions": ev.predictions,
    }


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


def run_table2(
    out: str | Path,
    data: str | Path | None = None,
    pretrain_data: str | Path | None = None,
    budget: str = "quick",
    workers: int = 2,
    device: str = "auto",
    rows: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
    extra_data: tuple[str | Path, ...] = (),
) -> dict:
    """Run the ablation; returns the table as a dict (also written as ``table2.json``).

    ``seeds`` overrides the budget's seeds; ``extra_data`` names prepared cohorts to score every row on as well
    (:mod:`igtv.experiments.table2_extra`). Every row's result of every seed is saved next to its checkpoint
    (``row_result.json``), so an interrupted run, or one extended to more seeds, redoes only what is missing.
    """
    from igtv.experiments.evaluate import EvalConfig, headline
    from igtv.io import write_text_atomic

    t0 = time.perf_counter()
    b = BUDGETS[budget]
    selected = select_rows(rows, b)
    cohorts = check_cohorts(extra_data)
    out = Path(out)
    if data is None:
        print(f"[table2] phantom data: {b.gtv_patients} GTV + {b.igtv_patients} IGTV patients")
        from igtv.models.warmup import start_warm_up

        # the scan kernels compile while the data is made; not for the tests' tiny budgets, whose processes compile
        # the same kernels themselves (a third process would only compete for the cores)
        warm = start_warm_up([f"cipa_2d_{b.width}"]) if b.width != "tiny" else None
        gen_pre, data = make_data(out / "data", b, workers)
        if warm is not None:
            warm.join()
        print(f"[table2] phantom data ready ({time.perf_counter() - t0:.0f} s)")
        pretrain_data = pretrain_data or gen_pre
    data = Path(data)
    pretrain_data = Path(pretrain_data or data)
    cfg = EvalConfig(convention="paper")
    results: dict[str, list[dict]] = {r.key: [] for r in selected}
    fig_preds: dict[str, dict] = {}
    seeds = tuple(seeds) if seeds else b.seeds
    for seed in seeds:
        runs = out / "runs" / f"seed{seed}"
        pre_dir = out / "runs" / "pretrain" if b.shared_pretrain else runs / "pretrain"
        pre_ckpt = pre_dir / "best.pt"
        if any(r.init for r in selected):
            t_pre = time.perf_counter()
            pre_seed = b.seeds[0] if b.shared_pretrain else seed  # shared: the budget's first seed, whichever are run
            who = f"seed {pre_seed}, shared by every seed" if b.shared_pretrain else f"seed {seed}"
            cfg_pre = run_config(b, f"cipa_2d_{b.width}", pretrain_data, "pretrain", pre_seed, "", device)
            if _train_once(cfg_pre, pre_dir, f"[table2] {who}: 2D pre-training on {pretrain_data.name}"):
                print(f"[table2] {who}: 2D pre-training ready ({time.perf_counter() - t_pre:.0f} s)")
        for r in selected:
            if r.rule and seed != seeds[0]:
                continue  # deterministic: one evaluation
            t_row = time.perf_counter()
            run_dir = runs / r.key
            ckpt = None if r.rule else run_dir / "best.pt"
            first = out / "runs" / f"seed{seeds[0]}" / r.key
            if r.init == "applied" and b.shared_pretrain and seed != seeds[0] and (first / ROW_RESULT).exists():
                if _cached_row(run_dir, ckpt) is None:  # the same model as the first seed's: its reading, carried
                    _share_row(first, run_dir, seed, seeds[0])
            cached = _cached_row(run_dir, ckpt)
            if cached is not None:
                results[r.key].append(cached)
                print(f"[table2] seed {seed} {r.label}: saved result reused ({run_dir / ROW_RESULT})")
                continue
            if not r.rule:
                model = f"{r.model}_{b.width}"
                if r.init == "applied":
                    if not ckpt.exists():
                        _applied_checkpoint(pre_ckpt, model, run_dir, data, b.size, b.init_slices)
                else:
                    stage = "finetune" if r.init == "pretrain" else "scratch"
                    init = str(pre_ckpt) if r.init == "pretrain" else ""
                    _train_once(run_config(b, model, data, stage, seed, init, device), run_dir)
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
    ensembles = score_ensembles(selected, out, seeds, data, b, cfg.bootstrap, device)
    extra = score_extra(selected, out, seeds, cohorts, b, cfg.bootstrap, device) if cohorts else {}
    extra_ensembles = score_extra_ensembles(selected, out, seeds, cohorts, b, cfg.bootstrap, device)
    table = aggregate(selected, results, dict(b.__dict__), budget, time.perf_counter() - t0)
    table["seeds"] = list(seeds)
    table["ensembles"] = ensemble_rows(selected, ensembles)
    table["finetune_vs_not"] = finetune_readings(selected, table)
    if cohorts:
        table["extra"] = extra_reading(selected, table, extra, cohorts, extra_ensembles)
    write_outputs(out, table, extra_lines(table.get("extra")))
    try:
        fig4(data, {r.key: r.label for r in selected}, fig_preds, out / "fig4.png")
    except Exception as exc:  # the figure is a nicety; the table stands without it
        log.warning("fig4.png not written: %s", exc)
    write_text_atomic(out / "table2.json", json.dumps(table, indent=1))
    print(f"[table2] done in {(time.perf_counter() - t0) / 60:.1f} min")
    return table
