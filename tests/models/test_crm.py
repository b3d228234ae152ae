"""The channel-wise rectification module (CRM, CIPA Sec. 3.2)."""

from __future__ import annotations

import torch

from igtv.models.crm import CRM


def test_crm_rescales_each_channel_by_a_gate_in_0_1():
    torch.manual_seed(0)
    crm = CRM(8, pool=4, token_dim=16, d_state=4, scan_impl="ref").eval()
    ct, pet = torch.rand(2, 8, 16, 16) + 0.5, torch.rand(2, 8, 16, 16) + 0.5
    with torch.no_grad():
        out_ct, out_pet = crm(ct, pet)
    for x, y in ((ct, out_ct), (pet, out_pet)):
        ratio = y / x  # 1 + w per (sample, channel), the same at every pixel
        assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-5)
        assert (ratio > 1).all() and (ratio < 2).all()


def test_crm_weights_do_not_depend_on_the_input_size():
    crm = CRM(4, pool=4, token_dim=8, d_state=4, scan_impl="ref").eval()
    with torch.no_grad():
        for size in (8, 20, 64):
            a, b = crm(torch.randn(1, 4, size, size), torch.randn(1, 4, size, size))
            assert a.shape == b.shape == (1, 4, size, size)


def test_crm_mixes_the_modalities():
    """The gate of a CT channel depends on the PET (the 1D scan runs over CT and PET channels together)."""
    torch.manual_seed(0)
    crm = CRM(4, pool=4, token_dim=8, d_state=4, scan_impl="ref").eval()
    ct = torch.rand(1, 4, 16, 16) + 0.5
    with torch.no_grad():
        a, _ = crm(ct, torch.rand(1, 4, 16, 16))
        b, _ = crm(ct, 10 * torch.rand(1, 4, 16, 16))
    assert not torch.allclose(a, b)
