"""Checkpoints: one model card, plain tensors and Python values only, written atomically, read with
``weights_only=True``.

A checkpoint holds the network's weights (``model``) and its :class:`ModelCard` (``card``): what the network is and
how it must be fed. Prediction rebuilds and uses a model from the card alone; nothing parses a model's name to
learn its input mode. Training checkpoints also carry the optimiser, scheduler, RNG and history (``last.pt``) and
the full run config, for the record and for ``--resume``.

Checkpoints written before the card existed (format ``igtv-checkpoint-1`` with ``model_name``, ``model_config``,
``input_slices``, ``preprocessing`` and ``run_config``) still load: :func:`read_card` derives their card.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from igtv.config import ConfigError, from_dict, to_dict
from igtv.io import atomic_path

FORMAT = "igtv-checkpoint-1"  # the payload layout; the card is an addition that old readers ignore
PRESETS = ("lucid", "pclt20k")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to rebuild a trained network and feed it as in training.

    ``architecture`` is the network's full config (``CIPAConfig`` fields) or empty for a registered model built
    by name alone (the MONAI baselines). ``sampler`` says how training saw the data: ``slices`` (whole slices
    resized to ``input_size``) or ``patches`` (``input_size`` px at ``spacing_mm`` per pixel, so prediction runs a
    sliding window on a grid of that pixel size).
    """

    name: str
    in_slices: Literal[1, 3]  # per modality: 1 = 2D, 3 = 2.5D (slices t-1, t, t+1)
    preset: Literal["lucid", "pclt20k"]  # PET/CT windows (igtv.data.windows)
    sampler: Literal["slices", "patches"] = "slices"
    input_size: int = 512  # slices: side of the square slice; patches: side of the patch, px
    spacing_mm: float = 0.0  # patches: in-plane pixel size (0 = the CT's own)
    threshold: float = 0.5  # probability threshold of the masks
    min_suv_max: float = 0.0  # QC of the training data: lesions below this SUVmax were never shown
    cold_lesions: bool = False  # trained with cold-lesion augmentation (prediction's cold-mass exception follows)
    architecture: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("model name is empty")
        if self.input_size <= 0:
            raise ValueError(f"input_size {self.input_size} is not positive")
        if self.spacing_mm < 0 or not 0.0 < self.threshold < 1.0:
            raise ValueError(f"spacing_mm {self.spacing_mm} or threshold {self.threshold} out of range")
        arch_slices = self.architecture.get("in_slices")
        if arch_slices is not None and int(arch_slices) != self.in_slices:
            raise ValueError(f"in_slices {self.in_slices} disagrees with the architecture's {arch_slices}")

    @property
    def mode(self) -> str:
        return "25d" if self.in_slices == 3 else "2d"

    @property
    def patch(self) -> int:
        """Patch side for patch-trained models, 0 for slice-trained ones."""
        return self.input_size if self.sampler == "patches" else 0


def card_from_dict(data: Any, source: str) -> ModelCard:
    """A card from a checkpoint's mapping; unknown keys, wrong types or impossible values name ``source``."""
    try:
        return from_dict(ModelCard, data, f"{source}: model card")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc


def read_card(ckpt: dict[str, Any], path: str | Path) -> ModelCard:
    """The checkpoint's card; for a checkpoint written before cards, the card its legacy fields describe."""
    if "card" in ckpt:
        return card_from_dict(ckpt["card"], str(path))
    run = dict(ckpt.get("run_config") or {})
    pre = dict(ckpt.get("preprocessing") or {})
    data, train = dict(run.get("data") or {}), dict(run.get("train") or {})
    if "input_slices" not in ckpt or "preset" not in pre:
        raise CheckpointError(f"{path}: no model card and no legacy input_slices / preprocessing record")
    patches = pre.get("sampler") == "patches"
    legacy = {
        "name": str(ckpt.get("model_name", "")),
        "in_slices": int(ckpt["input_slices"]),
        "preset": pre["preset"],
        "sampler": "patches" if patches else "slices",
        "input_size": int(pre["patch"]) if patches else int(data.get("size") or 512),
        "spacing_mm": float(pre.get("spacing_mm", 0.0)) if patches else 0.0,
        "threshold": float(train.get("threshold", 0.5)),
        "min_suv_max": float(pre.get("min_suv_max", 0.0)),
        "cold_lesions": float(data.get("cold_p", 0.0) or 0.0) > 0,
        "architecture": dict(ckpt.get("model_config") or {}),
    }
    card = card_from_dict(legacy, str(path))
    if data.get("mode") and data["mode"] != card.mode:
        raise CheckpointError(
            f"{path}: input mode mismatch: the checkpoint says {card.in_slices} slice(s) per modality but its "
            f"training data mode is {data['mode']!r}"
        )
    return card


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary name in the same folder, then rename: a crash never leaves half a file."""
    payload = {"format": FORMAT, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def save_model(path: str | Path, state_dict: dict[str, torch.Tensor], card: ModelCard, **extra: Any) -> Path:
    """The one checkpoint writer: weights (moved to CPU) + card + ``extra`` (run config, optimiser state, ...)."""
    payload = {
        "card": to_dict(card),
        "model": {k: v.detach().cpu() for k, v in state_dict.items()},
        **extra,
    }
    return save_checkpoint(path, payload)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``; a truncated/corrupt file or one holding pickled code is a clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused: the checkpoint holds pickled objects other than tensors and plain values "
            f"(weights_only=True): {str(exc).splitlines()[0]}"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({str(exc).splitlines()[0]})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "model" not in ckpt:
        raise CheckpointError(f"{path}: not an igtv checkpoint (format {FORMAT} with a 'model' state dict)")
    return ckpt
