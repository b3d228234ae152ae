"""The dynamic cross-modality interaction module (DCIM, CIPA Sec. 3.3)."""

from __future__ import annotations

import pytest
import torch

from igtv.models.dcim import DCIM


@pytest.mark.parametrize("hw", [(8, 8), (6, 10), (3, 5)])
def test_dcim_shape_with_and_without_whole_windows(hw):
    torch.manual_seed(0)
    dcim = DCIM(8, window=4, d_state=4, scan_impl="ref").eval()
    with torch.no_grad():
        out = dcim(torch.randn(2, 8, *hw), torch.randn(2, 8, *hw))
    assert out.shape == (2, 8, *hw) and torch.isfinite(out).all()


def test_dcim_takes_both_modalities():
    torch.manual_seed(0)
    dcim = DCIM(8, window=4, d_state=4, scan_impl="ref")
    ct = torch.randn(1, 8, 8, 8, requires_grad=True)
    pet = torch.randn(1, 8, 8, 8, requires_grad=True)
    dcim(ct, pet).square().sum().backward()
    assert ct.grad.abs().sum() > 0 and pet.grad.abs().sum() > 0


def test_dcim_window_is_four():
    with pytest.raises(ValueError, match="window must be 4"):
        DCIM(8, window=2)
