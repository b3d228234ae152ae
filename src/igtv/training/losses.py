"""The training loss of the paper, Eqs. 7-8: Dice loss + binary cross-entropy on logits."""

from __future__ import annotations

import torch
from torch import nn


class DiceBCELoss(nn.Module):
    """Dice + BCE loss, Eqs. 7-8: L = L_Dice + L_BCE on logits (MONAI's ``DiceCELoss`` with a sigmoid; for one
    output channel it takes the binary cross-entropy). ``batch=True`` computes one Dice over the whole batch
    (nnU-Net's 2D choice), which does not punish patches without target as hard as a per-sample mean."""

    def __init__(self, batch: bool = False) -> None:
        super().__init__()
        from monai.losses import DiceCELoss

        self.loss = DiceCELoss(sigmoid=True, batch=batch)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, target)
