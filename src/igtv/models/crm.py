"""CIPA's channel-wise rectification module (CRM), Mei et al., CVPR 2025, Sec. 3.2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from igtv.models.ss2d import SS1D


class CRM(nn.Module):
    """CRM (CIPA Sec. 3.2): channels of CT and PET as tokens, a 1D selective scan across them, per-channel gates.

    CT and PET features are concatenated (2C channels); each channel becomes one token. The authors flatten the
    whole H*W map into a Linear(H*W -> 96), which ties the weights to 512x512 input. We first average-pool every
    channel to a fixed ``pool x pool`` grid, so the token length (pool^2) and every weight are independent of
    the input size; at 512x512 stage 4 (16x16) this equals the authors' layout with pool=16.
    Token: LayerNorm -> Linear(pool^2 -> token_dim) -> GELU -> SS1D over the 2C tokens -> LayerNorm ->
    Linear(token_dim -> 1) -> sigmoid = w. Output: CT + w_ct * CT, PET + w_pet * PET.
    """

    def __init__(
        self, dim: int, pool: int = 16, token_dim: int = 96, d_state: int = 16, scan_impl: str = "auto"
    ) -> None:
        super().__init__()
        self.pool = pool
        self.norm_in = nn.LayerNorm(pool * pool)
        self.embed = nn.Linear(pool * pool, token_dim)
        self.mixer = SS1D(token_dim, d_state, ssm_ratio=2.0, scan_impl=scan_impl)
        self.norm_out = nn.LayerNorm(token_dim)
        self.head = nn.Linear(token_dim, 1)

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = ct.shape
        x = torch.cat([ct, pet], dim=1)  # (B, 2C, H, W)
        tokens = F.adaptive_avg_pool2d(x, self.pool).flatten(2)  # (B, 2C, P*P)
        t = F.gelu(self.embed(self.norm_in(tokens)))  # (B, 2C, T)
        t = self.mixer(t)  # (B, 2C, T)
        weight = torch.sigmoid(self.head(self.norm_out(t)))  # (B, 2C, 1)
        w_ct, w_pet = weight[:, :c, :, None], weight[:, c:, :, None]  # (B, C, 1, 1)
        return ct + w_ct * ct, pet + w_pet * pet
