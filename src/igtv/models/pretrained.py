"""VMamba ImageNet weights (Liu et al. 2024) into our encoder: key mapping, a safe loader and a load report.

The CIPA authors start their shared CT/PET backbone from VMamba v0's ImageNet-1k checkpoint
(``vssmtiny_dp01_ckpt_epoch_292.pth``, VMamba-T: dims 96-768, depths 2/2/9/2, no MLP). Nothing is downloaded: the
user passes the local file. Its ``model`` state dict uses the names of VMamba's classification code, mapped here
to :class:`igtv.models.encoder.VMambaEncoder`:

============================================================  =================================================
VMamba v0 (and the later ``patch_embed.0`` / ``.op`` names)   igtv
============================================================  =================================================
``patch_embed.proj`` | ``patch_embed.0``                      ``patch_embed.proj``
``patch_embed.norm`` | ``patch_embed.2``                      ``patch_embed.norm``
``layers.i.blocks.j.ln_1`` | ``.norm``                        ``stages.i.j.norm``
``layers.i.blocks.j.self_attention`` | ``.op`` +
  ``in_proj``, ``conv2d``, ``out_norm``, ``out_proj``         ``stages.i.j.op.<same>``
  ``x_proj_weight``, ``dt_projs_*``, ``A_logs``, ``Ds``       ``stages.i.j.op.ssm.<same>``
``layers.i.downsample.{reduction,norm}``                      ``downsamples.i.{reduction,norm}``
``norm``, ``head``, ``classifier.*``                          ignored (ImageNet classifier)
============================================================  =================================================

Our per-stage output LayerNorms (``out_norms``, Sigma's ``outnorm{i}``) are not in the checkpoint and keep their
initialisation, as in the authors' code. Checkpoints are read with ``weights_only=True``; the yacs ``CfgNode``
config that VMamba's trainer pickles beside the weights is read as a plain ordered dict, never imported.
"""

from __future__ import annotations

import collections
import json
import pickle
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

_SSM_PARAMS = ("x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds")
_OP_MODULES = ("in_proj", "conv2d", "out_norm", "out_proj")
_NOT_IN_VMAMBA = ("out_norms.",)  # Sigma's outnorm{i}: added for the backbone, initialised fresh
_IGNORED = re.compile(r"^(norm|head|classifier)\.")
_PATCH = re.compile(r"^patch_embed\.(proj|norm|0|2)\.(.+)$")
_PATCH_NAMES = {"0": "proj", "2": "norm"}  # later VMamba versions use an nn.Sequential stem
_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(ln_1|norm|self_attention|op)\.(.+)$")
_DOWN = re.compile(r"^layers\.(\d+)\.downsample\.(reduction|norm)\.(.+)$")
# classes VMamba's trainer pickles next to the weights; read as plain dicts, never imported
_CONFIG_CLASSES = ("yacs.config.CfgNode",)


class PretrainedError(ValueError):
    """The file is not a VMamba checkpoint our encoder can use; the message names the file."""


def map_vmamba_key(key: str) -> str | None:
    """A VMamba checkpoint key -> our encoder's key; ``None`` for the ImageNet classifier (ignored).

    Raises ``KeyError`` for a key this mapping does not know.
    """
    key = key.removeprefix("module.").removeprefix("backbone.")
    if _IGNORED.match(key):
        return None
    m = _PATCH.match(key)
    if m:
        return f"patch_embed.{_PATCH_NAMES.get(m[1], m[1])}.{m[2]}"
    m = _BLOCK.match(key)
    if m:
        stage, block, part, rest = m.groups()
        prefix = f"stages.{stage}.{block}"
        if part in ("ln_1", "norm"):
            return f"{prefix}.norm.{rest}"
        if rest in _SSM_PARAMS:
            return f"{prefix}.op.ssm.{rest}"
        if rest.split(".")[0] in _OP_MODULES:
            return f"{prefix}.op.{rest}"
        raise KeyError(key)
    m = _DOWN.match(key)
    if m:
        return f"downsamples.{m[1]}.{m[2]}.{m[3]}"
    raise KeyError(key)


