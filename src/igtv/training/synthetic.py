"""Synthetic pre-training data: a randomised phantom GTV cohort, generated once and prepared into a cache that
``igtv train`` reuses (``data.phantom_patients`` > 0 with no ``data.root``; ``configs/pretrain_phantom.yaml``).

It is the SynthSeg idea (Billot et al.: a network trained only on synthetic images with randomised appearance
segments real scans) applied to PET/CT tumours, for when no PCLT20K-like GTV set is available.
"""

from __future__ import annotations

import os
from pathlib import Path

from igtv.training.config import DataConfig


def synthetic_dataset(data: DataConfig, cache_dir: str | Path, workers: int = 2, progress: bool = True) -> Path:
    """Simulate (or complete) the phantom GTV cohort ``data`` asks for straight into the prepared dataset
    ``cache_dir/dataset`` (PCLT20K windows; volumes for the patch sampler; no DICOM in between, see
    :mod:`igtv.phantom.dataset`). Returns the dataset folder."""
    from igtv.data.prepare import PrepareConfig
    from igtv.phantom.config import PhantomConfig
    from igtv.phantom.dataset import write_prepared_cohort

    dataset = Path(cache_dir) / "dataset"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not (dataset / "dataset.json").exists():
            raise ValueError(
                f"the synthetic phantom dataset {dataset} does not exist yet: run the same command once without "
                "torchrun (or --nproc) to generate it, then train on several processes"
            )
        return dataset
    cfg = PhantomConfig(
        cohort="gtv",
        patients=data.phantom_patients,
        seed=data.phantom_seed,
        randomize=data.phantom_randomize,
        matrix_scale=data.phantom_matrix_scale,
        write_pclt=False,
        workers=workers,
    )
    prep = PrepareConfig(
        preset=data.preset, roi="GTV", size=256 if data.phantom_matrix_scale >= 0.5 else 64, workers=workers
    )
    return write_prepared_cohort(cfg, dataset, prep, progress=progress).out_dir
