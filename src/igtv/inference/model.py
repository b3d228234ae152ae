"""A trained model ready for prediction: checkpoint -> network, input mode, input size, windows and threshold."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from igtv.training.checkpoint import CheckpointError, load_checkpoint

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


def load_model(path: str | Path, device: torch.device | str = "cpu", preset: str | None = None) -> LoadedModel:
    """Build the checkpoint's network with its saved config and load its weights (strict, ``weights_only``).

    A checkpoint whose weights do not fit the architecture it names, or whose input mode disagrees with its own
    training data mode, is a :class:`CheckpointError` naming the file.
    """
    from igtv.config import from_dict
    from igtv.models import create_model
    from igtv.models.cipa import CIPA, CIPAConfig
    from igtv.training.loop import model_input_slices

    path = Path(path)
    ckpt = load_checkpoint(path)
    name = str(ckpt.get("model_name", ""))
    try:
        slices = model_input_slices(name)
        if ckpt.get("model_config") and name.startswith("cipa_"):
            model = CIPA(from_dict(CIPAConfig, dict(ckpt["model_config"])))
        else:
            model = create_model(name)
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot build the model it names ({name!r}): {exc}") from exc
    saved_slices = int(ckpt.get("input_slices", slices))
    run_cfg = dict(ckpt.get("run_config") or {})
    data_mode = (run_cfg.get("data") or {}).get("mode")
    if saved_slices != slices or (data_mode and (data_mode == "25d") != (slices == 3)):
        raise CheckpointError(
            f"{path}: input mode mismatch: model {name} reads {'2.5D' if slices == 3 else '2D'} input but the "
            f"checkpoint says {saved_slices} slice(s) per modality and data mode {data_mode!r}"
        )
    missing, unexpected, shapes = _state_dict_mismatch(model, ckpt["model"])
    if missing or unexpected or shapes:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
            if keys
        )
        raise CheckpointError(f"{path}: weights do not fit architecture {name} ({detail})")
    model.load_state_dict(ckpt["model"], strict=True)
    model.eval().to(device)
    pre = dict(ckpt.get("preprocessing") or {})
    chosen = preset or pre.get("preset")
    if chosen is None:
        raise CheckpointError(
            f"{path}: the checkpoint does not record how its training PNGs were windowed; pass --preset lucid|pclt20k"
        )
    if chosen not in ("lucid", "pclt20k"):
        raise ValueError(f"unknown preset {chosen!r}; expected lucid or pclt20k")
    train_cfg = run_cfg.get("train") or {}
    patches = pre.get("sampler") == "patches"
    return LoadedModel(
        model=model,
        name=name,
        input_slices=slices,
        size=int(pre["patch"]) if patches else int((run_cfg.get("data") or {}).get("size") or 512),
        threshold=float(train_cfg.get("threshold", 0.5)),
        preset=chosen,
        min_suv_max=float(pre.get("min_suv_max", 0.0)),
        path=path,
        run_config=run_cfg,
        spacing_mm=float(pre.get("spacing_mm", 0.0)) if patches else 0.0,
        patch=int(pre.get("patch", 0)) if patches else 0,
    )


def _state_dict_mismatch(model: nn.Module, state: dict) -> tuple[list[str], list[str], list[str]]:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    return missing, unexpected, shapes
