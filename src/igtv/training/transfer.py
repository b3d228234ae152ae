"""Sec. IV-D2 transfer: build the 2.5D model and load the 2D checkpoint by name and shape.

Rules, in order, for every parameter/buffer of the target model:

1. same name and shape in the source -> **loaded** as is. For CIPA this covers the stem: the 2D model reads one
   slice repeated to 3 channels, so its patch embedding already has 3 input channels per modality.
2. same name, the target has S times the source's input channels (a stem convolution of a model whose 2D variant
   reads 1 channel per modality, e.g. the MONAI U-Net: 2 -> 6 channels) -> **adapted**: each source channel's
   kernel is copied to its S slices and divided by S, so three identical slices give exactly the 2D response.
3. inside a module the source model does not have (SIM, CBAM, Non-Local) -> **new**, own initialisation.
4. anything else -> an error: a transfer that loads less than every encoder/decoder weight is not a transfer.

``slices="centre"`` (``RunConfig.init_slices``) carries the 2D stem to the 2.5D model's centre slice instead: the
kernel the 2D model applies to its one slice (summed over the 3 repeated channels for CIPA) goes to the centre
slice t, and slices t-1 and t+1 start at zero, so a 2.5D model without a slice module computes exactly the 2D
model's output before its first step, and fine-tuning starts from the pre-trained function. With ``"repeat"`` (rules
1 and 2 as written) a CIPA stem applies its 3 channel kernels to 3 different slices.

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


STEM_SUFFIXES = ("patch_embed.proj.weight",)  # CIPA's encoders read the slice stack through these convolutions


def _centre(w: torch.Tensor, slices: int, per_slice: int) -> torch.Tensor:
    """A stem kernel with ``per_slice`` input channels per source channel group, collapsed onto the centre slice:
    ``w`` (C_out, G * per_slice, ...) -> (C_out, G * slices, ...) with each group's summed kernel at its centre."""
    g = w.shape[1] // per_slice
    summed = w.reshape(w.shape[0], g, per_slice, *w.shape[2:]).sum(dim=2)  # (C_out, G, ...)
    out = w.new_zeros(w.shape[0], g, slices, *w.shape[2:])
    out[:, :, slices // 2] = summed
    return out.reshape(w.shape[0], g * slices, *w.shape[2:])


def transfer_weights(model: nn.Module, source: dict[str, torch.Tensor], slices: str = "repeat") -> TransferReport:
    """Load ``source`` (a 2D state dict) into ``model`` by the rules above; returns the report. ``slices``: how a
    2D stem reaches the 2.5D slice stack, ``"repeat"`` (as loaded) or ``"centre"`` (the centre slice only)."""
    if slices not in ("repeat", "centre"):
        raise ValueError(f"slices must be 'repeat' or 'centre', got {slices!r}")
    report = TransferReport()
    target = model.state_dict()
    new_prefixes = new_module_prefixes(model)
    missing = []
    out = {}
    for key, t in target.items():
        s = source.get(key)
        if (
            slices == "centre"
            and s is not None
            and s.shape == t.shape
            and getattr(model, "in_slices", 1) == 3
            and (key.endswith(STEM_SUFFIXES))
        ):  # CIPA's stem: its 3 kernels read one slice repeated, so their sum is the 2D kernel of that slice
            out[key] = _centre(s, t.shape[1], t.shape[1])
            report.adapted.append({"key": key, "rule": f"2D stem, {s.shape[1]} repeated channels -> the centre slice"})
        elif s is not None and s.shape == t.shape:
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
            if slices == "centre":
                out[key] = _centre(s, reps, 1)
                rule = f"input channels {s.shape[1]} -> {t.shape[1]}: each on the centre of its {reps} slices"
            else:
                out[key] = s.repeat_interleave(reps, dim=1) / reps
                rule = f"input channels {s.shape[1]} -> {t.shape[1]}: each copied to {reps} slices / {reps}"
            report.adapted.append({"key": key, "rule": rule})
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
