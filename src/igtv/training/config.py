"""Run configuration: frozen dataclasses, saved as ``config.yaml`` in the run folder and inside every checkpoint.

Paper defaults (Sec. IV-E): stage 1 AdamW (0.9, 0.999), weight decay 1e-2, lr 1e-3 with cosine annealing, batch 16,
2D input; stage 2 lr 6e-5, batch 4, 30 epochs, early stopping and model selection on validation IoU, 2.5D + SIM.

``train.batch_size`` is the global batch: with N processes (DDP) each one gets ``batch_size / N`` samples per step,
so the optimisation (and the learning rate) is the same as a single process with the same config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import yaml

from igtv.config import ConfigError, from_dict, to_dict


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # dataset folder in the PCLT20K layout (PCLT20K or igtv prepare output); --data sets it
    mode: Literal["2d", "25d"] = "2d"
    size: int = 0  # resize PNGs to size x size on load (0 = as stored); must be divisible by 32 for CIPA
    val_fraction: float = 0.15  # patient-level share of train used for validation when there is no val.txt
    augment: bool = True
    num_workers: int = 0
    # "slices": the paper's protocol (whole PNG slices of the split lists, resized to `size`); "patches": patches
    # drawn from the prepared volumes at `spacing_mm` with negatives (igtv.data.sampling), windows on the fly
    sampler: Literal["slices", "patches"] = "slices"
    preset: Literal["pclt20k", "lucid"] = "pclt20k"  # patches: windows applied on the fly (prediction does the same)
    spacing_mm: float = 2.0  # patches: in-plane pixel size in mm (0 = the CT's own)
    patch: int = 96  # patches: side in pixels (divisible by 32 for CIPA)
    fg_fraction: float = 0.5  # patches: share centred on the target (with jitter)
    hot_fraction: float = 0.25  # patches: share centred on PET-avid regions that are not target (hot organs)
    hot_size_power: float = 0.0  # patches: hot regions drawn in proportion to size ** this (0: all alike)
    # patches: hot regions drawn only among those with SUVmax >= this (0: all; 3.0: those post-processing can keep)
    hot_min_suv_max: float = 0.0
    # patches: share centred on structures the contour must leave out (volumes/<P>/avoid.nii.gz: avid nodes)
    avoid_fraction: float = 0.0
    # patches: lesion patches drawn across all patients' lesions in proportion to size ** this (0: a patient
    # uniformly, then one of its lesions)
    lesion_size_power: float = 0.0
    jitter: float = 0.8  # patches: lesion centres move by up to jitter * patch / 2 pixels
    # patches: where the rest are centred: "body" (anywhere, CT > -400 HU) or "thorax" (lungs + mediastinum, the
    # region whose components post-processing keeps)
    negatives: Literal["body", "thorax"] = "body"
    pet_gain_p: float = 0.3  # patches: probability of scaling the PET (calibration; cold tumours seen on CT) ...
    pet_gain_range: tuple[float, float] = (0.8, 1.25)  # ... by a log-uniform factor in this range
    pet_dropout: float = 0.0  # patches: probability of scaling the PET by 0-0.2 (tumours must be found on the CT)
    cold_p: float = 0.0  # patches: probability of making a lesion patch's tumour cold (organs keep their uptake) ...
    cold_suv_range: tuple[float, float] = (1.2, 2.5)  # ... with its SUVmax drawn in this range
    samples_per_epoch: int = 1024  # patches: training samples per epoch (steps = samples / batch)
    eval_samples: int = 256  # patches: fixed validation / test patches
    # synthetic pre-training: with no root, generate and prepare this many phantom GTV patients (cached in the run's
    # phantom_cache/; igtv.training.synthetic), domain-randomised unless phantom_randomize is false
    phantom_patients: int = 0
    phantom_seed: int = 0
    phantom_randomize: bool = True
    phantom_matrix_scale: float = 1.0  # 1.0: 512x512 CT (tests use 0.125)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: Literal["adamw", "sgd"] = "adamw"  # sgd: Nesterov momentum, nnU-Net's choice
    momentum: float = 0.99  # SGD only
    lr: float = 1e-3
    min_lr: float = 0.0  # cosine annealing floor
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 16  # global batch (all processes together)
    epochs: int = 50
    patience: int = 0  # early stopping after this many epochs without a better validation IoU (0 = off)
    # validate (and choose best.pt) every this many epochs and after the last one (MONAI's val_interval); the
    # epochs in between log no validation figures
    val_every: int = 1
    # the first epoch (1-based) validated: earlier ones log no validation and cannot become best.pt (the last epoch
    # always validates); for short schedules whose best epoch is never early (Table II's quick budget)
    val_from: int = 1
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    # validate, select and save an exponential moving average of the weights, updated every step with this decay
    # (0 = off; igtv.training.ema)
    ema_decay: float = 0.0
    amp: Literal["auto", "off"] = "auto"  # auto: bf16 (or fp16 + scaler) on CUDA, off on CPU
    max_steps_per_epoch: int = 0  # 0 = the whole training split every epoch
    threshold: float = 0.5  # probability threshold for validation metrics
    # the probability threshold of the masks the trained model draws: written into its model card, which predict,
    # evaluate and Table II read (0: `threshold`); validation and the choice of best.pt keep `threshold`
    predict_threshold: float = 0.0
    batch_dice: bool = False  # Dice loss over the whole batch (nnU-Net's 2D choice) instead of per sample


@dataclass(frozen=True)
class RunConfig:
    stage: Literal["pretrain", "finetune"] = "pretrain"
    model: str = "cipa_2d_t"
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    sync_bn: bool = False  # SyncBatchNorm under DDP
    init: str = ""  # checkpoint whose weights are transferred before training (stage 2)
    # how the 2D stem reaches a 2.5D model's slice stack (igtv.training.transfer): "repeat" (as loaded: CIPA's 3
    # channel kernels on 3 slices) or "centre" (the 2D kernel on slice t, t-1 and t+1 from zero)
    init_slices: Literal["repeat", "centre"] = "repeat"
    pretrained_encoder: str = ""  # local VMamba v0 ImageNet checkpoint loaded into the encoder(s) first (stage 1)
    evaluate_test: bool = True  # evaluate best.pt on the test split at the end
    overrides: tuple[str, ...] = ()  # command-line --set overrides, recorded


def apply_overrides(cfg: RunConfig, sets: list[str] | tuple[str, ...]) -> RunConfig:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) and record them in ``cfg.overrides``."""
    if not sets:
        return cfg
    data = to_dict(cfg)
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. train.lr=1e-4)")
        key, text = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"--set {item!r}: {p!r} is not a config section")
            node = node[p]
        if parts[-1] not in node:
            raise ConfigError(f"--set {item!r}: unknown key {parts[-1]!r} (valid: {sorted(node)})")
        value = yaml.safe_load(text)
        if isinstance(node[parts[-1]], float) and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                value = float(value)  # YAML 1.1 reads "1e-4" as a string
            except ValueError:
                pass
        node[parts[-1]] = value
    data["overrides"] = list(cfg.overrides) + list(sets)
    return from_dict(RunConfig, data, "--set")
