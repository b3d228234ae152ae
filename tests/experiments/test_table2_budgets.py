"""Table II budgets: ``paper`` trains each stage with the paper's settings (Sec. IV-E), ``quick`` keeps its recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from igtv.config import load_config, shipped_config
from igtv.experiments.table2_budgets import BUDGETS, run_config
from igtv.training.config import RunConfig


def _cfg(budget: str, ablation: str, stage: str) -> RunConfig:
    b = BUDGETS[budget]
    init = "runs/seed0/pretrain/best.pt" if stage == "finetune" else ""
    return run_config(b, f"{ablation}_{b.width}", Path("/data/igtv"), stage, 0, init, "cpu")


def _schedule(cfg: RunConfig) -> tuple:
    t = cfg.train
    return t.batch_size, t.lr, t.min_lr, t.grad_clip, t.epochs


def test_paper_budget_trains_each_stage_as_the_paper_and_the_shipped_configs_say():
    shipped_pre = load_config(RunConfig, shipped_config("pretrain_gtv.yaml"))
    shipped_ft = load_config(RunConfig, shipped_config("finetune_igtv.yaml"))

    pre = _cfg("paper", "cipa_2d", "pretrain")
    # Sec. IV-E: lr 1e-3 with cosine annealing, batch 16; no early stopping is stated for pre-training
    assert _schedule(pre) == (16, 1e-3, 0.0, 0.0, 50) == _schedule(shipped_pre)
    assert pre.train.patience == 0 and pre.data.mode == "2d" and pre.stage == "pretrain"

    ft = _cfg("paper", "cipa_25d_sim", "finetune")
    # Sec. IV-E: lr 6e-5, batch 4, 30 epochs with early stopping on validation IoU
    assert _schedule(ft) == (4, 6e-5, 0.0, 0.0, 30) == _schedule(shipped_ft)
    assert ft.train.patience == 10 and ft.data.mode == "25d" and ft.init == "runs/seed0/pretrain/best.pt"
    assert ft.train.val_from == 1 == pre.train.val_from  # early stopping reads every epoch's validation
    assert not BUDGETS["paper"].shared_pretrain  # a pre-training per seed (a GPU affords it)
    assert ft.data.sampler == "slices" and ft.data.size == 0  # the PNGs' whole 512 px slices

    scratch = _cfg("paper", "cipa_25d", "scratch")
    assert _schedule(scratch) == (4, 1e-3, 0.0, 0.0, 30)  # every IGTV training of a table at one batch
    assert scratch.init == "" and scratch.stage == "finetune"


@pytest.mark.parametrize(
    ("ablation", "stage", "lr"),
    [("cipa_2d", "pretrain", 2e-3), ("cipa_25d_sim", "finetune", 1e-3), ("cipa_25d", "scratch", 2e-3)],
)
def test_quick_budget_keeps_its_cpu_recipe(ablation, stage, lr):
    cfg = _cfg("quick", ablation, stage)
    assert _schedule(cfg) == (8, lr, pytest.approx(lr / 10), 1.0, 15 if stage == "pretrain" else 8)
    assert cfg.train.patience == 0 and cfg.train.batch_dice
    # the IGTV trainings validate from epoch 5 of 8 (where session 41's best epochs all were); pre-training every epoch
    assert cfg.train.val_from == (1 if stage == "pretrain" else 5) and cfg.train.val_every == 1
    assert BUDGETS["quick"].shared_pretrain  # one pre-training, fine-tuned by every seed
    assert (cfg.data.sampler, cfg.data.patch, cfg.data.spacing_mm, cfg.data.samples_per_epoch) == (
        "patches",
        96,
        2.0,
        320,
    )
    # 72 GTV patients; hot negatives among SUVmax >= 3 in the IGTV trainings only (session 45's rule B)
    assert BUDGETS["quick"].gtv_patients == 72
    assert cfg.data.hot_min_suv_max == (0.0 if stage == "pretrain" else 3.0)
    # masks at the validation threshold, 0.5 (0.7 found fewer lesions: session 51)
    assert cfg.train.threshold == 0.5 and cfg.train.predict_threshold == 0.0


@pytest.mark.parametrize(
    ("name", "model", "stage"),
    [
        ("pretrain_gtv_patches.yaml", "cipa_2d_s", "pretrain"),
        ("finetune_igtv_patches.yaml", "cipa_25d_sim_s", "finetune"),
    ],
)
def test_shipped_patch_configs_are_the_quick_tables_measured_recipe(name, model, stage):
    """The configs a user trains with for contours on new patients are the quick budget's trainings, setting for
    setting (only the data folder and the init are left to the command line)."""
    from igtv.config import replace

    shipped = load_config(RunConfig, shipped_config(name))
    table = run_config(BUDGETS["quick"], model, Path("/data/igtv"), stage, 0, "", "auto")
    assert shipped == replace(table, data=replace(table.data, root=""))
    assert shipped.data.sampler == "patches" and shipped.data.preset == "pclt20k"  # negatives, a window with no answer


def test_long_budget_is_quick_with_three_times_the_igtv_epochs():
    """``long`` trains the IGTV rows 24 epochs instead of 8 and changes nothing else (the same pre-training, data,
    seeds and evaluation), so its readings against ``quick`` measure the training length alone."""
    from dataclasses import replace as dc_replace

    assert BUDGETS["long"] == dc_replace(BUDGETS["quick"], finetune_epochs=24)
    assert _cfg("long", "cipa_2d", "pretrain") == _cfg("quick", "cipa_2d", "pretrain")


def test_budget_init_slices_reaches_the_fine_tuned_rows_only():
    from dataclasses import replace

    b = replace(BUDGETS["quick"], init_slices="centre")
    ft = run_config(b, "cipa_25d_sim_s", Path("/data/igtv"), "finetune", 0, "pre/best.pt", "cpu")
    scratch = run_config(b, "cipa_25d_s", Path("/data/igtv"), "scratch", 0, "", "cpu")
    assert ft.init_slices == "centre" and scratch.init_slices == "repeat"
    assert _cfg("quick", "cipa_25d_sim", "finetune").init_slices == "repeat"