@dataclass
class PretrainedReport:
    """What a VMamba checkpoint filled in an encoder."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # encoder tensors the checkpoint did not fill
    shape_mismatch: list[dict] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # checkpoint tensors with no counterpart (classifier)
    unknown: list[str] = field(default_factory=list)  # checkpoint keys the mapping does not know

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        total = len(self.loaded) + len(self.missing) + len(self.shape_mismatch)
        return (
            f"VMamba weights from {Path(self.source).name}: {len(self.loaded)}/{total} encoder tensors loaded, "
            f"{len(self.missing)} kept initialised ({_short(self.missing)}), {len(self.shape_mismatch)} shape "
            f"mismatches, {len(self.ignored)} classifier tensors ignored, {len(self.unknown)} unknown keys"
        )


def _short(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "") if names else "none"


class _ConfigStub:
    """Stands in for a pickled config class: unpickles into an ordered dict (allowed under weights_only)."""

    def __new__(cls, *args, **kwargs):
        return collections.OrderedDict()


def read_vmamba_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a VMamba checkpoint file (``{"model": ...}``, ``{"state_dict": ...}`` or a bare state dict)."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals([(_ConfigStub, name) for name in _CONFIG_CLASSES]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise PretrainedError(f"{path}: not a PyTorch checkpoint readable with weights_only=True ({e})") from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_ema"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedError(f"{path}: holds no state dict of tensors (looked at 'model', 'state_dict', top level)")
    return dict(obj)


def load_vmamba_weights(encoder: nn.Module, path: str | Path) -> PretrainedReport:
    """Copy a VMamba checkpoint's weights into ``encoder`` (a :class:`VMambaEncoder`) and report what happened.

    All or nothing: every encoder tensor except the per-stage output norms must be filled, with the same shape,
    and every checkpoint key must be known; otherwise nothing is loaded and :class:`PretrainedError` says what
    differs (a checkpoint of another VMamba size or version must not leave the encoder half-initialised).
    """
    source = read_vmamba_checkpoint(path)
    report = PretrainedReport(source=str(path))
    target = encoder.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        try:
            ours = map_vmamba_key(key)
        except KeyError:
            report.unknown.append(key)
            continue
        if ours is None:
            report.ignored.append(key)
        elif ours not in target:
            report.unknown.append(key)
        elif tuple(tensor.shape) != tuple(target[ours].shape):
            report.shape_mismatch.append(
                {"key": ours, "checkpoint": list(tensor.shape), "encoder": list(target[ours].shape)}
            )
        else:
            mapped[ours] = tensor
    report.loaded = sorted(mapped)
    mismatched = {m["key"] for m in report.shape_mismatch}
    report.missing = sorted(k for k in target if k not in mapped and k not in mismatched)
    not_filled = [k for k in report.missing if not k.startswith(_NOT_IN_VMAMBA)]
    if not_filled or report.shape_mismatch or report.unknown:
        raise PretrainedError(
            f"{path}: does not fit this encoder: {len(report.shape_mismatch)} shape mismatches "
            f"({json.dumps(report.shape_mismatch[:2])}), {len(not_filled)} encoder tensors not in the checkpoint "
            f"({_short(not_filled)}), {len(report.unknown)} unknown checkpoint keys ({_short(report.unknown)}). "
            "Is it VMamba v0 of the model's size (VMamba-T for the *_t variants)? Nothing was loaded."
        )
    with torch.no_grad():
        for key, tensor in mapped.items():
            target[key].copy_(tensor.to(target[key].dtype))
    return report


def load_vmamba_into_cipa(model: nn.Module, path: str | Path) -> list[PretrainedReport]:
    """Load the VMamba weights into CIPA's encoder (and the separate PET encoder when there is one)."""
    encoders = [m for m in (getattr(model, "encoder", None), getattr(model, "encoder_pet", None)) if m is not None]
    if not encoders:
        raise PretrainedError(f"{type(model).__name__} has no VMamba encoder to load {path} into")
    return [load_vmamba_weights(enc, path) for enc in encoders]
