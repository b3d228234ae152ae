"""The Dice + BCE loss of Eqs. 7-8."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss

from igtv.training.losses import DiceBCELoss


@pytest.mark.parametrize("batch", [False, True])
def test_loss_is_dice_plus_bce(batch):
    torch.manual_seed(0)
    logits = torch.randn(4, 1, 16, 16)
    target = (torch.rand(4, 1, 16, 16) > 0.7).float()
    expect = DiceLoss(sigmoid=True, batch=batch)(logits, target) + torch.nn.BCEWithLogitsLoss()(logits, target)
    torch.testing.assert_close(DiceBCELoss(batch)(logits, target), expect)


def test_loss_rewards_the_right_mask():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    right = DiceBCELoss()(20 * (2 * target - 1), target)
    wrong = DiceBCELoss()(-20 * (2 * target - 1), target)
    assert right < 0.01 and wrong > 10 * right + 1
