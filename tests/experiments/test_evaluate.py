from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from igtv.evaluation.baselines import neighbourhood, threshold_mask
from igtv.evaluation.statistics import bootstrap_ci
from igtv.experiments.evaluate import EvalConfig, headline, slice_row, summarize
from tests.privacy import identifier_hits, phantom_identifiers


def _rows():
    t = np.zeros((4, 4), dtype=bool)
    t[0:2, 0:2] = True  # 4 px
    p1 = t.copy()  # perfect
    p2 = np.zeros((4, 4), dtype=bool)  # missed
    r1 = {"patient": "A", **slice_row(p1, t, (2.0, 2.0))}
    r2 = {"patient": "B", **slice_row(p2, t, (2.0, 2.0))}
    return r1, r2


def test_conventions_by_hand():
    r1, r2 = _rows()
    paper = headline([r1, r2], "paper")
    assert paper["iou"] == pytest.approx(0.5) and paper["dice"] == pytest.approx(0.5)
    assert paper["accuracy"] == pytest.approx((1.0 + 12 / 16) / 2)
    assert paper["hd95"] == pytest.approx(0.0)  # the missed slice has no HD95: left out, counted apart
    cipa = headline([r1, r2], "cipa")
    # pooled: TP 4, FP 0, FN 4, TN 24
    assert cipa["iou"] == pytest.approx(4 / 8) and cipa["dice"] == pytest.approx(8 / 12)
    assert cipa["accuracy"] == pytest.approx(0.5 * (4 / 8 + 1.0))
    assert cipa["hd95"] == pytest.approx((0.0 + np.hypot(8.0, 8.0)) / 2)  # missed slice -> image diagonal (mm)


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    rng = np.random.default_rng(3)
    groups = {f"P{i}": list(rng.normal(0.7, 0.1, size=5)) for i in range(12)}

    def stat(values):
        return {"m": float(np.mean(values))}

    a = bootstrap_ci(groups, stat, n=300, seed=5)
    b = bootstrap_ci(groups, stat, n=300, seed=5)
    c = bootstrap_ci(groups, stat, n=300, seed=6)
    assert a == b and a != c
    mean = np.mean([v for g in groups.values() for v in g])
    assert a["m"][0] < mean < a["m"][1]
    assert bootstrap_ci({}, stat) == {}


def test_summary_counts_undefined_hd95():
    r1, r2 = _rows()
    for r in (r1, r2):
        r["hd95_unit"] = "mm"
    s = summarize([r1, r2], [], EvalConfig(bootstrap=50))
    assert s["hd95_undefined"] == 1 and s["patients"] == 2 and s["headline"]["dice"]["value"] == pytest.approx(0.5)
    assert s["per_slice"]["dice"]["median"] == pytest.approx(0.5)


def test_threshold_rules_by_hand():
    suv = np.ones((10, 10))
    suv[4:6, 4:6] = [[10.0, 5.0], [4.0, 3.0]]
    suv[0, 9] = 20.0  # hot, outside the neighbourhood
    truth = np.zeros((10, 10), dtype=bool)
    truth[4:6, 4:6] = True
    box = neighbourhood(truth, 1)
    assert box.sum() == 16 and not box[0, 9]
    m41 = threshold_mask(suv, truth, "pet41", 1)  # 41 % of the neighbourhood max 10 = 4.1
    assert m41.sum() == 2 and m41[4, 4] and m41[4, 5]
    m41_roi = threshold_mask(suv, truth, "pet41", 1, roi_suv_max=7.0)  # 2.87
    assert m41_roi.sum() == 4
    m25 = threshold_mask(suv, truth, "suv25", 1)
    assert m25.sum() == 4 and not m25[0, 9]
    assert not threshold_mask(suv, np.zeros_like(truth), "pet41", 1).any()
    with pytest.raises(ValueError, match="unknown threshold rule"):
        threshold_mask(suv, truth, "otsu", 1)


