"""Checkpoints: the model card, the one writer, and checkpoints from before cards."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from igtv.checkpoint import CheckpointError, ModelCard, load_checkpoint, read_card, save_model
from igtv.config import to_dict
from igtv.inference.model import load_model
from igtv.models import create_model
from tests.inference.conftest import write_test_checkpoint


def test_a_model_is_rebuilt_from_its_card_alone(tmp_path):
    torch.manual_seed(0)
    net = create_model("cipa_25d_sim_tiny", scan_impl="ref").eval()
    card = ModelCard(
        name="renamed_by_a_user",  # the name is a label: the architecture comes from the card
        in_slices=3,
        preset="lucid",
        sampler="patches",
        input_size=64,
        spacing_mm=2.0,
        cold_lesions=True,
        architecture=to_dict(net.config),
    )
    path = save_model(tmp_path / "m.pt", net.state_dict(), card)
    assert read_card(load_checkpoint(path), path) == card
    with pytest.raises(CheckpointError, match="cannot build the model its card names"):
        load_model(path)  # a CIPA card must carry a cipa_ name for the architecture to be trusted
    card = dataclasses.replace(card, name="cipa_25d_sim_tiny")
    path = save_model(tmp_path / "m.pt", net.state_dict(), card)
    lm = load_model(path)
    assert (lm.input_slices, lm.patch, lm.spacing_mm, lm.preset, lm.cold_lesions) == (3, 64, 2.0, "lucid", True)
    x = torch.randn(1, 6, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(lm.model(x), net(x))


def test_legacy_checkpoints_load_with_the_same_card(tmp_path):
    new = write_test_checkpoint(tmp_path / "new.pt", patch=32, spacing_mm=2.0)
    old = write_test_checkpoint(tmp_path / "old.pt", patch=32, spacing_mm=2.0, legacy=True)
    assert "card" not in load_checkpoint(old) and "card" in load_checkpoint(new)
    assert read_card(load_checkpoint(old), old) == read_card(load_checkpoint(new), new)
    a, b = load_model(new), load_model(old)
    assert (a.input_slices, a.size, a.patch, a.preset, a.min_suv_max) == (
        b.input_slices,
        b.size,
        b.patch,
        b.preset,
        3.0,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"in_slices": 2}, "is not one of"),
        ({"preset": "hounsfield"}, "is not one of"),
        ({"threshold": 1.5}, "threshold"),
    ],
)
def test_a_bad_card_is_refused_before_any_model_is_built(tmp_path, change, message):
    path = write_test_checkpoint(tmp_path / "c.pt")
    state = load_checkpoint(path)
    state["card"] = {**state["card"], **change}
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_model(path)
    assert str(path) in str(err.value) and "model card" in str(err.value)
