"""igtv.training.ema: the moving average of the weights."""

import pytest
import torch
from torch import nn

from igtv.training.ema import WeightEMA


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_each_update_moves_the_average_by_one_minus_decay_and_copies_counters():
    net = _net()
    ema = WeightEMA(net, 0.9)
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].num_batches_tracked.fill_(7)
    ema.update(net)
    torch.testing.assert_close(ema.module[0].weight, w0 + 0.1)  # 0.9 * w0 + 0.1 * (w0 + 1)
    assert int(ema.module[1].num_batches_tracked) == 7  # an integer buffer is copied, not averaged
    ema.update(net)
    torch.testing.assert_close(ema.module[0].weight, w0 + 0.19)  # 0.9 * (w0 + 0.1) + 0.1 * (w0 + 1)
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    assert net[0].weight.requires_grad  # the trained model is untouched


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="ema_decay must be in"):
        WeightEMA(_net(), decay)
