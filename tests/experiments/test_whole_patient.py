"""Whole-patient evaluation: lesion detection, rule effects, threshold volumes, and the pipeline on a phantom."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from igtv.evaluation.baselines import threshold_volume
from igtv.evaluation.metrics import lesion_detection, overlap_volumes_cc
from igtv.experiments.whole_patient import (
    NO_RULES,
    WholePatientConfig,
    evaluate_patient,
    evaluate_whole_patients,
    refine_effects,
    rule_effects,
    summarize_patients,
)
from igtv.geometry import Geometry
from igtv.inference.lesions import PostprocessConfig, component_verdicts, postprocess, thorax_region


def test_lesion_detection_counts():
    truth = np.zeros((10, 20, 20), bool)
    truth[2:4, 2:5, 2:5] = True  # lesion A: hit
    truth[6:8, 12:15, 12:15] = True  # lesion B: missed
    pred = np.zeros_like(truth)
    pred[3:5, 3:6, 3:6] = True  # overlaps A
    pred[7, 2:4, 15:18] = True  # touches nothing: false lesion of 6 voxels
    d = lesion_detection(pred, truth, voxel_cc=0.5)
    assert d == {"lesions_true": 2, "lesions_hit": 1, "lesions_missed": 1, "lesions_predicted": 2,
                 "false_lesions": 1, "false_lesion_cc": 3.0, "missed_lesion_cc": 9.0}  # fmt: skip
    # autoPET's false-negative volume is B's 18 voxels; the voxel-wise one also counts the 14 of A not covered
    assert overlap_volumes_cc(pred, truth, (1.0, 1.0, 1.0))["false_negative_cc"] == pytest.approx((18 + 14) / 1000)
    node = np.zeros_like(truth)
    node[7:9, 0:3, 16:19] = True  # a marked node under the false lesion's corner
    assert lesion_detection(pred, truth, 0.5, node)["false_lesions_avoid"] == 1
    node[:] = False
    node[3, 3, 3] = True  # marked voxels under a true lesion's component count nothing: it is no false lesion
    assert lesion_detection(pred, truth, 0.5, node)["false_lesions_avoid"] == 0


def test_whole_patient_counts_false_lesions_on_marked_nodes(tmp_path):
    """A prepared patient with avoid.nii.gz: each false lesion touching a marked node is counted apart, summed over
    patients; without the file the count is unknown (None), not 0."""
    from igtv.geometry import save_nifti

    geom = Geometry((8, 32, 32), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    labels = np.zeros(geom.shape_zyx, np.uint8)
    labels[2:6, 4:10, 4:10] = 1
    node = np.zeros(geom.shape_zyx, bool)
    node[2:5, 20:25, 20:25] = True
    vol = tmp_path / "volumes" / "P1"
    vol.mkdir(parents=True)
    save_nifti(vol / "ct_hu.nii.gz", np.full(geom.shape_zyx, 40.0, np.float32), geom)
    save_nifti(vol / "pet_suv.nii.gz", np.where((labels > 0) | node, 8.0, 1.0).astype(np.float32), geom)
    save_nifti(vol / "labels.nii.gz", labels, geom)
    pred = (labels > 0) | node
    pred[0, 28:30, 28:30] = True  # a false lesion on no node
    cfg = WholePatientConfig(postprocess=NO_RULES)
    unknown = evaluate_patient(lambda *a, **k: pred.copy(), vol, cfg)["row"]
    save_nifti(vol / "avoid.nii.gz", node, geom)
    row = evaluate_patient(lambda *a, **k: pred.copy(), vol, cfg)["row"]
    assert (unknown["false_lesions"], unknown["false_lesions_avoid"]) == (2, None)
    assert (row["false_lesions"], row["false_lesions_avoid"]) == (2, 1)
    assert summarize_patients([row, row], [{}, {}], n_boot=10)["false_lesions_avoid"] == 2
    assert summarize_patients([row, unknown], [{}, {}], n_boot=10)["false_lesions_avoid"] == 1
    assert summarize_patients([unknown], [{}], n_boot=10)["false_lesions_avoid"] is None


def _thorax(shape=(12, 64, 64)):
    """CT: body, two lungs, heart between; returns (ct, geom)."""
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    ct = np.full(shape, -1000.0, np.float32)
    ct[:, 6:58, 4:60] = 40.0  # body
    ct[2:10, 14:50, 8:28] = -850.0  # right lung
    ct[2:10, 14:50, 36:56] = -850.0  # left lung
    return ct, Geometry(shape, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0))


def test_thorax_region_and_rules():
    ct, geom = _thorax()
    region = thorax_region(ct, geom, margin_mm=4.0)
    assert region[5, 30, 32]  # mediastinum between the lungs
    assert not region[0].any() and not region[11].any()  # slices without lung
    assert not region[5, 2, 2]  # outside the body
    mask = np.zeros(ct.shape, bool)
    mask[4:7, 28:33, 30:34] = True  # mediastinal: kept
    mask[0:2, 30:34, 30:34] = True  # below the lungs (abdomen): dropped by the thorax rule
    mask[5, 20:23, 12:15] = True  # inside the lung air: dropped as air
    pet = np.where(mask, 5.0, 1.0).astype(np.float32)  # three foci
    cfg = PostprocessConfig(min_volume_cc=0.0, thorax_margin_mm=4.0, min_mean_hu=-500.0)
    kept, dropped = postprocess(mask, pet, geom, cfg, ct)
    assert kept[5, 30, 32] and not kept[0].any() and not kept[5, 21, 13]
    assert sorted(d["rule"] for d in dropped) == ["min_mean_hu", "thorax_margin_mm"]
    truth = np.zeros_like(mask)
    truth[0:2, 30:34, 30:34] = True  # pretend the abdominal one was true: the rule then cost true positives
    labels, verdicts = component_verdicts(mask, pet, geom, cfg, ct)
    eff = rule_effects(mask, truth, labels, verdicts, geom.voxel_volume_cc)
    assert eff["thorax_margin_mm"]["tp_removed_cc"] == pytest.approx(32 * geom.voxel_volume_cc)
    assert eff["min_mean_hu"]["fp_removed_cc"] == pytest.approx(9 * geom.voxel_volume_cc)


def test_refine_effects_split_what_the_pet_completion_added_by_the_truth():
    kept = np.zeros((4, 10, 10), bool)
    kept[1:3, 2:5, 2:5] = True
    truth = np.zeros_like(kept)
    truth[0:3, 2:5, 2:5] = True  # the truth goes one slice further than what was kept
    pred = kept.copy()
    pred[0, 2:5, 2:5] = True  # growth into the truth: 9 voxels
    pred[1:3, 5, 2:5] = True  # and beside it: 6 voxels
    assert refine_effects(kept, pred, truth, 0.5) == {"refine_tp_added_cc": 4.5, "refine_fp_added_cc": 3.0}
    assert refine_effects(kept, kept, truth, 0.5) == {"refine_tp_added_cc": 0.0, "refine_fp_added_cc": 0.0}


def test_rois_the_qc_excluded_are_ignored_and_all_rois_are_scored_beside(tmp_path):
    """A patient with a kept ROI and one the QC excluded: a prediction of the kept ROI alone scores 1 (the excluded
    one is neither missed nor, when contoured, false), and the all-ROI Dice beside it counts the excluded ROI."""
    import json

    from igtv.geometry import save_nifti

    geom = Geometry((8, 32, 32), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    labels = np.zeros(geom.shape_zyx, np.uint8)
    labels[2:6, 4:10, 4:10] = 1  # kept: 144 voxels
    labels[2:6, 20:26, 20:26] = 2  # excluded by the QC: 144 voxels
    vol = tmp_path / "volumes" / "P1"
    vol.mkdir(parents=True)
    save_nifti(vol / "ct_hu.nii.gz", np.full(geom.shape_zyx, 40.0, np.float32), geom)
    save_nifti(vol / "pet_suv.nii.gz", np.where(labels > 0, 8.0, 1.0).astype(np.float32), geom)
    save_nifti(vol / "labels.nii.gz", labels, geom)
    (tmp_path / "patients").mkdir()
    rois = [{"roi": 1, "status": "kept"}, {"roi": 2, "status": "excluded"}]
    (tmp_path / "patients" / "P1.json").write_text(json.dumps({"rois": rois}))
    cfg = WholePatientConfig(postprocess=NO_RULES)

    def predicting(mask):
        return lambda ct, pet, geom, truth, region=None: mask.copy()

    row = evaluate_patient(predicting(labels == 1), vol, cfg, tmp_path)["row"]
    assert row["dice_3d"] == 1.0 and row["false_negative_cc"] == 0.0 and row["qc_excluded_rois"] == 1
    assert row["dice_3d_all_lesions"] == pytest.approx(2 * 144 / (144 + 288))
    row = evaluate_patient(predicting(labels > 0), vol, cfg, tmp_path)["row"]
    assert row["dice_3d"] == 1.0 and row["false_positive_cc"] == 0.0 and row["false_lesions"] == 0
    assert row["dice_3d_all_lesions"] == 1.0
    wide = labels > 0
    wide[2:6, 19:27, 19:27] = True  # the excluded lesion contoured one voxel past its ROI: still not false
    row = evaluate_patient(predicting(wide), vol, cfg, tmp_path)["row"]
    assert row["dice_3d"] == 1.0 and row["false_positive_cc"] == 0.0 and row["false_lesions"] == 0
    wide[2:6, 9:20, 9:20] = True  # ... unless it joins a scored ROI: then only the excluded ROI's voxels are left out
    row = evaluate_patient(predicting(wide), vol, cfg, tmp_path)["row"]
    assert row["false_positive_cc"] > 0 and row["dice_3d"] < 1.0
    every = evaluate_patient(predicting(labels == 1), vol, WholePatientConfig(postprocess=NO_RULES,
                             ignore_qc_excluded=False), tmp_path)["row"]  # fmt: skip
    assert every["dice_3d"] == pytest.approx(2 * 144 / (144 + 288)) and every["qc_excluded_rois"] == 0


def test_threshold_volume_stays_in_the_box():
    pet = np.ones((10, 40, 40), np.float32)
    pet[4:6, 10:14, 10:14] = 10.0  # lesion
    pet[4:6, 30:34, 30:34] = 10.0  # hot spot far away
    truth = pet >= 10.0
    truth[:, 25:, 25:] = False
    m = threshold_volume(pet, truth, (3.0, 1.0, 1.0), "pet41", margin_mm=5.0)
    assert m[4, 11, 11] and not m[4, 31, 31]
    assert m.sum() == truth.sum()


@pytest.mark.slow
def test_whole_patient_pipeline_on_the_phantom(prepared, tmp_path):
    """The 41 % threshold given the lesion boxes contours the phantom's IGTVs: a 3D Dice well above chance, and
    the paper-protocol slice rows are read from the same masks."""
    _, prep = prepared
    s = evaluate_whole_patients(
        None, prep.out_dir, tmp_path, WholePatientConfig(split="train", bootstrap=50), threshold_rule="pet41"
    )
    w = s["whole_patient"]
    assert w["patients"] >= 1 and w["dice_3d"]["mean"] > 0.4
    assert w["lesions_hit"] >= 1
    assert (tmp_path / "whole_patient.csv").exists() and (tmp_path / "whole_patient.json").exists()
    assert s["paper_protocol_slices"]["slices"] > 0


def test_split_all_scores_every_listed_patient(prepared, tmp_path):
    """``--split all`` scores the train, val and test patients together (a cohort no training saw)."""
    from igtv.data.cases import split_patients

    _, prep = prepared
    s = evaluate_whole_patients(
        None, prep.out_dir, tmp_path, WholePatientConfig(split="all", bootstrap=20), threshold_rule="pet41"
    )
    listed = set()
    for split in ("train", "val", "test"):
        listed |= set(split_patients(prep.out_dir, split))
    with_volumes = {p for p in listed if (prep.out_dir / "volumes" / p / "labels.nii.gz").exists()}
    assert s["whole_patient"]["patients"] == len(with_volumes) >= 2
    assert s["whole_patient"]["dice_3d"]["mean"] > 0.4


def test_candidate_rules_are_measured_alone():
    from igtv.experiments.whole_patient import CANDIDATE_RULES, NO_RULES

    off = {"min_volume_cc": 0.0, "min_suv_max": 0.0, "thorax_margin_mm": 0.0, "min_mean_hu": -1024.0,
           "max_bone_fraction": 1.0, "max_surround_suv_fraction": 0.0, "max_cold_core_share": 0.0}  # fmt: skip
    assert NO_RULES.lung_focal_suv_fraction == 0.0  # the focal rule's lung-density share is measured with it
    assert NO_RULES.focal_connect_suv_fraction == 0.0  # and so is its connected surround
    assert all(getattr(NO_RULES, k) == v for k, v in off.items())
    for name, cfg in CANDIDATE_RULES.items():
        changed = [k for k, v in off.items() if getattr(cfg, k) != v]
        assert changed == [name.split("=")[0]], name


def test_masks_of_a_patients_files_are_computed_once_per_process(tmp_path):
    """The thorax region and the tile region (igtv.experiments.mask_cache): once per files and parameters; a file
    rewritten at the same path, or other parameters, compute again; None is returned and not kept."""
    import os

    from igtv.experiments.mask_cache import cached_mask

    ct, pet = tmp_path / "ct_hu.nii.gz", tmp_path / "pet_suv.nii.gz"
    ct.write_bytes(b"first")
    pet.write_bytes(b"pet")
    calls = []

    def compute():
        calls.append(1)
        return np.arange(60).reshape(3, 4, 5) % 3 == 0

    first = cached_mask([ct], ("thorax", 10.0), compute)
    again = cached_mask([ct], ("thorax", 10.0), compute)
    assert len(calls) == 1 and again.dtype == bool and np.array_equal(first, again)
    cached_mask([ct], ("thorax", 5.0), compute)  # another margin is another region
    cached_mask([ct, pet], ("thorax", 10.0), compute)  # other files, another mask
    assert len(calls) == 3
    ct.write_bytes(b"second, longer")  # a new CT at the same path is not served the old region
    os.utime(ct, ns=(1, 1))
    cached_mask([ct], ("thorax", 10.0), compute)
    assert len(calls) == 4
    pet.write_bytes(b"another pet")
    os.utime(pet, ns=(2, 2))
    cached_mask([ct, pet], ("thorax", 10.0), compute)
    assert len(calls) == 5
    assert cached_mask([ct], ("none",), lambda: calls.append(1)) is None
    assert cached_mask([ct], ("none",), lambda: calls.append(1)) is None and len(calls) == 7


@pytest.mark.slow
def test_evaluation_limits_tiles_to_the_thorax_region_as_predict_does(prepared):
    """With ``region_tiles`` the model sees the region ``igtv predict`` predicts tiles of (the thorax rule's region
    within reach of uptake the SUV rule keeps); the phantom's lesions lie inside it."""
    from pathlib import Path

    from igtv.experiments.whole_patient import evaluate_patient

    _, prep = prepared
    vol = next(p for p in sorted((Path(prep.out_dir) / "volumes").iterdir()) if (p / "labels.nii.gz").exists())
    seen = []

    def predict_raw(ct, pet, geom, truth, region=None):
        seen.append(region)
        assert region is None or region.shape == ct.shape
        return truth

    on = evaluate_patient(predict_raw, vol, WholePatientConfig())
    off = evaluate_patient(predict_raw, vol, WholePatientConfig(region_tiles=False))
    assert seen[1] is None and seen[0] is not None and seen[0].any()
    assert on["row"]["dice_3d"] == off["row"]["dice_3d"] > 0.5  # same raw mask, same scoring


