from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from igtv.config import from_dict, to_dict
from igtv.models import CIPA, CIPAConfig, create_model, list_models, model_config
from igtv.models.sim import SliceInteraction

GOLDEN = Path(__file__).parent / "golden_cipa_25d_sim_tiny.pt"
CIPA_TINY = [n for n in list_models() if n.startswith("cipa") and n.endswith("_tiny")]


@pytest.mark.parametrize("name", CIPA_TINY)
@pytest.mark.parametrize("size", [32, 64])
def test_output_shape_every_variant(name, size):
    torch.manual_seed(0)
    model = create_model(name, scan_impl="ref").eval()
    x = torch.randn(2, model.in_channels, size, size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1, size, size) and torch.isfinite(y).all()


def test_input_modes():
    assert create_model("cipa_2d_tiny").in_channels == 2
    assert create_model("cipa_25d_sim_tiny").in_channels == 6
    with pytest.raises(ValueError, match=r"expected input \(B, 6"):
        create_model("cipa_25d_tiny")(torch.zeros(1, 2, 32, 32))


def test_rectangular_and_stage1_placement():
    model = CIPA(model_config("cipa_25d_sim_tiny", slice_module_at="stage1", scan_impl="ref")).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 6, 64, 96)).shape == (1, 1, 64, 96)


def test_separate_backbones():
    shared = create_model("cipa_2d_tiny")
    separate = create_model("cipa_2d_tiny", shared_backbone=False)
    n = sum(p.numel() for p in shared.encoder.parameters())
    assert sum(p.numel() for p in separate.parameters()) == sum(p.numel() for p in shared.parameters()) + n


@pytest.mark.parametrize("size", [(50, 64), (64, 100), (16, 32)])
def test_non_divisible_size_is_a_clear_error(size):
    model = create_model("cipa_2d_tiny")
    with pytest.raises(ValueError, match="not a multiple of 32; nearest valid sizes"):
        model(torch.zeros(1, 2, *size))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    for name in ("cipa_25d_sim_tiny", "cipa_25d_cbam_tiny", "cipa_25d_nonlocal_tiny"):
        model = create_model(name, scan_impl="ref").train()
        model(torch.randn(2, 6, 64, 64)).square().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"{name}: no gradient for {missing[:5]}"
        if not name.endswith("sim_tiny"):
            continue  # at tiny width a 1-unit ReLU (CBAM's MLP) may be dead; the non-local output BN starts at zero
        # at 64 px the DCIM region grids of stages 3-4 are 1x1: a scan of length 1 starts from h = 0, so A has
        # no effect there; every other parameter must receive a gradient
        exempt = {f"dcim.{i}.region_ssm.ssm.A_logs" for i in (2, 3)}
        # a one-channel BN -> ReLU -> bias-free conv -> BN path (DCIM's region convs at tiny width) is invariant to
        # the first BN's scale while its shift is 0 (as at init): that weight's gradient is zero up to rounding
        exempt |= {
            f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m.num_features == 1
        }
        zero = [n for n, p in model.named_parameters() if n not in exempt and not p.grad.abs().sum() > 0]
        assert not zero, f"{name}: zero gradient for {zero[:5]}"


