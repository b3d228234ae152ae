from __future__ import annotations

import pytest
import torch

from igtv.inference.predictor import autocast_dtype, forward_probabilities
from igtv.models import create_model


def test_autocast_dtype_choices():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") is None  # float32 on CPU unless asked
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_dtype(cpu, "fp8")


def test_bf16_forward_agrees_with_float32():
    """bfloat16 autocast changes a tiny model's probabilities by little (the scan stays in float32)."""
    torch.manual_seed(0)
    model = create_model("cipa_25d_sim_tiny").eval()
    x = torch.rand(2, 6, 64, 64) * 255.0
    p32 = forward_probabilities(model, x, torch.device("cpu"), precision="fp32")
    p16 = forward_probabilities(model, x, torch.device("cpu"), precision="bf16")
    assert p16.dtype == torch.float32 and p16.shape == (2, 64, 64)
    assert (p16 - p32).abs().max() < 0.05
    assert not torch.equal(p16, p32)  # it did run in another precision
    p_amp_off = forward_probabilities(model, x, torch.device("cpu"), amp=False, precision="bf16")
    torch.testing.assert_close(p_amp_off, p32)


def test_tta_is_the_mean_with_the_left_right_flip_only():
    """TTA averages the identity with the left-right flip (training's one augmentation flip), never the
    anterior-posterior flips: checked against the two forwards done by hand."""
    torch.manual_seed(0)
    model = create_model("cipa_25d_sim_tiny").eval()
    x = torch.rand(2, 6, 32, 32) * 255.0
    cpu = torch.device("cpu")
    plain = forward_probabilities(model, x, cpu)
    mirrored = forward_probabilities(model, x.flip(-1), cpu).flip(-1)
    tta = forward_probabilities(model, x, cpu, tta=True)
    torch.testing.assert_close(tta, (plain + mirrored) / 2)
    upside_down = forward_probabilities(model, x.flip(-2), cpu).flip(-2)
    assert not torch.allclose(tta, (plain + mirrored + upside_down) / 3, atol=1e-4)
