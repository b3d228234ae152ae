"""The recipe learns: a small CIPA trained on patches of a few phantom patients segments a held-out patient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from igtv.training.config import DataConfig, OptimConfig, RunConfig
from igtv.training.loop import train


@pytest.mark.slow
def test_patch_training_learns_held_out_patient(prepared, tmp_path):
    """~200 steps of batch 8 on 32 px patches (CT's own ~5.5 mm pixels) of the training patients; then the model
    segments lesion-centred patches of the held-out patients with a pooled Dice far above chance (the lesion
    covers a few % of a patch), and keeps hot-organ patches nearly empty."""
    from igtv.data.sampling import PatchDataset, PatchSpec, load_split_cases
    from igtv.models.cipa import normalize_png

    root = prepared[1].out_dir
    cfg = RunConfig(
        model="cipa_2d_s",
        data=DataConfig(root=str(root), mode="2d", sampler="patches", spacing_mm=0.0, patch=32,
                        samples_per_epoch=400, eval_samples=32, val_fraction=0.3),  # fmt: skip
        train=OptimConfig(lr=3e-3, min_lr=1e-4, batch_size=8, epochs=4, grad_clip=1.0, batch_dice=True, amp="off"),
        seed=0,
        device="cpu",
        evaluate_test=False,
    )
    torch.manual_seed(0)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    from igtv.inference.model import load_model

    lm = load_model(tmp_path / "run" / "best.pt")
    held_out = load_split_cases(root, "val", 0.0, 0.3, 0)
    train_names = {c.name for c in load_split_cases(root, "train", 0.0, 0.3, 0)}
    assert held_out and not ({c.name for c in held_out} & train_names)
    spec = PatchSpec(patch=32, in_slices=1, fg_fraction=1.0, hot_fraction=0.0, jitter=0.5, augment=False)
    lesion = PatchDataset(held_out, spec, n=48, seed=5, fixed=True)
    hot_spec = PatchSpec(patch=32, in_slices=1, fg_fraction=0.0, hot_fraction=1.0, augment=False)
    hot = PatchDataset(held_out, hot_spec, n=24, seed=6, fixed=True)

    def predict(ds):
        x = torch.stack([ds[i]["image"] for i in range(len(ds))])
        y = torch.stack([ds[i]["mask"] for i in range(len(ds))])
        with torch.no_grad():
            p = torch.sigmoid(lm.model(normalize_png(x))) > 0.5
        return p.numpy(), y.numpy() > 0.5

    p, y = predict(lesion)
    dice = 2 * (p & y).sum() / (p.sum() + y.sum())
    chance = y.mean()
    assert chance < 0.15 and dice > 0.5, (dice, chance)
    p_hot, y_hot = predict(hot)
    fp = (p_hot & ~y_hot).mean()
    assert fp < 0.05, fp