def test_sim_matches_hand_computation_of_eqs_1_to_6():
    torch.manual_seed(3)
    sim = SliceInteraction(3).eval()
    with torch.no_grad():
        for p in sim.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        sim.spatial.bn.running_mean.fill_(0.2)
        sim.spatial.bn.running_var.fill_(1.5)
        sim.relation.bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        sim.relation.bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0]))
    x = torch.randn(2, 3, 12, 12)
    eps = 1e-5

    def bn(v, m):
        shape = (1, -1, 1, 1)
        return (v - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + eps) * m.weight.view(
            shape
        ) + m.bias.view(shape)

    # Eq. 1-2: channel attention from global average pooling, W1 (C/r x C), W2 (C x C/r), r = 2
    gap = x.mean(dim=(2, 3))  # (B, C)
    w1, w2 = sim.channel.w1.weight, sim.channel.w2.weight
    assert w1.shape == (1, 3) and w2.shape == (3, 1)
    a_ch = 1 / (1 + torch.exp(-(torch.clamp(gap @ w1.T, min=0) @ w2.T)))
    x_ca = x * a_ch[:, :, None, None]
    # Eq. 3-4: 7x7 conv to one channel, BN, sigmoid
    k = sim.spatial.conv.weight  # (1, C, 7, 7)
    xp = torch.nn.functional.pad(x, (3, 3, 3, 3))
    conv = torch.zeros(2, 1, 12, 12)
    for i in range(12):
        for j in range(12):
            conv[:, 0, i, j] = (xp[:, :, i : i + 7, j : j + 7] * k[0]).sum(dim=(1, 2, 3))
    a_sp = 1 / (1 + torch.exp(-bn(conv, sim.spatial.bn)))
    x_sa = x * a_sp
    # Eq. 5: depthwise 1x1, BN, ReLU, depthwise 3x3
    d1 = x * sim.relation.dw1.weight.view(1, 3, 1, 1)
    r = torch.clamp(bn(d1, sim.relation.bn), min=0)
    rp = torch.nn.functional.pad(r, (1, 1, 1, 1))
    k3 = sim.relation.dw3.weight  # (C, 1, 3, 3)
    x_rel = torch.zeros_like(x)
    for i in range(12):
        for j in range(12):
            x_rel[:, :, i, j] = (rp[:, :, i : i + 3, j : j + 3] * k3[:, 0]).sum(dim=(2, 3))
    # Eq. 6
    want = x + 0.3 * x_ca + 0.3 * x_sa + 0.4 * x_rel
    with torch.no_grad():
        got = sim(x)
    assert torch.allclose(got, want, atol=1e-5)


def test_sim_fast_layouts_match_plain_convs_with_gradients():
    """SIM's relation branch scales instead of running the depthwise 1x1 conv, and its convs run channels-last: the
    outputs and every gradient match the plain NCHW convs (training mode, batch-norm statistics from the batch)."""
    import torch.nn.functional as F

    torch.manual_seed(4)
    sim = SliceInteraction(3).train()
    x = torch.randn(2, 3, 20, 20, requires_grad=True)
    got = sim.relation(x).square().sum() + sim.spatial(x).square().sum()
    grads = torch.autograd.grad(got, [x, *sim.parameters()], allow_unused=True)
    rel, sp = sim.relation, sim.spatial
    want_rel = rel.dw3(F.relu(rel.bn(F.conv2d(x, rel.dw1.weight, groups=3))))
    want_sp = x * torch.sigmoid(sp.bn(F.conv2d(x, sp.conv.weight, padding=3)))
    want = want_rel.square().sum() + want_sp.square().sum()
    ref = torch.autograd.grad(want, [x, *sim.parameters()], allow_unused=True)
    assert torch.allclose(got, want, rtol=1e-5)
    for g, r in zip(grads, ref, strict=True):
        assert (g is None) == (r is None)
        if g is not None:
            assert torch.allclose(g, r, rtol=1e-4, atol=1e-5)


def test_sim_weights_are_constructor_arguments():
    model = create_model("cipa_25d_sim_tiny", sim_weights=(0.5, 0.2, 0.1))
    assert (model.slice_ct.alpha, model.slice_ct.beta, model.slice_ct.gamma) == (0.5, 0.2, 0.1)


def test_config_yaml_round_trip():
    cfg = model_config("cipa_25d_sim_t")
    assert from_dict(CIPAConfig, to_dict(cfg)) == cfg


def _golden_model_output() -> torch.Tensor:
    torch.manual_seed(1234)
    model = create_model("cipa_25d_sim_tiny", scan_impl="ref").eval()
    g = torch.Generator().manual_seed(99)
    x = torch.randn(2, 6, 32, 32, generator=g)
    with torch.no_grad():
        return model(x)


