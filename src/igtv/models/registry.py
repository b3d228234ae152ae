"""Registered model constructors (timm's ``@register_model`` idea): the paper's ablations x widths.

Names: ``cipa_2d``, ``cipa_25d``, ``cipa_25d_cbam``, ``cipa_25d_nonlocal``, ``cipa_25d_sim``, each with the
width suffix ``_tiny`` (tests: a few ten thousand parameters) or ``_t`` (paper size, VMamba-T), plus the MONAI
baselines ``unet_{2d,25d}`` / ``segresnet_{2d,25d}`` on the same 2- or 6-channel input; ``_s`` is a small CIPA
width for CPU demos.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from igtv.checkpoint import ModelCard
from igtv.config import from_dict
from igtv.models.cipa import CIPA, CIPAConfig

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

WIDTHS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        dims=(4, 8, 16, 32),
        depths=(1, 1, 1, 1),
        d_state=4,
        decoder_depths=(1, 1, 1),
        decoder_d_state=2,
        crm_pool=4,
        crm_token_dim=8,
    ),
    # small: CPU demos and quick Table II runs at 128-256 px
    "s": dict(
        dims=(16, 32, 64, 128),
        depths=(1, 1, 2, 1),
        d_state=8,
        decoder_depths=(1, 1, 1),
        decoder_d_state=4,
        crm_pool=8,
        crm_token_dim=32,
    ),
    # Sigma's decoder defaults (depths 4/4/4, MLP ratio 4): 54.15 M parameters for cipa_2d_t vs the paper's 54.57 M
    "t": dict(
        dims=(96, 192, 384, 768),
        depths=(2, 2, 9, 2),
        d_state=16,
        decoder_depths=(4, 4, 4),
        decoder_d_state=4,
        decoder_mlp_ratio=4.0,
        crm_pool=16,
        crm_token_dim=96,
    ),
}
ABLATIONS: dict[str, dict[str, Any]] = {
    "cipa_2d": dict(in_slices=1),
    "cipa_25d": dict(in_slices=3),
    "cipa_25d_cbam": dict(in_slices=3, slice_module="cbam"),
    "cipa_25d_nonlocal": dict(in_slices=3, slice_module="nonlocal"),
    "cipa_25d_sim": dict(in_slices=3, slice_module="sim"),
}


def register_model(fn: Callable[..., nn.Module], name: str | None = None) -> Callable[..., nn.Module]:
    _REGISTRY[name or fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_config(name: str, **overrides: Any) -> CIPAConfig:
    """The CIPAConfig of a registered CIPA variant, with overrides applied."""
    base, _, width = name.rpartition("_")
    if base not in ABLATIONS or width not in WIDTHS:
        raise KeyError(f"{name!r} is not a registered CIPA variant; known: {list_models()}")
    return dataclasses.replace(CIPAConfig(**ABLATIONS[base], **WIDTHS[width]), **overrides)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model by name; keyword overrides change its config (e.g. ``scan_impl="ref"``)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name](**overrides)


def build_from_card(card: ModelCard) -> nn.Module:
    """The network a checkpoint's card describes: CIPA from its saved architecture, any other registered model by
    name; its input mode must be the card's."""
    if card.architecture and card.name.startswith("cipa_"):
        model = CIPA(from_dict(CIPAConfig, dict(card.architecture), f"model card of {card.name}"))
    else:
        model = create_model(card.name)
    if model.in_slices != card.in_slices:
        raise ValueError(
            f"input mode mismatch: {card.name} reads {model.in_slices} slice(s) per modality, the card says "
            f"{card.in_slices}"
        )
    return model


def _cipa_factory(name: str) -> Callable[..., nn.Module]:
    def build(**overrides: Any) -> nn.Module:
        return CIPA(model_config(name, **overrides))

    build.__name__ = name
    build.__doc__ = f"CIPA variant {name}: {ABLATIONS[name.rpartition('_')[0]]}"
    return build


for _abl in ABLATIONS:
    for _w in WIDTHS:
        register_model(_cipa_factory(f"{_abl}_{_w}"))


def _png_input(cls: type[nn.Module]) -> type[nn.Module]:
    """A MONAI network that takes the grey levels [0, 255] every igtv model takes, mapped to the input range CIPA
    uses (:func:`igtv.models.cipa.normalize_png`), so baselines and CIPA see the same input. The state dict keys
    are MONAI's own."""
    from igtv.models.cipa import normalize_png

    class PngInput(cls):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(normalize_png(x))

    PngInput.__name__ = PngInput.__qualname__ = cls.__name__
    return PngInput


def _monai_unet(width: str, in_channels: int = 6) -> Callable[..., nn.Module]:
    def build(**overrides: Any) -> nn.Module:
        from monai.networks.nets import UNet

        channels = {"tiny": (8, 16, 32, 64), "s": (16, 32, 64, 128)}.get(width, (32, 64, 128, 256, 512))
        kwargs = dict(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=1,
            channels=channels,
            strides=(2,) * (len(channels) - 1),
            num_res_units=2,
        )
        kwargs.update(overrides)
        net = _png_input(UNet)(**kwargs)
        net.in_slices = kwargs["in_channels"] // 2
        return net

    return build


def _monai_segresnet(width: str, in_channels: int = 6) -> Callable[..., nn.Module]:
    def build(**overrides: Any) -> nn.Module:
        from monai.networks.nets import SegResNet

        kwargs = dict(
            spatial_dims=2, in_channels=in_channels, out_channels=1, init_filters={"tiny": 8, "s": 16}.get(width, 32)
        )
        kwargs.update(overrides)
        net = _png_input(SegResNet)(**kwargs)
        net.in_slices = kwargs["in_channels"] // 2
        return net

    return build


for _w in WIDTHS:
    for _mode, _ch in (("2d", 2), ("25d", 6)):
        register_model(_monai_unet(_w, _ch), f"unet_{_mode}_{_w}")
        register_model(_monai_segresnet(_w, _ch), f"segresnet_{_mode}_{_w}")
