"""Table II's fine-tuned-against-not reading: groups, paired statistics by hand, pooling, the markdown."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from igtv.experiments.table2_finetune import (
    RAW_READING,
    finetune_effect,
    finetune_lines,
    finetune_readings,
    finetune_rows,
    format_p,
    paired,
)
from igtv.experiments.table2_report import ROWS, avoid_sum, false_cell


def test_groups_are_the_cipa_rows_by_initialisation():
    tuned, other = finetune_rows(ROWS)
    assert tuned == ["25d_ft", "cbam_ft", "nonlocal_ft", "sim_ft"]
    assert other == ["2d_applied", "2d_scratch", "25d_applied", "25d_scratch"]  # no U-Net, no threshold rows


def test_paired_by_hand():
    a = {"p1": 0.80, "p2": 0.90, "p3": 0.70, "p4": 0.60, "only_a": 0.1}
    b = {"p1": 0.75, "p2": 0.92, "p3": 0.50, "p4": 0.60, "only_b": 0.9}
    r = paired(a, b)
    assert r["patients"] == 4  # common patients only
    assert r["diff"] == pytest.approx((0.05 - 0.02 + 0.20 + 0.0) / 4)
    assert (r["better"], r["worse"]) == (2, 1)  # p4 is a tie
    assert r["mean_a"] == pytest.approx(0.75) and r["mean_b"] == pytest.approx(0.6925)
    assert r["p"] == pytest.approx(wilcoxon([0.8, 0.9, 0.7, 0.6], [0.75, 0.92, 0.5, 0.6]).pvalue)
    assert np.isnan(paired({"p": 0.5}, {"p": 0.4})["p"])  # one pair: no test


def test_fine_tuning_that_helps_every_patient_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    patients = [f"P{i}" for i in range(12)]
    base = {p: float(rng.uniform(0.4, 0.8)) for p in patients}
    dice = {
        "other_a": base,
        "other_b": {p: v - 0.02 for p, v in base.items()},
        "tuned_a": {p: v + float(rng.uniform(0.03, 0.1)) for p, v in base.items()},
        "tuned_b": {p: v + float(rng.normal(0, 0.05)) for p, v in base.items()},
    }
    eff = finetune_effect(dice, ["tuned_a", "tuned_b"], ["other_a", "other_b"])
    by = {(c["tuned"], c["other"]): c for c in eff["pairs"]}
    assert len(by) == 4
    assert by[("tuned_a", "other_a")]["better"] == 12 and by[("tuned_a", "other_a")]["p"] < 0.001
    assert by[("tuned_b", "other_a")]["p"] > 0.05  # zero-mean noise is not a gain
    pool = eff["pooled"]
    expected_a = np.mean([[dice["tuned_a"][p], dice["tuned_b"][p]] for p in patients], axis=1)
    assert pool["mean_a"] == pytest.approx(expected_a.mean())
    assert pool["patients"] == 12 and pool["better"] >= 10 and pool["p"] < 0.01


def test_pooling_uses_patients_every_row_has_and_needs_both_groups():
    dice = {"t": {"a": 0.9, "b": 0.8, "c": 0.7}, "o1": {"a": 0.5, "b": 0.5, "c": 0.5}, "o2": {"a": 0.4, "b": 0.6}}
    pool = finetune_effect(dice, ["t"], ["o1", "o2"])["pooled"]
    assert pool["patients"] == 2 and pool["mean_b"] == pytest.approx(0.5)
    assert finetune_effect(dice, ["t"], ["missing"]) is None
    assert finetune_effect({"t": {}, "o1": dice["o1"]}, ["t"], ["o1"]) is None


def test_markdown_gives_each_pair_and_the_pooled_line():
    dice = {"t": {"a": 0.9, "b": 0.8, "c": 0.7}, "o": {"a": 0.5, "b": 0.85, "c": 0.6}}
    eff = finetune_effect(dice, ["t"], ["o"])
    md = "\n".join(finetune_lines({"per-seed mean": eff, "seed ensemble": None}, {"t": "Tuned", "o": "Other"}))
    assert "| Tuned | +15.0 (2/1, p 0.500) |" in md  # (0.4 - 0.05 + 0.1) / 3 = +15 points
    assert "| fine-tuned row | Other |" in md and "seed ensemble" not in md
    assert "better on 2 of 3 patients, worse on 1, p = 0.500." in md
    assert [format_p(p) for p in (None, float("nan"), 0.0771, 0.0004)] == ["ref.", "n/a", "0.077", "< 0.001"]


def test_false_lesion_cells_show_the_marked_ones_only_where_every_part_knows():
    assert avoid_sum([1, 0, 2]) == 3 and avoid_sum([1, None]) is None and avoid_sum([]) is None
    assert false_cell(4, 3) == "4 (3)" and false_cell(4, None) == "4" and false_cell(0, 0) == "0 (0)"


def test_readings_score_the_networks_own_masks_apart_from_the_post_processed_ones():
    """Fine-tuning that shows in the networks' masks and is evened out by post-processing: the raw reading finds it,
    the post-processed one does not."""
    rng = np.random.default_rng(1)
    patients = [f"P{i}" for i in range(12)]
    post = {p: float(rng.uniform(0.7, 0.9)) for p in patients}
    rows = []
    for key in ("25d_ft", "sim_ft", "2d_applied", "25d_applied"):
        gap = 0.1 if key.endswith("_ft") else 0.2  # what the post-processing adds to each network's mask
        rows.append({
            "key": key,
            "patient_dice_3d": {p: v + float(rng.normal(0, 0.02)) for p, v in post.items()},
            "patient_dice_3d_raw": {p: v - gap + float(rng.normal(0, 0.01)) for p, v in post.items()},
        })  # fmt: skip
    selected = [r for r in ROWS if r.key in {x["key"] for x in rows}]
    readings = finetune_readings(selected, {"rows": rows, "ensembles": []})
    raw = readings[f"test split, per-seed mean, {RAW_READING}"]["pooled"]
    assert raw["better"] == 12 and raw["diff"] == pytest.approx(0.1, abs=0.02) and raw["p"] < 0.001
    assert readings["test split, per-seed mean"]["pooled"]["p"] > 0.01
    assert readings["test split, seed ensemble"] is None  # no ensembles: no reading
    # a run saved before the raw field (rows without it) gives no raw reading rather than a wrong one
    old = [{k: v for k, v in r.items() if k != "patient_dice_3d_raw"} for r in rows]
    assert finetune_readings(selected, {"rows": old})[f"test split, per-seed mean, {RAW_READING}"] is None
