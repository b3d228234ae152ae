"""CIPA (Mei et al., CVPR 2025) with the paper's 2.5D input and slice modules (Luo et al., Sec. IV-B, IV-C).

Input: (B, 2S, H, W) with S = 1 (2D) or 3 (2.5D) slices per modality, CT channels first, PET second, each grey
level already mapped as the authors do (``x / 255 * 3.2 - 1.6``, see :func:`normalize_png`). In 2D the single
slice is repeated to 3 channels (the CIPA convention), so the 2D and 2.5D stems have the same shape and a 2D
checkpoint loads into a 2.5D model as is. Output: (B, 1, H, W) logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from igtv.models.crm import CRM
from igtv.models.dcim import DCIM
from igtv.models.decoder import MambaDecoder
from igtv.models.encoder import VMambaEncoder
from igtv.models.slice_module import make_slice_module

STRIDE = 32


@dataclass(frozen=True)
class CIPAConfig:
    """Every architectural choice of a CIPA variant; saved into checkpoints."""

    in_slices: Literal[1, 3] = 1
    dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    depths: tuple[int, int, int, int] = (2, 2, 9, 2)
    d_state: int = 16
    ssm_ratio: float = 2.0
    decoder_depths: tuple[int, int, int] = (2, 2, 2)
    decoder_d_state: int = 4
    decoder_mlp_ratio: float = 0.0
    crm_pool: int = 16
    crm_token_dim: int = 96
    use_crm: bool = True
    use_dcim: bool = True
    shared_backbone: bool = True
    slice_module: Literal["none", "sim", "cbam", "nonlocal"] = "none"
    slice_module_at: Literal["input", "stage1"] = "input"
    sim_weights: tuple[float, float, float] = (0.3, 0.3, 0.4)
    drop_path_rate: float = 0.0
    scan_impl: Literal["auto", "ref", "numba", "triton", "mamba_ssm"] = "auto"


def normalize_png(x: torch.Tensor) -> torch.Tensor:
    """Grey levels in [0, 255] -> the network's input range, as the CIPA authors do: x / 255 * 3.2 - 1.6."""
    return x.float() / 255.0 * 3.2 - 1.6


def check_input_size(h: int, w: int) -> None:
    """Raise a clear error for a size the network's stride of 32 does not divide."""
    bad = [(n, s) for n, s in (("height", h), ("width", w)) if s % STRIDE or s < STRIDE]
    if bad:
        name, s = bad[0]
        lo = max(STRIDE, s // STRIDE * STRIDE)
        raise ValueError(
            f"input {name} {s} is not a multiple of {STRIDE}; nearest valid sizes: "
            + (f"{lo} or {lo + STRIDE}" if lo < s else f"{lo}")
            + " (pad or resize the slices)"
        )


class CIPA(nn.Module):
    """CIPA: dual VMamba encoder (shared weights by default), CRM + DCIM fusion at all 4 stages, Mamba decoder;
    with an optional slice module (SIM / CBAM / Non-Local) on each modality's slice stack."""

    def __init__(self, config: CIPAConfig | None = None) -> None:
        super().__init__()
        cfg = config or CIPAConfig()
        self.config = cfg
        enc = dict(
            in_chans=3,
            dims=cfg.dims,
            depths=cfg.depths,
            d_state=cfg.d_state,
            ssm_ratio=cfg.ssm_ratio,
            drop_path_rate=cfg.drop_path_rate,
            scan_impl=cfg.scan_impl,
        )
        self.encoder = VMambaEncoder(**enc)
        self.encoder_pet = None if cfg.shared_backbone else VMambaEncoder(**enc)
        ch = 3 if cfg.slice_module_at == "input" else cfg.dims[0]
        self.slice_ct = make_slice_module(cfg.slice_module, ch, cfg.sim_weights)
        self.slice_pet = make_slice_module(cfg.slice_module, ch, cfg.sim_weights)
        self.crm = (
            nn.ModuleList(CRM(d, cfg.crm_pool, cfg.crm_token_dim, cfg.d_state, cfg.scan_impl) for d in cfg.dims)
            if cfg.use_crm
            else None
        )
        self.dcim = nn.ModuleList(DCIM(d, 4, cfg.d_state, cfg.scan_impl) for d in cfg.dims) if cfg.use_dcim else None
        self.decoder = MambaDecoder(
            cfg.dims,
            cfg.decoder_depths,
            cfg.decoder_d_state,
            cfg.decoder_mlp_ratio,
            1,
            cfg.drop_path_rate,
            cfg.scan_impl,
        )

    @property
    def in_slices(self) -> int:
        """Slices per modality: 1 (2D) or 3 (2.5D)."""
        return self.config.in_slices

    @property
    def in_channels(self) -> int:
        return 2 * self.config.in_slices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (B, {self.in_channels}, H, W) ({cfg.in_slices} CT then {cfg.in_slices} "
                f"PET slices), got {tuple(x.shape)}"
            )
        check_input_size(*x.shape[-2:])
        s = cfg.in_slices
        ct, pet = x[:, :s], x[:, s:]  # (B, S, H, W) each
        if s == 1:
            ct, pet = ct.expand(-1, 3, -1, -1), pet.expand(-1, 3, -1, -1)  # grey slice repeated to 3 channels
        if cfg.slice_module_at == "input":
            ct, pet = self.slice_ct(ct), self.slice_pet(pet)
            pre_ct = pre_pet = None
        else:
            pre_ct, pre_pet = self.slice_ct, self.slice_pet
        feats_ct = self.encoder(ct, pre_ct)
        feats_pet = (self.encoder_pet or self.encoder)(pet, pre_pet)
        fused = []
        for i, (f_ct, f_pet) in enumerate(zip(feats_ct, feats_pet, strict=True)):
            r_ct, r_pet = self.crm[i](f_ct, f_pet) if self.crm is not None else (f_ct, f_pet)
            if self.dcim is not None:
                fused.append(f_ct + f_pet + self.dcim[i](r_ct, r_pet))
            else:
                fused.append(r_ct + r_pet)
        return self.decoder(fused)
