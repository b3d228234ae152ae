"""What a run config builds: the datasets of its splits, the model, the loaders, and the preprocessing record that
prediction must reproduce."""

from __future__ import annotations

import torch
from torch import nn

from igtv.checkpoint import ModelCard
from igtv.config import to_dict
from igtv.data.datasets import dataset_preprocessing
from igtv.training.config import RunConfig


def make_loader(ds, batch: int, sampler, num_workers: int, drop_last: bool):
    return torch.utils.data.DataLoader(
        ds, batch_size=batch, sampler=sampler, num_workers=num_workers, drop_last=drop_last, pin_memory=False
    )


class FixedBatches:
    """The batches of a loader whose items never change (validation: fixed patches, or slices without
    augmentation), kept after the first full pass while they fit in ``max_bytes`` and read again otherwise. The
    same tensors either way; a kept pass saves re-drawing them (~0.8 s of the quick table's ~3 s validation)."""

    def __init__(self, loader, max_bytes: int = 256 * 2**20):
        self.loader, self.max_bytes, self.batches = loader, max_bytes, None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.batches is not None:
            yield from self.batches
            return
        kept: list | None = []
        size = 0
        for batch in self.loader:
            if kept is not None:
                size += sum(v.numel() * v.element_size() for v in batch.values() if torch.is_tensor(v))
                if size <= self.max_bytes:
                    kept.append(batch)
                else:
                    kept = None
            yield batch
        self.batches = kept  # only after a full pass (an interrupted one keeps nothing)


def preprocessing_of(cfg: RunConfig) -> dict:
    """What prediction must reproduce: windows, and for patch-trained models the pixel size and patch side."""
    pre = dataset_preprocessing(cfg.data.root)
    if cfg.data.sampler == "slices":
        return {**pre, "sampler": "slices"}
    return {
        "preset": cfg.data.preset,
        "min_suv_max": pre.get("min_suv_max", 0.0),
        "source": "run config (patches)",
        "sampler": "patches",
        "spacing_mm": cfg.data.spacing_mm,
        "patch": cfg.data.patch,
    }


def build_datasets(cfg: RunConfig, splits: tuple[str, ...] = ("train", "val")) -> list:
    """The datasets of ``splits``: whole slices (paper protocol) or patches from the volumes."""
    from igtv.data.augment import Augment
    from igtv.data.datasets import SliceDataset

    d = cfg.data
    if d.sampler == "slices":
        aug = Augment() if d.augment else None
        common = dict(mode=d.mode, val_fraction=d.val_fraction, seed=cfg.seed, size=d.size)
        return [SliceDataset(d.root, s, transform=aug if s == "train" else None, **common) for s in splits]
    from dataclasses import replace as dc_replace

    from igtv.data.cases import load_split_cases
    from igtv.data.sampling import PatchDataset, PatchSpec

    spec = PatchSpec(
        patch=d.patch,
        preset=d.preset,
        in_slices=3 if d.mode == "25d" else 1,
        fg_fraction=d.fg_fraction,
        hot_fraction=d.hot_fraction,
        hot_size_power=d.hot_size_power,
        hot_min_suv_max=d.hot_min_suv_max,
        avoid_fraction=d.avoid_fraction,
        lesion_size_power=d.lesion_size_power,
        jitter=d.jitter,
        negatives=d.negatives,
        augment=d.augment,
        pet_gain_p=d.pet_gain_p,
        pet_gain_range=d.pet_gain_range,
        pet_dropout=d.pet_dropout,
        cold_p=d.cold_p,
        cold_suv_range=tuple(d.cold_suv_range),
    )
    out = []
    for s in splits:
        cases = load_split_cases(d.root, s, d.spacing_mm, d.val_fraction, cfg.seed)
        if not cases:
            out.append([])
        elif s == "train":
            out.append(PatchDataset(cases, spec, d.samples_per_epoch, cfg.seed))
        else:  # fixed patches, no augmentation, seeded apart from training, drawn as always (runs compare on them)
            fixed = dc_replace(spec, augment=False, lesion_size_power=0.0)
            out.append(PatchDataset(cases, fixed, d.eval_samples, cfg.seed + 7919, True))
    return out


def build_model(cfg: RunConfig) -> nn.Module:
    from igtv.models import create_model

    return create_model(cfg.model)


def model_card(cfg: RunConfig, model: nn.Module) -> ModelCard:
    """The card a run's checkpoints carry: the model as built, and how ``cfg`` feeds it."""
    pre = preprocessing_of(cfg)
    patches = cfg.data.sampler == "patches"
    if not (cfg.train.predict_threshold == 0.0 or 0.0 < cfg.train.predict_threshold < 1.0):
        raise ValueError(f"train.predict_threshold must be in (0, 1), or 0 for train.threshold; got "
                         f"{cfg.train.predict_threshold}")  # fmt: skip
    return ModelCard(
        name=cfg.model,
        in_slices=model.in_slices,
        preset=pre["preset"],
        sampler=cfg.data.sampler,
        input_size=cfg.data.patch if patches else (cfg.data.size or 512),
        spacing_mm=cfg.data.spacing_mm if patches else 0.0,
        threshold=cfg.train.predict_threshold or cfg.train.threshold,
        min_suv_max=float(pre.get("min_suv_max", 0.0)),
        cold_lesions=patches and cfg.data.cold_p > 0,
        architecture=to_dict(model.config) if hasattr(model, "config") else {},
    )