def test_ensemble_reuses_each_members_cached_maps_and_scores_like_its_member(prepared, tmp_path):
    """Whole-patient evaluation keeps each checkpoint's maps beside it; an ensemble of two identical checkpoints
    reads the first one's maps back (not recomputed) and scores exactly as that checkpoint alone."""
    from tests.inference.conftest import write_test_checkpoint

    _, prep = prepared
    a = write_test_checkpoint(tmp_path / "a" / "best.pt")
    b = write_test_checkpoint(tmp_path / "b" / "best.pt")
    cfg = WholePatientConfig(split="all", bootstrap=20, cache_probabilities=True)
    one = evaluate_whole_patients(a, prep.out_dir, None, cfg, "cpu", progress=False)
    cached = sorted((tmp_path / "a" / "probabilities" / "all").glob("*.npz"))
    assert len(cached) == one["whole_patient"]["patients"] >= 2
    stamps = [p.stat().st_mtime_ns for p in cached]
    # the default batch on a CPU is 16 tiles, as before it became automatic: maps cached then stay valid
    assert all(json.loads(str(np.load(p)["key"]))["batch_size"] == 16 for p in cached)
    both = evaluate_whole_patients([a, b], prep.out_dir, None, cfg, "cpu", progress=False)
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    assert len(list((tmp_path / "b" / "probabilities" / "all").glob("*.npz"))) == len(cached)
    assert [r["dice_3d"] for r in both["rows"]] == [r["dice_3d"] for r in one["rows"]]
    assert one["whole_patient"]["dice_3d"]["mean"] > 0.3  # the stand-in contours > 50 % of each candidate's SUVmax
    assert both["model"]["ensemble"] == "mean probability of 2 checkpoints"
    # another dataset whose patients have the same names (phantom pseudonyms repeat across cohorts) gets maps of
    # its own: it never reads this one's, and it does not overwrite them either
    import shutil

    other = tmp_path / "copy"
    shutil.copytree(prep.out_dir, other)
    evaluate_whole_patients(a, other, None, cfg, "cpu", progress=False)
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    everything = sorted((tmp_path / "a" / "probabilities" / "all").glob("*.npz"))
    assert len(everything) == 2 * len(cached)
    assert {p.name.rsplit("-", 1)[0] for p in everything} == {p.name.rsplit("-", 1)[0] for p in cached}
    evaluate_whole_patients(a, prep.out_dir, None, cfg, "cpu", progress=False)
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # the first dataset still reads its own


