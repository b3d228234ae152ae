"""Weights kept as an exponential moving average of the trained ones (timm's ``ModelEmaV2`` idea).

The average ``w_ema <- decay * w_ema + (1 - decay) * w`` after every optimiser step smooths the last few hundred
steps' noise out of the weights, as a seed ensemble smooths predictions, at no prediction cost. Validation,
``best.pt`` and every later use (fine-tuning, prediction) take the averaged weights; ``last.pt`` keeps the trained
ones too, so a run resumes exactly. Buffers that are not floating point (counters) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    """Exponential moving average of ``model``'s state (parameters and floating buffers), on its device."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) (0 turns the average off), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s current state."""
        trained = model.state_dict()
        for name, avg in self.module.state_dict().items():
            if avg.dtype.is_floating_point:
                avg.lerp_(trained[name].to(avg.dtype), 1.0 - self.decay)
            else:
                avg.copy_(trained[name])