def test_golden_output():
    """Logits of a frozen tiny model: any silent change of initialisation, layout or maths shows up here."""
    want = torch.load(GOLDEN, weights_only=True)
    got = _golden_model_output()
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_paper_size_parameter_count():
    model = create_model("cipa_2d_t")
    n = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"cipa_2d_t: {n:.2f} M parameters (paper: 54.57 M)")
    assert abs(n - 54.57) / 54.57 < 0.15


@pytest.mark.parametrize("name", ["unet_25d_tiny", "segresnet_25d_tiny"])
def test_monai_baselines_take_the_same_input(name):
    model = create_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 6, 32, 32)).shape == (1, 1, 32, 32)


def test_model_info_counts():
    from igtv.models.info import model_info

    info = model_info("cipa_25d_sim_tiny", size=64)
    n = sum(p.numel() for p in create_model("cipa_25d_sim_tiny").parameters())
    assert abs(info["params_m"] * 1e6 - n) < 1
    assert info["gflops_dense"] > 0 and info["gflops_scan"] > 0
    assert abs(info["gflops"] - info["gflops_dense"] - info["gflops_scan"]) < 1e-9


def test_model_info_counts_the_fused_ss2d_scan(monkeypatch):
    """SS2D's fused inference kernel (numba) bypasses selective_scan; its scans are counted all the same."""
    from igtv.models.info import model_info
    from igtv.models.ss2d import SS2D

    fused = model_info("cipa_2d_tiny", size=64)
    monkeypatch.setattr(SS2D, "_fused_inference", lambda self, x: False)
    unfused = model_info("cipa_2d_tiny", size=64)
    assert fused["gflops_scan"] == pytest.approx(unfused["gflops_scan"], rel=1e-12)
    assert fused["gflops_dense"] < unfused["gflops_dense"] + 1e-9  # the fused path does no more dense work


@pytest.fixture
def no_tf32():
    """TF32 convolutions (PyTorch's default on Ampere and later) differ from fp32 by ~1e-3: off for exact checks."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.gpu
def test_cuda_forward_backward_matches_reference_scan(no_tf32):
    """The tiny network on the GPU with the auto scan (Triton) equals the same network with the reference scan,
    outputs and every gradient, and the forward equals the CPU's; a bf16 AMP step is finite."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    cpu_model = create_model("cipa_25d_sim_tiny", scan_impl="ref").train()
    fast = create_model("cipa_25d_sim_tiny", scan_impl="auto").cuda().train()
    ref = create_model("cipa_25d_sim_tiny", scan_impl="ref").cuda().train()
    fast.load_state_dict(cpu_model.state_dict())
    ref.load_state_dict(cpu_model.state_dict())
    x = torch.randn(2, 6, 64, 64)
    y_fast, y_ref = fast(x.cuda()), ref(x.cuda())
    torch.testing.assert_close(y_fast, y_ref, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(y_fast.cpu(), cpu_model(x), atol=2e-3, rtol=2e-3)
    y_fast.square().mean().backward()
    y_ref.square().mean().backward()
    # each gradient to 1e-3 of its own largest entry; a floor of 1e-8 of the model's largest covers the weights
    # whose gradient is zero but for rounding (a depthwise 1x1 or one-channel BN scale that a BatchNorm undoes)
    floor = 1e-8 * max(p.grad.abs().max().item() for p in ref.parameters())
    for (name, p_ref), p_fast in zip(ref.named_parameters(), fast.parameters(), strict=True):
        atol = 1e-3 * p_ref.grad.abs().max().item() + floor
        torch.testing.assert_close(
            p_fast.grad, p_ref.grad, atol=atol, rtol=1e-3, msg=lambda m, name=name: f"{name}: {m}"
        )
    fast.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = fast(x.cuda()).float().sigmoid().mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in fast.parameters())
