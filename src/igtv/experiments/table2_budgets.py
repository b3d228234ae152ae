"""Table II's budgets (how much data and training a run gets) and the training configuration each row gets from one.

Every row of a run gets the same splits, seeds and epochs, and every IGTV training (fine-tuned and scratch rows) the
same batch. ``quick`` is the 2-core CPU recipe on phantom patches; ``paper`` keeps the paper's own settings (Sec.
IV-E), which differ between its two stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dc_replace
from pathlib import Path

from igtv.experiments.table2_report import ROWS, Row
from igtv.inference.sliding import DEFAULT_OVERLAP


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
    patience: int = 0  # early stopping of the IGTV trainings (0: off)
    sampler: str = "slices"  # "patches": patches of `patch` px at `spacing_mm` from the volumes (igtv.data.sampling)
    spacing_mm: float = 2.0
    patch: int = 96
    samples_per_epoch: int = 512
    overlap: float = DEFAULT_OVERLAP  # sliding-window overlap of the whole-patient prediction
    whole_patient: bool = True  # add the whole-patient reading when the dataset has volumes
    z_extent_mm: float = 250.0  # head-foot length of each phantom patient
    default_rows: tuple[str, ...] = ()  # the rows run when none are named (empty: every row)
    igtv_batch_size: int = 0  # the IGTV trainings (fine-tuned and scratch rows); 0: batch_size
    min_lr_fraction: float = 0.1  # the cosine schedule's floor, as a fraction of the row's learning rate
    grad_clip: float = 1.0  # gradient norm clipping (0: off)
    val_from: int = 1  # the IGTV trainings' first validated epoch (train.val_from; pre-training validates every one)
    # one 2D pre-training (seeded with the budget's first seed, in OUT/runs/pretrain) that every seed fine-tunes from,
    # as one published pre-trained model is fine-tuned: the seeds then vary the IGTV trainings only, and the
    # "applied" rows (the pre-training itself) are one model, scored once (False: a pre-training per seed)
    shared_pretrain: bool = False
    hot_min_suv_max: float = 0.0  # the IGTV trainings' data.hot_min_suv_max (hot negatives among SUVmax >= this)
    init_slices: str = "repeat"  # the fine-tuned and applied 2.5D rows' transfer of the 2D stem (RunConfig.init_slices)


# the MONAI U-Net runs only when named (`--rows all` or a list with `unet`): at this budget it fails (session 26:
# whole-patient Dice 7 % per seed, 21 % as a seed ensemble with 326 cc false volume per patient) and costs ~8 min
_QUICK = Budget(
    "s", 0, 15, 8, 0, 8, 2e-3, 1e-3, 2e-3, (0, 1, 2), 72, 90, 1.0, 0, "patches", 2.0, 96, 320, 0.25,
    default_rows=tuple(r.key for r in ROWS if r.key != "unet"),
    # validation from epoch 5 of 8: every learnt row of session 41's table (3 seeds x 6 rows) had its best validation
    # epoch at 5-8, so the same models at ~4 min less (docs/table2.md)
    val_from=5,
    shared_pretrain=True,
    # 72 GTV patients x 15 pre-training epochs (24 x 5 until session 46) and hot negatives among SUVmax >= 3 in the
    # IGTV trainings: session 45's rule B, which failed its first gate by one false lesion (4 -> 5 on validation + 25
    # fresh patients) and passed session 46's rule D on 25 patients made after it (+SIM Dice 71.1 -> 76.8, false
    # lesions 9 -> 9, all avid nodes; docs/table2.md, *What the false lesions are*). ~6 min more than 24 x 5;
    # session 47's table with it: +SIM 82.26 per seed on the test split (79.12 before; docs/table2.md)
    hot_min_suv_max=3.0,
    # masks at probability 0.5 (the shipped configs' train.predict_threshold 0): 0.7 raised the fine-tuned models'
    # mean Dice on 70 fresh patients (77.80 -> 78.52) but found fewer lesions (936 -> 926 of 1020 readings), the
    # post-processing tuned on 0.5 components losing tumours from the smaller 0.7 seeds (session 51; README
    # *Evaluation and Table II*)
)  # fmt: skip
_PAPER = Budget(
    "t", 0, 50, 30, 0, 16, 1e-3, 6e-5, 1e-3, (0, 1, 2), 60, 60, 1.0, 10,
    igtv_batch_size=4, min_lr_fraction=0.0, grad_clip=0.0,
)  # fmt: skip
_SMOKE = Budget(
    "tiny", 32, 1, 1, 1, 2, 1e-3, 1e-3, 1e-3, (0,), 3, 8, 0.25, z_extent_mm=200.0,
    igtv_batch_size=3, min_lr_fraction=0.0, grad_clip=0.0,
)  # fmt: skip
# tests of the patch path: tiny CIPA on 32 px patches at the CT's own pixel size, one pre-training as in quick.
_SMOKE_PATCHES = Budget(
    "tiny", 0, 1, 1, 1, 2, 1e-3, 1e-3, 1e-3, (0,), 3, 8, 0.25, 0, "patches", 0.0, 32, 4, z_extent_mm=200.0,
    shared_pretrain=True,
)  # fmt: skip
BUDGETS = {
    # 2-core CPU, phantom v2, small CIPA on 96 px patches at 2 mm, 12 test patients, 3 seeds; `--seeds` runs them
    # apart. Each extra IGTV epoch costs ~6 min over 3 seeds; 8 IGTV epochs since session 30, chosen on validation
    # and 25 fresh phantom patients before the test split was read (docs/table2.md and docs/history.md).
    "quick": _QUICK,
    # quick with 3x the IGTV epochs, 4x before session 30 (a workstation CPU overnight: ~2.5 h on 2 cores for
    # every row). Session 17 measured +SIM seed 0 at 6 / 12 / 24 epochs: whole-patient Dice 0.586 / 0.646 / 0.707
    # on the test split.
    "long": dc_replace(_QUICK, finetune_epochs=24),
    # the paper's settings (Sec. IV-E), as the shipped configs/pretrain_gtv.yaml and finetune_igtv.yaml have them:
    # CIPA-T at 512 px, lr 1e-3 and batch 16 pre-training, lr 6e-5 and batch 4 on IGTV, cosine annealing to 0, no
    # clipping; 3 seeds; a GPU. Scratch rows: lr 1e-3 at the IGTV batch.
    "paper": _PAPER,
    # tests and a first look: tiny CIPA at 32 px, one step per epoch; the paper budget's whole-slice path with its
    # per-stage settings (another batch on IGTV, no schedule floor, no clipping)
    "smoke": _SMOKE,
    "smoke_patches": _SMOKE_PATCHES,
}


def select_rows(rows: tuple[str, ...] | None, budget: Budget) -> list[Row]:
    """The rows to run, in Table II's order: ``rows`` by key, ``("all",)`` for every row, ``None`` for the budget's
    default rows. An unknown key is refused with the valid ones, before any work."""
    if rows is not None and tuple(rows) == ("all",):
        return list(ROWS)
    keys = set(rows) if rows is not None else set(budget.default_rows or (r.key for r in ROWS))
    unknown = sorted(keys - {r.key for r in ROWS})
    if unknown:
        raise ValueError(f"unknown Table II row(s) {unknown}; the rows are {[r.key for r in ROWS]} (or all)")
    return [r for r in ROWS if r.key in keys]


def run_config(budget: Budget, model: str, root: Path, stage: str, seed: int, init: str, device: str):
    """The RunConfig of one Table II training: ``stage`` is ``pretrain`` (2D, GTV data), ``finetune`` (from ``init``)
    or ``scratch``; the shipped paper config of its stage with the budget's settings on top."""
    from igtv.config import load_config, replace, shipped_config
    from igtv.training.config import RunConfig

    base = load_config(RunConfig, shipped_config("pretrain_gtv.yaml" if stage == "pretrain" else "finetune_igtv.yaml"))
    lr = {"pretrain": budget.pretrain_lr, "finetune": budget.finetune_lr, "scratch": budget.scratch_lr}[stage]
    epochs = budget.pretrain_epochs if stage == "pretrain" else budget.finetune_epochs
    from igtv.models import create_model

    mode = "25d" if create_model(model).in_slices == 3 else "2d"
    return replace(
        base,
        stage="pretrain" if stage == "pretrain" else "finetune",
        model=model,
        seed=seed,
        device=device,
        init=init,
        init_slices=budget.init_slices if init else base.init_slices,
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
            hot_min_suv_max=base.data.hot_min_suv_max if stage == "pretrain" else budget.hot_min_suv_max,
        ),  # fmt: skip
        train=replace(
            base.train,
            lr=lr,
            min_lr=lr * budget.min_lr_fraction,
            epochs=epochs,
            batch_size=budget.batch_size if stage == "pretrain" else budget.igtv_batch_size or budget.batch_size,
            max_steps_per_epoch=budget.max_steps,
            # Sec. IV-E stops early in fine-tuning only: pre-training keeps the shipped config's (none)
            patience=base.train.patience if stage == "pretrain" else budget.patience,
            val_from=1 if stage == "pretrain" else budget.val_from,
            grad_clip=budget.grad_clip,
            batch_dice=budget.sampler == "patches",
        ),
    )