def test_table2_and_evaluate_on_a_tiny_run(tmp_path, capsys):
    """The whole command at the smoke budget (tiny CIPA, 32 px, one step), three rows."""
    from igtv.cli import main
    from igtv.experiments.table2 import run_table2

    out = tmp_path / "t2"
    table = run_table2(out, budget="smoke", workers=1, device="cpu", rows=("2d_applied", "sim_ft", "pet41"))
    for name in ("table2.md", "table2.csv", "table2.json", "fig4.png"):
        assert (out / name).exists(), name
    md = (out / "table2.md").read_text()
    assert "+SIM, fine-tuned (ours)" in md and "43.8 / 60.9 / 84.6 / 24.81" in md
    saved = json.loads((out / "table2.json").read_text())
    assert [r["key"] for r in saved["rows"]] == ["2d_applied", "sim_ft", "pet41"]
    pooled = saved["finetune_vs_not"]["test split, per-seed mean"][
        "pooled"
    ]  # +SIM against 2D applied, the test patients
    assert pooled["tuned_rows"] == ["sim_ft"] and pooled["other_rows"] == ["2d_applied"]
    sim = next(r for r in saved["rows"] if r["key"] == "sim_ft")["patient_dice_3d"]
    assert pooled["patients"] == len(sim) >= 1 and pooled["mean_a"] == pytest.approx(np.mean(list(sim.values())))
    assert "Fine-tuned rows against the rows without fine-tuning (test split, per-seed mean" in md
    for r in table["rows"]:
        for conv in ("conv_paper", "conv_cipa"):
            assert 0.0 <= r[conv]["dice"]["mean"] <= 1.0
    # the budget's per-stage settings reach the trainings (the paper budget's shape: another batch on IGTV)
    trained = {
        k: yaml.safe_load((out / "runs" / "seed0" / k / "config.yaml").read_text())["train"]
        for k in ("pretrain", "sim_ft")
    }
    assert (trained["pretrain"]["batch_size"], trained["sim_ft"]["batch_size"]) == (2, 3)
    assert trained["sim_ft"]["min_lr"] == 0.0 and trained["sim_ft"]["grad_clip"] == 0.0
    transfer = json.loads((out / "runs" / "seed0" / "sim_ft" / "transfer_report.json").read_text())
    assert transfer["loaded"] and transfer["new"]
    ckpt = out / "runs" / "seed0" / "sim_ft" / "best.pt"
    data = out / "data" / "dataset_igtv"
    args = ["evaluate", "--model", str(ckpt), "--data", str(data), "--bootstrap", "20"]
    assert main([*args, "--out", str(tmp_path / "ev"), "--protocol", "slices"]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["hd95_unit"] == "mm" and summary["slices"] > 0
    per_slice = (tmp_path / "ev" / "per_slice.csv").read_text().splitlines()
    assert len(per_slice) == summary["slices"] + 1
    assert (tmp_path / "ev" / "per_patient.csv").read_text().startswith("patient,")
    # --threshold replaces the checkpoint's: the raw masks of the paper protocol can only lose pixels at a higher one
    assert main([*args, "--out", str(tmp_path / "ev99"), "--protocol", "slices", "--threshold", "0.99"]) == 0
    drawn = []
    for name in ("ev", "ev99"):
        with open(tmp_path / name / "per_slice.csv") as f:
            drawn.append(sum(float(r["tp"]) + float(r["fp"]) for r in csv.DictReader(f)))
        assert json.loads((tmp_path / name / "summary.json").read_text())["model"]["threshold"] == (
            0.99 if name == "ev99" else 0.5
        )
    assert drawn[1] <= drawn[0]
    assert main([*args, "--out", str(tmp_path / "wp")]) == 0  # default: whole patient
    # --keep-maps: the maps are kept beside the checkpoint (a copy here: table2 kept its own) and read back; another
    # --threshold computes none
    import shutil

    copy = tmp_path / "copy" / "best.pt"
    copy.parent.mkdir()
    shutil.copy2(ckpt, copy)
    keep = ["evaluate", "--model", str(copy), "--data", str(data), "--bootstrap", "20"]
    assert main([*keep, "--out", str(tmp_path / "wp_plain")]) == 0
    assert not (copy.parent / "probabilities").exists()  # kept only when asked
    assert main([*keep, "--out", str(tmp_path / "wp_keep"), "--keep-maps"]) == 0
    kept = sorted((copy.parent / "probabilities" / "test").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in kept]
    assert kept and main([*keep, "--out", str(tmp_path / "wp99"), "--keep-maps", "--threshold", "0.99"]) == 0
    assert [p.stat().st_mtime_ns for p in kept] == stamps
    readings = [json.loads((tmp_path / n / "whole_patient.json").read_text()) for n in ("wp_plain", "wp_keep", "wp99")]
    assert readings[0]["whole_patient"] == readings[1]["whole_patient"]
    assert readings[2]["model"]["threshold"] == 0.99
    whole = json.loads((tmp_path / "wp" / "whole_patient.json").read_text())["whole_patient"]
    assert whole["patients"] >= 1 and 0.0 <= whole["dice_3d"]["mean"] <= 1.0
    assert "lesions_true" in whole and whole["lesions_true"] >= 1
    row = next(r for r in table["rows"] if r["key"] == "pet41")  # threshold given the box: contours something
    assert row["whole_patient"]["dice_3d"]["mean"] > 0.3
    # privacy: no patient name, ID or birth date anywhere in what table2 and evaluate wrote
    ids = phantom_identifiers(out / "data" / "phantom_gtv", out / "data" / "phantom_igtv")
    assert identifier_hits(tmp_path, ids) == []


def test_table2_patch_budget_reads_both_protocols(tmp_path):
    """The patch path of Table II: patch-trained rows scored whole patient and on the ROI slices of the same
    prediction, next to a threshold row given the lesion boxes."""
    from igtv.experiments.table2 import run_table2

    out = tmp_path / "t2p"
    table = run_table2(out, budget="smoke_patches", workers=1, device="cpu", rows=("25d_applied", "sim_ft", "pet41"))
    md = (out / "table2.md").read_text()
    assert "FP (cc)" in md and "false lesions" in md
    table_lines = [line for line in md.split("\n\n")[0].splitlines() if line.startswith("|")]  # the main table
    assert len(table_lines) == 5 and len({line.count("|") for line in table_lines}) == 1, "the header's columns"
    rows = {r["key"]: r for r in table["rows"]}
    for key in ("25d_applied", "sim_ft", "pet41"):
        w = rows[key]["whole_patient"]
        assert w["patients"] >= 1 and 0.0 <= w["dice_3d"]["mean"] <= 1.0
    assert rows["pet41"]["whole_patient"]["dice_3d"]["mean"] > 0.3
    # the raw-output column is the patients' mean Dice of the mask before post-processing, from the saved rows
    assert "3D Dice, raw output (%)" in md
    for key in ("sim_ft", "pet41"):
        saved = json.loads((out / "runs" / "seed0" / key / "row_result.json").read_text())
        raw = [p["dice_3d_raw"] for p in saved["whole_rows"] if np.isfinite(p["dice_3d_raw"])]
        assert rows[key]["whole_patient"]["dice_3d_raw"]["mean"] == pytest.approx(float(np.mean(raw)))
    # the fine-tuning reading is made on the networks' own masks too, from the same saved rows
    raw_reading = table["finetune_vs_not"]["test split, per-seed mean, network output before post-processing"]
    sim_raw = {p["patient"]: p["dice_3d_raw"] for p in json.loads(
        (out / "runs" / "seed0" / "sim_ft" / "row_result.json").read_text())["whole_rows"]}  # fmt: skip
    assert raw_reading["pooled"]["other_rows"] == ["25d_applied"]
    assert raw_reading["pooled"]["mean_a"] == pytest.approx(float(np.mean(list(sim_raw.values()))))
    assert "network output before post-processing" in md
    ckpt = json.loads((out / "runs" / "seed0" / "sim_ft" / "whole_patient" / "whole_patient.json").read_text())
    assert ckpt["model"]["sampling"].startswith("patches")
    # a second run reuses every saved row (nothing retrained or re-evaluated) and gives the same table
    mtime = (out / "runs" / "seed0" / "sim_ft" / "best.pt").stat().st_mtime
    again = run_table2(out, budget="smoke_patches", workers=1, device="cpu", rows=("25d_applied", "sim_ft", "pet41"))
    assert (out / "runs" / "seed0" / "sim_ft" / "best.pt").stat().st_mtime == mtime
    for a, b in zip(table["rows"], again["rows"], strict=True):
        assert a["whole_patient"]["dice_3d"] == b["whole_patient"]["dice_3d"]
        assert json.dumps(a["conv_paper"]) == json.dumps(b["conv_paper"])  # NaN-aware
    assert again["seconds"] < table["seconds"] / 2
    # benchmarks/finetune_variant.py with no override trains the row again from its saved configuration and
    # reproduces the table's per-patient scores (deterministic on one host): the baseline its variants are read against
    fv = _finetune_variant()
    variant = fv.run_variant(out, tmp_path / "fv", "sim_ft", (0,), (), ("test",), ("best", "last"), "smoke_patches")
    saved = json.loads((out / "runs" / "seed0" / "sim_ft" / "row_result.json").read_text())
    table_dice = {p["patient"]: round(float(p["dice_3d"]), 4) for p in saved["whole_rows"]}
    assert variant["best", "test"][0]["per_patient"] == table_dice
    assert len(variant["last", "test"][0]["per_patient"]) == len(table_dice)
    trained = (tmp_path / "fv" / "seed0" / "best.pt").stat().st_mtime
    # a finished run is scored, not retrained
    again_dice = fv.run_variant(out, tmp_path / "fv", "sim_ft", (0,), (), ("test",), ("best",), "smoke_patches")
    assert again_dice["best", "test"][0]["per_patient"] == table_dice
    assert (tmp_path / "fv" / "seed0" / "best.pt").stat().st_mtime == trained
    # its pre-training made again: with no change it is the table's own, weight for weight; on a GTV cohort of another
    # size it reads that cohort, made with the table's generator
    import torch

    from igtv.checkpoint import load_checkpoint

    same = load_checkpoint(fv.pretrain_variant(out, tmp_path / "pv", budget="smoke_patches", workers=1))["model"]
    table_pre = load_checkpoint(out / "runs" / "pretrain" / "best.pt")["model"]
    assert same.keys() == table_pre.keys() and all(torch.equal(same[k], table_pre[k]) for k in same)
    fv.pretrain_variant(out, tmp_path / "pv4", ("train.lr=0.002",), 4, "smoke_patches", 1)
    pv4 = yaml.safe_load((tmp_path / "pv4" / "pretrain" / "config.yaml").read_text())
    assert pv4["data"]["root"] == str(tmp_path / "pv4" / "dataset_gtv4") and pv4["train"]["lr"] == 0.002
    split = json.loads((tmp_path / "pv4" / "dataset_gtv4" / "splits.json").read_text())
    assert sum(len(split[k]) for k in ("train", "val", "test")) == 4
    # its IGTV cohort made larger: the table's patients bit for bit, the table's validation and test lists as they
    # were, and every other patient with a QC-kept ROI in train
    data = out / "data" / "dataset_igtv"
    iv = fv.igtv_variant_data(out, tmp_path / "iv", 12, "smoke_patches", 1)
    assert iv == tmp_path / "iv" / "dataset_igtv12"
    for name in ("val", "test"):
        assert (iv / f"{name}.txt").read_text() == (data / f"{name}.txt").read_text()
    held = {line.split("_")[0] for name in ("val", "test") for line in (data / f"{name}.txt").read_text().split()}
    train = (iv / "train.txt").read_text().split()
    assert set((data / "train.txt").read_text().split()) < set(train)
    assert not {line.split("_")[0] for line in train} & held
    split_iv, split_table = (json.loads((d / "splits.json").read_text()) for d in (iv, data))
    assert all(split_iv[k] == split_table[k] for k in ("val", "test"))
    assert set(split_iv["train"]) == {line.split("_")[0] for line in train}
    first = sorted(p.name for p in (data / "volumes").iterdir())[0]
    for f in ("ct_hu.nii.gz", "pet_suv.nii.gz", "labels.nii.gz"):
        assert (iv / "volumes" / first / f).read_bytes() == (data / "volumes" / first / f).read_bytes()
    # a second seed makes each learnt row an ensemble too: seed 0's kept maps are read back, not recomputed
    maps = sorted((out / "runs" / "seed0" / "sim_ft" / "probabilities" / "test").glob("*.npz"))
    assert len(maps) == len(table_dice)
    stamps = [m.stat().st_mtime_ns for m in maps]
    two = run_table2(out, budget="smoke_patches", workers=1, device="cpu", rows=("sim_ft", "pet41"), seeds=(0, 1))
    assert [m.stat().st_mtime_ns for m in maps] == stamps
    (ens,) = two["ensembles"]
    assert ens["key"] == "sim_ft" and ens["seeds"] == [0, 1] and ens["patients"] == len(table_dice)
    assert 0.0 <= ens["dice_3d"] <= 1.0 and ens["wilcoxon_p_vs_sim"] is None
    assert "Seed ensembles" in (out / "table2.md").read_text()
    assert (out / "ensembles" / "sim_ft" / "ensemble_result.json").exists()
    # more patients: the IGTV cohort itself as an extra cohort; its test patients get the test split's Dice again
    from igtv.experiments.table2_extra import check_cohorts

    data = out / "data" / "dataset_igtv"
    with pytest.raises(ValueError, match="not a prepared dataset"):
        check_cohorts([tmp_path / "fv"])
    rows3 = ("25d_applied", "sim_ft", "pet41")
    ext = run_table2(out, budget="smoke_patches", workers=1, device="cpu", rows=rows3, extra_data=(data,))["extra"]
    saved_extra = out / "extra" / "dataset_igtv" / "seed0" / "sim_ft" / "extra_result.json"
    by_patient = {x["patient"]: x for x in json.loads(saved_extra.read_text())}
    for p, d in table_dice.items():
        assert by_patient[p]["dice_3d"] == pytest.approx(d, abs=1e-4)
    scored = [x for x in by_patient.values() if x["lesions_true"]]
    sim = next(r for r in ext["rows"] if r["key"] == "sim_ft")
    assert ext["cohorts"] == ["dataset_igtv"] and sim["patients"] == len(scored) > len(table_dice)
    assert sim["dice_3d_per_seed"] == [pytest.approx(np.mean([x["dice_3d"] for x in scored]))]
    assert sim["wilcoxon_p_vs_sim"] is None and sim["test_patients"] == len(table_dice)
    pool = ext["finetune_vs_not"]["pooled"]
    assert pool["other_rows"] == ["25d_applied"] and pool["patients"] == len(scored) + len(table_dice)
    assert "More patients (extra cohorts dataset_igtv" in (out / "table2.md").read_text()
    raw_pool = ext["finetune_vs_not_raw"]["pooled"]  # the networks' own masks, over the same patients
    assert raw_pool["patients"] == pool["patients"]
    assert raw_pool["mean_a"] == pytest.approx(
        float(np.mean([by_patient[p]["dice_3d_raw"] for p in by_patient if by_patient[p]["lesions_true"]]
                      + [sim_raw[p] for p in table_dice])))  # fmt: skip
    stamp = saved_extra.stat().st_mtime_ns  # saved: a re-run reuses it
    run_table2(out, budget="smoke_patches", workers=1, device="cpu", rows=rows3, extra_data=(data,))
    assert saved_extra.stat().st_mtime_ns == stamp
    # a result saved before the raw field existed is scored again (from the kept maps), not read short of it
    old = [{k: v for k, v in x.items() if k != "dice_3d_raw"} for x in json.loads(saved_extra.read_text())]
    saved_extra.write_text(json.dumps(old))
    run_table2(out, budget="smoke_patches", workers=1, device="cpu", rows=rows3, extra_data=(data,))
    assert all("dice_3d_raw" in x for x in json.loads(saved_extra.read_text()))
    # two seeds: the extra patients are read by the seed ensemble too; on the test patients it scores exactly as the
    # test split's ensemble (the same kept maps, the same post-processing)
    two = run_table2(out, budget="smoke_patches", workers=1, device="cpu", rows=rows3, seeds=(0, 1), extra_data=(data,))
    saved_ens = out / "extra" / "dataset_igtv" / "ensemble" / "sim_ft" / "extra_result.json"
    ens_rows = {x["patient"]: x["dice_3d"] for x in json.loads(saved_ens.read_text()) if x["lesions_true"]}
    test_ens = next(e for e in two["ensembles"] if e["key"] == "sim_ft")
    for p, d in test_ens["patient_dice_3d"].items():
        assert ens_rows[p] == pytest.approx(d, abs=1e-9)
    sim = next(r for r in two["extra"]["rows"] if r["key"] == "sim_ft")
    assert sim["dice_3d_ensemble"] == pytest.approx(np.mean(list(ens_rows.values())))
    assert sim["ensemble_wilcoxon_p_vs_sim"] is None
    pool = two["extra"]["finetune_vs_not_ensemble"]["pooled"]
    assert pool["other_rows"] == ["25d_applied"]
    assert pool["patients"] == len(ens_rows) + len(test_ens["patient_dice_3d"])
    md = (out / "table2.md").read_text()
    assert "seed ensemble: extra (%)" in md and "test + extra patients, seed ensemble" in md
    # the applied row of the shared pre-training is one model: seed 1 gets seed 0's extra rows and kept maps, not a
    # second reading, and its seed ensemble (copies of one model) is that model's reading, not a third one
    assert not (out / "extra" / "dataset_igtv" / "seed1" / "25d_applied").exists()
    applied = next(r for r in two["extra"]["rows"] if r["key"] == "25d_applied")
    assert applied["dice_3d_per_seed"][0] == applied["dice_3d_per_seed"][1]
    maps = [sorted(p.name for p in (runs_s / "25d_applied" / "probabilities" / "all").glob("*.npz"))
            for runs_s in (out / "runs" / "seed0", out / "runs" / "seed1")]  # fmt: skip
    assert maps[0] and maps[0] == maps[1]
    saved_app = out / "extra" / "dataset_igtv" / "ensemble" / "25d_applied" / "extra_result.json"
    assert applied["dice_3d_ensemble"] == applied["dice_3d_per_seed"][0]
    assert not saved_app.exists() and not (out / "ensembles" / "25d_applied").exists()
    applied_ens = next(e for e in two["ensembles"] if e["key"] == "25d_applied")
    seed0 = json.loads((out / "runs" / "seed0" / "25d_applied" / "row_result.json").read_text())["whole_rows"]
    assert applied_ens["patient_dice_3d"] == {p["patient"]: p["dice_3d"] for p in seed0}
    # one pre-training shared by the seeds (Budget.shared_pretrain): both seeds fine-tune from it, and seed 1's
    # applied row is seed 0's model and reading, carried over (its checkpoint byte for byte, its kept maps valid)
    runs = out / "runs"
    assert (runs / "pretrain" / "best.pt").exists() and not list(runs.glob("seed*/pretrain"))
    for s in (0, 1):
        assert yaml.safe_load((runs / f"seed{s}" / "sim_ft" / "config.yaml").read_text())["init"] == str(
            runs / "pretrain" / "best.pt"
        )
    a0, a1 = (json.loads((runs / f"seed{s}" / "25d_applied" / "row_result.json").read_text()) for s in (0, 1))
    assert a0["seed"] == 0 and "same_model_as_seed" not in a0
    assert (a1["seed"], a1["same_model_as_seed"], a1["seconds"]) == (1, 0, 0.0)
    assert json.dumps(a1["whole_rows"]) == json.dumps(a0["whole_rows"])
    ckpts = [runs / f"seed{s}" / "25d_applied" / "best.pt" for s in (0, 1)]
    assert ckpts[0].read_bytes() == ckpts[1].read_bytes()
    applied = next(r for r in two["rows"] if r["key"] == "25d_applied")
    assert applied["seeds"] == 2 and applied["whole_patient"]["dice_3d"]["std"] == 0.0
    assert "one pre-training, seed 0, fine-tuned by each" in md


def _finetune_variant():
    """benchmarks/finetune_variant.py as a module (benchmarks/ is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "finetune_variant.py"
    spec = importlib.util.spec_from_file_location("finetune_variant", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table2_rows_are_checked_before_any_work(tmp_path, capsys):
    """`igtv table2 --rows` names the rows to run; an unknown key is refused with the valid keys, before any data
    is generated."""
    from igtv.cli import main
    from igtv.experiments.table2 import run_table2

    with pytest.raises(ValueError, match=r"unknown Table II row\(s\) \['sim'\].*'sim_ft'"):
        run_table2(tmp_path / "t2", budget="smoke", rows=("sim", "pet41"))
    assert not (tmp_path / "t2").exists()
    assert main(["table2", "--out", str(tmp_path / "t2c"), "--budget", "smoke", "--rows", "pet41,bogus"]) != 0
    assert "bogus" in capsys.readouterr().err
    assert not (tmp_path / "t2c").exists()


def test_table2_default_rows_follow_the_budget():
    """With no ``--rows`` the quick budget runs every row but the MONAI U-Net (which fails at that budget and costs
    ~8 of its 90 minutes); ``all`` runs every row; a budget without a default list runs every row; a list is kept
    in Table II's order."""
    from igtv.experiments.table2 import BUDGETS, select_rows
    from igtv.experiments.table2_report import ROWS

    every = [r.key for r in ROWS]
    quick = [r.key for r in select_rows(None, BUDGETS["quick"])]
    assert "unet" in every and "unet" not in quick and len(quick) == len(every) - 1
    assert {"sim_ft", "25d_ft", "pet41", "2d_applied"} <= set(quick)
    assert [r.key for r in select_rows(("all",), BUDGETS["quick"])] == every
    assert [r.key for r in select_rows(None, BUDGETS["smoke"])] == every
    assert [r.key for r in select_rows(("pet41", "unet", "sim_ft"), BUDGETS["quick"])] == ["sim_ft", "unet", "pet41"]
    with pytest.raises(ValueError, match="bogus"):
        select_rows(("bogus",), BUDGETS["quick"])
