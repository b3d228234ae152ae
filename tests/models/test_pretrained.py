"""VMamba ImageNet checkpoint -> our encoder: key mapping, safe loading of the trainer's pickle, the load report."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from igtv.models import create_model
from igtv.models.encoder import VMambaEncoder
from igtv.models.pretrained import (
    PretrainedError,
    load_vmamba_into_cipa,
    load_vmamba_weights,
    map_vmamba_key,
    read_vmamba_checkpoint,
)

TINY = dict(dims=(4, 8, 16, 32), depths=(1, 1, 1, 1), d_state=4)  # cipa_*_tiny's encoder


def _as_vmamba_v0(encoder: VMambaEncoder) -> dict[str, torch.Tensor]:
    """Our encoder's weights under the names of VMamba v0's classification code, written out by hand."""
    out = {}
    for key, t in encoder.state_dict().items():
        parts = key.split(".")
        if parts[0] == "patch_embed":
            out[key] = t.clone()
        elif parts[0] == "stages":
            i, j, what = parts[1], parts[2], parts[3]
            rest = ".".join(parts[4:])
            if what == "norm":
                out[f"layers.{i}.blocks.{j}.ln_1.{rest}"] = t.clone()
            else:  # op.<module>.<param> or op.ssm.<param>
                rest = ".".join(p for p in parts[4:] if p != "ssm")
                out[f"layers.{i}.blocks.{j}.self_attention.{rest}"] = t.clone()
        elif parts[0] == "downsamples":
            out[f"layers.{parts[1]}.downsample.{'.'.join(parts[2:])}"] = t.clone()
        else:
            assert parts[0] == "out_norms", key  # not in VMamba's checkpoints
    out["norm.weight"] = torch.ones(TINY["dims"][-1])
    out["norm.bias"] = torch.zeros(TINY["dims"][-1])
    out["head.weight"] = torch.zeros(1000, TINY["dims"][-1])
    out["head.bias"] = torch.zeros(1000)
    return out


@pytest.fixture
def vmamba_file(tmp_path):
    """A checkpoint as VMamba's trainer writes it: weights under 'model' beside a pickled yacs CfgNode."""
    torch.manual_seed(1)
    source = VMambaEncoder(**TINY)
    mod, pkg = types.ModuleType("yacs.config"), types.ModuleType("yacs")

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    mod.CfgNode = CfgNode
    sys.modules.update({"yacs": pkg, "yacs.config": mod})
    try:
        cfg = CfgNode(MODEL=CfgNode(TYPE="vssm", NAME="vssm_tiny"))
        path = tmp_path / "vssmtiny_dp01_ckpt_epoch_292.pth"
        torch.save({"model": _as_vmamba_v0(source), "config": cfg, "epoch": 292, "max_accuracy": 82.2}, path)
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]
    return path, source


def test_key_mapping_of_each_part():
    assert map_vmamba_key("patch_embed.proj.weight") == "patch_embed.proj.weight"
    assert map_vmamba_key("patch_embed.2.bias") == "patch_embed.norm.bias"
    assert map_vmamba_key("layers.2.blocks.7.ln_1.weight") == "stages.2.7.norm.weight"
    assert map_vmamba_key("layers.0.blocks.1.self_attention.A_logs") == "stages.0.1.op.ssm.A_logs"
    assert map_vmamba_key("layers.0.blocks.1.op.x_proj_weight") == "stages.0.1.op.ssm.x_proj_weight"
    assert map_vmamba_key("layers.3.blocks.0.self_attention.conv2d.bias") == "stages.3.0.op.conv2d.bias"
    assert map_vmamba_key("layers.1.downsample.reduction.weight") == "downsamples.1.reduction.weight"
    assert map_vmamba_key("module.layers.1.downsample.norm.bias") == "downsamples.1.norm.bias"
    assert map_vmamba_key("head.weight") is None and map_vmamba_key("classifier.norm.bias") is None
    with pytest.raises(KeyError):
        map_vmamba_key("layers.0.blocks.0.mlp.fc1.weight")


def test_loads_every_stage_weight_and_reports(vmamba_file):
    path, source = vmamba_file
    torch.manual_seed(2)
    target = VMambaEncoder(**TINY)
    report = load_vmamba_weights(target, path)
    want, got = source.state_dict(), target.state_dict()
    assert report.loaded and all(torch.equal(got[k], want[k]) for k in report.loaded)
    assert report.missing == sorted(k for k in got if k.startswith("out_norms."))
    assert sorted(report.ignored) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert not report.unknown and not report.shape_mismatch
    assert len(report.loaded) + len(report.missing) == len(got)
    print(report.summary())
    # with the out norms copied too, the loaded encoder computes what the source does
    for i, norm in enumerate(target.out_norms):
        norm.load_state_dict(source.out_norms[i].state_dict())
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(source.eval()(x), target.eval()(x), strict=True):
        assert torch.equal(a, b)


def test_cipa_with_separate_backbones_gets_both(vmamba_file):
    path, source = vmamba_file
    model = create_model("cipa_2d_tiny", shared_backbone=False)
    assert model.encoder.dims == TINY["dims"]
    reports = load_vmamba_into_cipa(model, path)
    assert len(reports) == 2
    key = "stages.2.0.op.ssm.A_logs"
    for enc in (model.encoder, model.encoder_pet):
        assert torch.equal(enc.state_dict()[key], source.state_dict()[key])


def test_checkpoint_of_another_size_is_refused_and_nothing_changes(vmamba_file):
    path, _ = vmamba_file
    other = VMambaEncoder(dims=(16, 32, 64, 128), depths=(1, 1, 2, 1), d_state=4)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(PretrainedError, match=r"vssmtiny_dp01.*does not fit this encoder: \d+ shape mismatches"):
        load_vmamba_weights(other, path)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in before.items())


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(PretrainedError, match="missing.pth: no such checkpoint"):
        read_vmamba_checkpoint(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="junk.pth: not a PyTorch checkpoint"):
        read_vmamba_checkpoint(junk)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(PretrainedError, match="empty.pth: holds no state dict"):
        read_vmamba_checkpoint(empty)


def test_arbitrary_pickled_code_is_not_run(tmp_path):
    """Only the known config class is stood in for; any other global is refused (weights_only=True)."""
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "hook": types.SimpleNamespace(a=1)}, path)
    with pytest.raises(PretrainedError, match="evil.pth: not a PyTorch checkpoint readable with weights_only"):
        read_vmamba_checkpoint(path)


def test_deeper_checkpoint_is_refused(vmamba_file, tmp_path):
    """A VMamba-S-like checkpoint (extra blocks) has keys our encoder lacks: refused, not half-used."""
    path, _ = vmamba_file
    state = read_vmamba_checkpoint(path)
    state.update(
        {k.replace("blocks.0.", "blocks.1."): v for k, v in state.items() if k.startswith("layers.2.blocks.0")}
    )
    deeper = tmp_path / "deeper.pth"
    torch.save({"model": state}, deeper)
    with pytest.raises(PretrainedError, match=r"unknown checkpoint keys \(layers\.2\.blocks\.1"):
        load_vmamba_weights(VMambaEncoder(**TINY), deeper)
