"""The recipe learns: a small CIPA trained on patches of a few phantom patients segments held-out patients."""

from __future__ import annotations

import pytest
import torch

from igtv.training.config import DataConfig, OptimConfig, RunConfig
from igtv.training.trainer import train


@pytest.fixture(scope="module")
def learn_data(tmp_path_factory):
    """Nine 256 px phantom patients (2.7 mm pixels), prepared with volumes; the split holds patients out."""
    from igtv.data.prepare import PrepareConfig, prepare_dataset
    from igtv.phantom.cohort import generate_cohort
    from igtv.phantom.config import PHANTOM_PSEUDONYM_KEY, PhantomConfig

    base = tmp_path_factory.mktemp("learn")
    cfg = PhantomConfig(cohort="gtv", patients=9, seed=3, matrix_scale=0.5, z_extent_mm=150.0, write_pclt=False)
    cohort = generate_cohort(cfg, base / "phantom", progress=False)
    prep = PrepareConfig(roi="GTV", size=64, min_suv_max=0.0, min_volume_cc=0.0, split=(0.67, 0.33, 0.0))
    # a fixed key: the pseudonyms, hence the split, are the same on every run
    ds = prepare_dataset(cohort.out_dir, base / "ds", prep, progress=False, pseudonym_key=PHANTOM_PSEUDONYM_KEY)
    return ds.out_dir


@pytest.mark.slow
def test_patch_training_learns_held_out_patients(learn_data, tmp_path):
    """~150 steps of batch 8 on 64 px patches at the CT's own pixel size; then lesion-centred patches of the
    held-out patients are segmented with a pooled Dice far above chance (the lesion covers a few % of a patch) and
    hot-organ patches stay nearly empty."""
    from igtv.data.cases import load_split_cases
    from igtv.data.sampling import PatchDataset, PatchSpec
    from igtv.inference.model import load_model
    from igtv.models.cipa import normalize_png

    cfg = RunConfig(
        model="cipa_2d_s",
        data=DataConfig(
            root=str(learn_data),
            mode="2d",
            sampler="patches",
            spacing_mm=0.0,
            patch=64,
            samples_per_epoch=400,
            eval_samples=32,
            fg_fraction=0.6,
            hot_fraction=0.2,
        ),  # fmt: skip
        train=OptimConfig(lr=3e-3, min_lr=1e-4, batch_size=8, epochs=3, grad_clip=1.0, batch_dice=True, amp="off"),
        seed=0,
        device="cpu",
        evaluate_test=False,
    )
    torch.manual_seed(0)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    lm = load_model(tmp_path / "run" / "last.pt")
    held_out = load_split_cases(learn_data, "val", 0.0)
    train_names = {c.name for c in load_split_cases(learn_data, "train", 0.0)}
    assert held_out and not ({c.name for c in held_out} & train_names)

    def predict(spec: PatchSpec, n: int):
        ds = PatchDataset(held_out, spec, n=n, seed=5, fixed=True)
        x = torch.stack([ds[i]["image"] for i in range(len(ds))])
        y = torch.stack([ds[i]["mask"] for i in range(len(ds))]).numpy() > 0.5
        with torch.no_grad():
            p = (torch.sigmoid(lm.model(normalize_png(x))) > 0.5).numpy()
        return p, y

    p, y = predict(PatchSpec(patch=64, in_slices=1, fg_fraction=1.0, hot_fraction=0.0, jitter=0.5, augment=False), 48)
    dice = 2 * (p & y).sum() / max(p.sum() + y.sum(), 1)
    chance = y.mean()
    print(f"held-out lesion patches: Dice {dice:.3f}, lesion share {chance:.3f}")
    assert chance < 0.1 and dice > 0.35, (dice, chance)  # measured (phantom v2, 9 patients): Dice 0.56, share 0.042
    p_hot, y_hot = predict(PatchSpec(patch=64, in_slices=1, fg_fraction=0.0, hot_fraction=1.0, augment=False), 24)
    assert (p_hot & ~y_hot).mean() < 0.05
