"""Optimiser groups: weight decay on matrices and kernels only."""

from __future__ import annotations

import torch

from igtv.models import create_model
from igtv.training.config import OptimConfig, RunConfig
from igtv.training.optim import build_optimizer, param_groups


def test_no_decay_for_norms_biases_and_the_scan_state():
    model = create_model("cipa_25d_sim_tiny")
    decay, no_decay = param_groups(model, 0.05)
    ids = {id(p) for p in decay["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in ids}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert not ids & {id(p) for p in no_decay["params"]}
    assert any(n.endswith("in_proj.weight") for n in names)  # linear weights decay
    assert any(n.endswith("conv2d.weight") for n in names)  # conv kernels decay
    state = ("A_logs", "Ds", "dt_projs_bias")  # the selective scan's state decay, skip and dt bias (VMamba)
    for n, p in model.named_parameters():  # decay exactly the 2-D+ parameters that are not scan state
        assert (n in names) == (p.ndim >= 2 and not n.endswith(state)), n


def test_optimizer_uses_the_groups():
    cfg = RunConfig(model="cipa_2d_tiny", train=OptimConfig(lr=1e-3, weight_decay=0.1))
    opt = build_optimizer(cfg, create_model("cipa_2d_tiny"))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
