"""A trained model ready for prediction: checkpoint -> network, input mode, input size, windows and threshold."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from igtv.checkpoint import PRESETS, CheckpointError, load_checkpoint, read_card

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """Everything prediction needs to know of a checkpoint."""

    model: nn.Module
    name: str
    input_slices: int  # 1 (2D) or 3 (2.5D)
    size: int  # side of the square input the model was trained on
    threshold: float
    preset: str  # "lucid" (PET / ROI SUVmax) or "pclt20k" (PET SUV [0, 15])
    min_suv_max: float  # QC of the training data: lesions below it were never shown to the model
    path: Path
    spacing_mm: float = 0.0  # patch-trained models: in-plane pixel size (0 = the CT's own)
    patch: int = 0  # > 0: patch-trained (sliding-window prediction) with this patch side
    run_config: dict = field(default_factory=dict)
    cold_lesions: bool = False  # trained with cold-lesion augmentation (the cold-mass exception's "auto")
    precision: str = "auto"  # of the forward passes (igtv.inference.predictor.autocast_dtype)

    @property
    def mode(self) -> str:
        return "25d" if self.input_slices == 3 else "2d"

    def describe(self) -> dict:
        """Model facts for reports (no paths: they may carry patient or user names)."""
        return {
            "model": self.name,
            "input": "2.5D (slices t-1, t, t+1)" if self.input_slices == 3 else "2D",
            "input_size_px": self.size,
            "threshold": self.threshold,
            "windows": self.preset,
            "sampling": f"patches of {self.patch} px at {self.spacing_mm:g} mm, sliding window"
            if self.patch > 0
            else f"whole slices resized to {self.size} px",
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "stage": self.run_config.get("stage", ""),
            "epochs": self.run_config.get("train", {}).get("epochs", ""),
        }


def load_model(
    path: str | Path, device: torch.device | str = "cpu", preset: str | None = None, threshold: float | None = None
) -> LoadedModel:
    """Rebuild the network its card describes and load its weights (strict, ``weights_only``).

    The card is validated before any network is built; a card that names no buildable network, or weights that do
    not fit the architecture, are a :class:`CheckpointError` naming the file. ``preset`` overrides the card's
    windows (for checkpoints trained elsewhere on PNGs windowed another way), ``threshold`` its probability
    threshold.
    """
    check_threshold(threshold)
    from igtv.models.registry import build_from_card

    path = Path(path)
    ckpt = load_checkpoint(path)
    card = read_card(ckpt, path)
    try:
        model = build_from_card(card)
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot build the model its card names ({card.name!r}): {exc}") from exc
    missing, unexpected, shapes = _state_dict_mismatch(model, ckpt["model"])
    if missing or unexpected or shapes:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
            if keys
        )
        raise CheckpointError(f"{path}: weights do not fit architecture {card.name} ({detail})")
    model.load_state_dict(ckpt["model"], strict=True)
    model.eval().to(device)
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected lucid or pclt20k")
    return LoadedModel(
        model=model,
        name=card.name,
        input_slices=card.in_slices,
        size=card.input_size,
        threshold=card.threshold if threshold is None else float(threshold),
        preset=preset or card.preset,
        min_suv_max=card.min_suv_max,
        path=path,
        run_config=dict(ckpt.get("run_config") or {}),
        spacing_mm=card.spacing_mm,
        patch=card.patch,
        cold_lesions=card.cold_lesions,
    )


def check_threshold(threshold: float | None) -> None:
    """A probability threshold override must lie strictly between 0 and 1 (None: the checkpoint's own)."""
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")


def _state_dict_mismatch(model: nn.Module, state: dict) -> tuple[list[str], list[str], list[str]]:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    return missing, unexpected, shapes
