"""Ensembles: the mean of several checkpoints' probabilities, in predict and in whole-patient evaluation."""

from __future__ import annotations

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch

from igtv.checkpoint import load_checkpoint, read_card, save_model
from igtv.inference.ensemble import cached_probability, ensemble_probability, load_models
from igtv.inference.predict import predict_dicom
from tests.inference.test_predict import _hot_patient


def _variant(src: str, path, offset: float = 0.0, threshold: float | None = None) -> str:
    """A copy of the stand-in checkpoint with its grey offset (and card threshold) changed."""
    ckpt = load_checkpoint(src)
    card = read_card(ckpt, src)
    if threshold is not None:
        card = replace(card, threshold=threshold)
    state = {k: torch.full_like(v, offset) for k, v in ckpt["model"].items()}
    save_model(path, state, card, run_config=ckpt.get("run_config", {}))
    return str(path)


def test_ensemble_probability_is_the_rounded_mean():
    def members(*values):
        maps = {v: (np.full((2, 2), v, np.uint8), [{"v": v}]) for v in values}
        return list(values), maps.__getitem__

    a, b, c = 0, 255, 101
    assert ensemble_probability(*members(a, b))[0][0, 0] == 128  # 127.5 rounds up
    assert ensemble_probability([c, c, 100], lambda v: (np.full((2, 2), v, np.uint8), []))[0][0, 0] == 101  # 100.67
    prob, cand = ensemble_probability(*members(c))
    assert prob.dtype == np.uint8 and cand == [{"v": 101}]
    with pytest.raises(ValueError, match="no probability map"):
        ensemble_probability([], lambda v: v)


def test_members_must_agree_on_what_post_processing_reads(halfmax_ckpt, tmp_path):
    other = _variant(halfmax_ckpt, tmp_path / "strict.pt", threshold=0.7)
    assert len(load_models([halfmax_ckpt, halfmax_ckpt], "cpu")) == 2
    with pytest.raises(ValueError, match=r"strict\.pt: threshold 0\.7 .* \(or pass --threshold\)"):
        load_models([halfmax_ckpt, other], "cpu")
    # one threshold for all members (``--threshold``) lets them be averaged
    assert [m.threshold for m in load_models([halfmax_ckpt, other], "cpu", threshold=0.6)] == [0.6, 0.6]


def test_cached_probability_is_reused_only_under_its_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.full((3, 4), 7 * len(calls), np.uint8)

    path = tmp_path / "probabilities" / "test" / "P1.npz"
    first = cached_probability(path, "k1", compute)
    again = cached_probability(path, "k1", compute)
    assert len(calls) == 1 and np.array_equal(first, again) and again[0, 0] == 7
    changed = cached_probability(path, "k2", compute)  # another checkpoint or setting: computed again
    assert len(calls) == 2 and changed[0, 0] == 14
    assert sorted(p.name for p in path.parent.iterdir()) == ["P1.npz"]  # no temporary file left behind
    # a map kept under an earlier version's name is read when its key matches, and moved to the new name
    moved = cached_probability(tmp_path / "new" / "P1-abc.npz", "k2", compute, legacy=path)
    assert len(calls) == 2 and moved[0, 0] == 14 and not path.exists()
    assert cached_probability(tmp_path / "new" / "P1-abc.npz", "k2", compute)[0, 0] == 14 and len(calls) == 2
    other = cached_probability(tmp_path / "new" / "P1-def.npz", "k3", compute, legacy=tmp_path / "new" / "P1-abc.npz")
    assert len(calls) == 3 and other[0, 0] == 21  # its key does not match: computed, the legacy file kept
    assert (tmp_path / "new" / "P1-abc.npz").exists()


def test_predict_averages_the_members_probabilities(qc_cohort, halfmax_ckpt, tmp_path):
    """Two copies of one model predict exactly what it does alone; a member that sees nothing halves every
    probability, so only what the other member was certain of reaches the 0.5 threshold."""
    dicom = _hot_patient(qc_cohort)
    blind = _variant(halfmax_ckpt, tmp_path / "blind.pt", offset=5.0)  # logit -200 and below everywhere
    runs = {}
    for name, models in (
        ("one", [halfmax_ckpt]),
        ("twice", [halfmax_ckpt, halfmax_ckpt]),
        ("mixed", [halfmax_ckpt, blind]),
    ):
        res = predict_dicom(dicom, models, tmp_path / name, device="cpu", progress=False)
        prob = np.asarray(nib.load(res.files["probability"]).dataobj)
        runs[name] = (prob, np.asarray(nib.load(res.files["mask"]).dataobj), res.stats)
    one, twice, mixed = runs["one"], runs["twice"], runs["mixed"]
    assert one[1].sum() > 0
    assert np.array_equal(one[0], twice[0]) and np.array_equal(one[1], twice[1])
    assert twice[2]["model"]["ensemble"] == "mean probability of 2 checkpoints"
    assert "ensemble" not in one[2]["model"]
    assert np.array_equal(mixed[0], ((one[0].astype(int) + 1) // 2).astype(np.uint8))  # the mean, rounded half up
    # only where the first member was certain (255 -> 128 >= 127.5) does the ensemble's raw output stay
    raw_one, raw_mixed = one[0] >= 128, mixed[0] >= 128
    assert mixed[0].max() == 128 and 0 < raw_mixed.sum() < raw_one.sum() and not (raw_mixed & ~raw_one).any()


def test_cli_takes_several_models_only_where_an_ensemble_makes_sense(small_cohort, halfmax_ckpt, tmp_path, capsys):
    from igtv.cli import main

    pclt = small_cohort[1].out_dir / "pclt"
    code = main(["predict", "--pclt", str(pclt), "--model", halfmax_ckpt, halfmax_ckpt, "--out", str(tmp_path / "o")])
    assert code == 2 and "takes one --model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
