"""Our DropPath against MONAI's, which it replaces to keep MONAI out of the prediction path's imports."""

from __future__ import annotations

import pytest
import torch
from monai.networks.layers import DropPath as MonaiDropPath

from igtv.models.drop_path import DropPath


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_same_output_as_monai_under_the_same_random_state(p):
    x = torch.randn(64, 3, 5, 5)
    ours, theirs = DropPath(p).train(), MonaiDropPath(p).train()
    torch.manual_seed(1)
    a = ours(x)
    torch.manual_seed(1)
    b = theirs(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    if 0 < p < 1:
        dropped = (a.flatten(1) == 0).all(1)
        assert 0 < dropped.sum() < 64  # whole samples dropped, not single values
        torch.testing.assert_close(a[~dropped], x[~dropped] / (1 - p))


def test_identity_in_eval_and_range_checked():
    x = torch.randn(4, 8)
    assert DropPath(0.5).eval()(x) is x
    with pytest.raises(ValueError, match="drop path"):
        DropPath(1.5)
