"""Optimiser, schedule and mixed precision of a run.

Weight decay applies to weight matrices and convolution kernels only: biases and LayerNorm/BatchNorm weights
(below 2-D, as nanoGPT and timm exclude them) and the parameters a module marks ``_no_weight_decay`` (the selective
scan's ``A_logs``, ``Ds`` and dt bias, as VMamba marks them) are excluded; decaying them pulls norms and the state
decay towards zero for no regularisation benefit.
"""

from __future__ import annotations

import torch
from torch import nn

from igtv.training.config import RunConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW/SGD groups: parameters of 2-D and more with ``weight_decay``, the rest and those marked
    ``_no_weight_decay`` without."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and not getattr(p, "_no_weight_decay", False) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW (the paper) or Nesterov SGD (nnU-Net), with the decay groups of :func:`param_groups`."""
    t = cfg.train
    groups = param_groups(model, t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=t.lr, betas=t.betas)


def build_scheduler(cfg: RunConfig, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """Cosine annealing from ``lr`` to ``min_lr``, stepped every iteration over ``epochs x steps_per_epoch``."""
    total = max(1, cfg.train.epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=cfg.train.min_lr)


def autocast_settings(cfg: RunConfig, device: torch.device) -> tuple[bool, torch.dtype | None]:
    """(enabled, dtype) of autocast: bf16 (else fp16 with a scaler) on CUDA unless ``amp: off``; off on CPU."""
    if cfg.train.amp == "off" or device.type != "cuda":
        return False, None
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