def test_threshold_override_rescores_the_cached_maps(prepared, tmp_path):
    """``WholePatientConfig.threshold`` (``igtv evaluate --threshold``) replaces the checkpoint's threshold and reuses
    the maps cached at another one: a threshold is applied to probabilities, it does not make new ones. A higher one
    predicts less (without the PET completion, which can grow a smaller seed further), so the false-negative volume
    grows and the false-positive volume does not."""
    from tests.inference.conftest import write_test_checkpoint

    _, prep = prepared
    a = write_test_checkpoint(tmp_path / "a" / "best.pt")
    post = replace(PostprocessConfig(), hull_fill_suv_fraction=0.0, grow_suv_fraction=0.0)
    cfg = WholePatientConfig(split="all", bootstrap=0, cache_probabilities=True, postprocess=post)
    base = evaluate_whole_patients(a, prep.out_dir, None, cfg, "cpu", progress=False)
    cached = sorted((tmp_path / "a" / "probabilities" / "all").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in cached]
    tight = evaluate_whole_patients(a, prep.out_dir, None, replace(cfg, threshold=0.99), "cpu", progress=False)
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    assert (base["model"]["threshold"], tight["model"]["threshold"]) == (0.5, 0.99)
    fn = [sum(r["false_negative_cc"] for r in s["rows"]) for s in (base, tight)]
    fp = [sum(r["false_positive_cc"] for r in s["rows"]) for s in (base, tight)]
    assert fn[1] > fn[0] and fp[1] <= fp[0] + 1e-9
