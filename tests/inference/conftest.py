"""A transparent stand-in network for testing the prediction pipeline (not the learning): its logit is the centre
PET grey level minus one half, so on LUCID windows it contours the voxels above 50 % of the candidate's SUVmax."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from igtv.models.registry import _REGISTRY, register_model


class PetHalfMax(nn.Module):
    def __init__(self, in_slices: int = 3) -> None:
        super().__init__()
        self.in_slices = in_slices
        self.offset = nn.Parameter(torch.zeros(()))  # normalised grey 0 = 127.5 / 255

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = self.in_slices + self.in_slices // 2  # PET slice t
        return 40.0 * (x[:, centre : centre + 1] - self.offset)


for _name, _slices in (("pethalfmax_25d_test", 3), ("pethalfmax_2d_test", 1)):
    if _name not in _REGISTRY:
        register_model(lambda s=_slices: PetHalfMax(s), _name)


def write_test_checkpoint(
    path, name="pethalfmax_25d_test", size=64, preset="lucid", mode=None, patch=0, spacing_mm=0.0
) -> str:
    """A checkpoint of the stand-in; ``patch > 0`` makes it a patch-trained model (sliding-window prediction)."""
    from igtv.training.checkpoint import save_checkpoint

    model = _REGISTRY[name]()
    mode = mode or ("25d" if "_25d" in name else "2d")
    save_checkpoint(
        path,
        {
            "model_name": name,
            "model_config": {},
            "input_slices": 3 if "_25d" in name else 1,
            "run_config": {"stage": "test", "data": {"mode": mode, "size": size}, "train": {"threshold": 0.5}},
            "preprocessing": {"preset": preset, "min_suv_max": 3.0}
            | ({"sampler": "patches", "patch": patch, "spacing_mm": spacing_mm} if patch else {}),
            "model": model.state_dict(),
        },
    )
    return str(path)


@pytest.fixture(scope="session")
def halfmax_ckpt(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "halfmax.pt")
