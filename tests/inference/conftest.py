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
    path, name="pethalfmax_25d_test", size=64, preset="lucid", mode=None, patch=0, spacing_mm=0.0, legacy=False
) -> str:
    """A checkpoint of the stand-in; ``patch > 0`` makes it a patch-trained model (sliding-window prediction).
    ``mode`` other than the model's own makes a card that contradicts the network; ``legacy`` writes the layout of
    checkpoints from before model cards."""
    from igtv.checkpoint import ModelCard, save_checkpoint, save_model

    model = _REGISTRY[name]()
    mode = mode or ("25d" if model.in_slices == 3 else "2d")
    run = {"stage": "test", "data": {"mode": mode, "size": size}, "train": {"threshold": 0.5}}
    if legacy:
        save_checkpoint(
            path,
            {
                "model_name": name,
                "model_config": {},
                "input_slices": model.in_slices,
                "run_config": run,
                "preprocessing": {"preset": preset, "min_suv_max": 3.0}
                | ({"sampler": "patches", "patch": patch, "spacing_mm": spacing_mm} if patch else {}),
                "model": model.state_dict(),
            },
        )
        return str(path)
    card = ModelCard(
        name=name,
        in_slices=3 if mode == "25d" else 1,
        preset=preset,
        sampler="patches" if patch else "slices",
        input_size=patch or size,
        spacing_mm=spacing_mm if patch else 0.0,
        min_suv_max=3.0,
    )
    save_model(path, model.state_dict(), card, run_config=run)
    return str(path)


@pytest.fixture(scope="session")
def halfmax_ckpt(tmp_path_factory):
    return write_test_checkpoint(tmp_path_factory.mktemp("ckpt") / "halfmax.pt")
