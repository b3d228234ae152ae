"""Sec. IV-D2 transfer: build the 2.5D model and load the 2D checkpoint by name and shape.

Rules, in order, for every parameter/buffer of the target model:

1. same name and shape in the source -> **loaded** as is. For CIPA this covers the stem: the 2D model reads one
   slice repeated to 3 channels, so its patch embedding already has 3 input channels per modality.
2. same name, the target has S times the source's input channels (a stem convolution of a model whose 2D variant
   reads 1 channel per modality, e.g. the MONAI U-Net: 2 -> 6 channels) -> **adapted**: each source channel's
   kernel is copied to its S slices and divided by S, so three identical slices give exactly the 2D response.
3. inside a module the source model does not have (SIM, CBAM, Non-Local) -> **new**, own initialisation.
4. anything else -> an error: a transfer that loads less than every encoder/decoder weight is not a transfer.

Source keys the target lacks are **skipped** with the reason. The report is printed and saved as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


class TransferError(ValueError):
    """The source checkpoint does not cover every non-new weight of the target model."""


@dataclass
class TransferReport:
    loaded: list[str] = field(default_factory=list)
    adapted: list[dict] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"transfer: {len(self.loaded)} tensors loaded, {len(self.adapted)} adapted, {len(self.new)} newly "
            f"initialised, {len(self.skipped)} source tensors skipped"
        )


def new_module_prefixes(model: nn.Module) -> list[str]:
    """Names of the modules that a 2D model does not have (slice modules: SIM, CBAM, Non-Local)."""
    from igtv.models.cbam import CBAM
    from igtv.models.non_local import NonLocalBlock
    from igtv.models.sim import SliceInteraction

    return [name + "." for name, m in model.named_modules() if isinstance(m, (SliceInteraction, CBAM, NonLocalBlock))]


def transfer_weights(model: nn.Module, source: dict[str, torch.Tensor]) -> TransferReport:
    """Load ``source`` (a 2D state dict) into ``model`` by the rules above; returns the report."""
    report = TransferReport()
    target = model.state_dict()
    new_prefixes = new_module_prefixes(model)
    missing = []
    out = {}
    for key, t in target.items():
        s = source.get(key)
        if s is not None and s.shape == t.shape:
            out[key] = s
            report.loaded.append(key)
        elif (
            s is not None
            and s.ndim == t.ndim >= 3
            and s.shape[0] == t.shape[0]
            and s.shape[2:] == t.shape[2:]
            and t.shape[1] % s.shape[1] == 0
        ):
            reps = t.shape[1] // s.shape[1]
            out[key] = s.repeat_interleave(reps, dim=1) / reps
            report.adapted.append(
                {
                    "key": key,
                    "rule": f"input channels {s.shape[1]} -> {t.shape[1]}: each copied to {reps} slices / {reps}",
                }
            )
        elif any(key.startswith(p) for p in new_prefixes):
            report.new.append(key)
        else:
            missing.append(key if s is None else f"{key} (shape {tuple(s.shape)} vs {tuple(t.shape)})")
    for key in source:
        if key not in target:
            report.skipped.append({"key": key, "reason": "not in the target model"})
    if missing:
        raise TransferError(
            f"transfer would leave {len(missing)} encoder/decoder tensors uninitialised: {', '.join(missing[:8])}"
            + (" ..." if len(missing) > 8 else "")
        )
    model.load_state_dict({**target, **out})
    return report
