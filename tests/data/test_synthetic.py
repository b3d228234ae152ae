"""Synthetic pre-training: ``igtv train`` with ``data.phantom_patients`` and no dataset generates a randomised
phantom GTV cohort straight into a prepared dataset in the run's cache (no DICOM), trains on it, and reuses the
cache."""

from __future__ import annotations

import yaml

from igtv.training.config import DataConfig, OptimConfig, RunConfig
from igtv.training.trainer import train


def test_train_generates_caches_and_reuses_a_randomised_phantom_cohort(tmp_path):
    cfg = RunConfig(
        model="cipa_2d_tiny",
        data=DataConfig(
            root="",
            mode="2d",
            sampler="patches",
            spacing_mm=0.0,
            patch=32,
            samples_per_epoch=4,
            eval_samples=4,
            phantom_patients=3,
            phantom_seed=5,
            phantom_matrix_scale=0.125,
        ),  # fmt: skip
        train=OptimConfig(batch_size=2, epochs=1, max_steps_per_epoch=2, amp="off"),
        device="cpu",
        evaluate_test=False,
    )
    result = train(cfg, tmp_path / "run", progress=False)
    cache = tmp_path / "run" / "phantom_cache"
    saved = yaml.safe_load((cache / "dataset" / "phantom.yaml").read_text())
    assert saved["randomize"] is True and saved["cohort"] == "gtv" and saved["patients"] == 3
    assert (cache / "dataset" / "dataset.json").exists() and not list(cache.rglob("*.dcm"))
    assert len(list((cache / "dataset" / "volumes").iterdir())) == 3
    run_cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert run_cfg["data"]["root"] == str(cache / "dataset")
    assert result.history and (tmp_path / "run" / "best.pt").exists()
    before = {p: p.stat().st_mtime_ns for p in (cache / "dataset" / "volumes").rglob("*.nii.gz")}
    assert len(before) == 12  # ct_hu, pet_suv, labels and avoid (the nodes) of 3 patients
    train(cfg, tmp_path / "run", resume=True, progress=False)  # a resumed run reuses its cache
    assert {p: p.stat().st_mtime_ns for p in (cache / "dataset" / "volumes").rglob("*.nii.gz")} == before
