"""The slice module of an ablation row, by name: none, SIM, CBAM or Non-Local."""

from __future__ import annotations

from torch import nn

from igtv.models.cbam import CBAM
from igtv.models.non_local import NonLocalBlock
from igtv.models.sim import SliceInteraction


def make_slice_module(kind: str, channels: int, sim_weights: tuple[float, float, float] = (0.3, 0.3, 0.4)) -> nn.Module:
    """Build the slice module of an ablation row: "none", "sim", "cbam" or "nonlocal"."""
    if kind == "none":
        return nn.Identity()
    if kind == "sim":
        return SliceInteraction(channels, 2, *sim_weights)
    if kind == "cbam":
        return CBAM(channels)
    if kind == "nonlocal":
        return NonLocalBlock(channels)
    raise ValueError(f"unknown slice module {kind!r}; choose none, sim, cbam or nonlocal")
