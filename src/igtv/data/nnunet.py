"""Export a prepared dataset in nnU-Net v2 raw format, so nnU-Net can be trained as a baseline on the same data.

``OUT/DatasetXXX_NAME/imagesTr/{case}_0000.nii.gz`` (CT, HU), ``{case}_0001.nii.gz`` (PET, SUV on the CT grid),
``labelsTr/{case}.nii.gz`` (1 = union of the ROIs that passed QC), test-split cases in ``imagesTs``/``labelsTs``,
and ``dataset.json`` (channel names ``CT`` -> nnU-Net's CT normalisation, ``PET`` -> z-score). Cases are the
dataset's pseudonyms; ``splits_final.json``-style folds are left to nnU-Net, our split is in ``igtv_splits.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from igtv.io import write_text_atomic


def export_nnunet(dataset: str | Path, out: str | Path, dataset_id: int = 501, name: str = "IGTV") -> Path:
    """Write ``out/Dataset{id:03d}_{name}``; returns its path. Needs a dataset prepared with volumes."""
    from igtv.geometry import load_nifti, save_nifti

    dataset = Path(dataset)
    if not (dataset / "splits.json").exists():
        raise FileNotFoundError(f"{dataset}/splits.json: not a dataset made by 'igtv prepare'")
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    splits = json.loads((dataset / "splits.json").read_text())
    target = Path(out) / f"Dataset{dataset_id:03d}_{name}"
    n_train = 0
    for split in ("train", "val", "test"):
        suffix = "Ts" if split == "test" else "Tr"
        for case in splits[split]:
            vol = dataset / "volumes" / case
            if not (vol / "labels.nii.gz").exists():
                raise FileNotFoundError(f"{vol}/labels.nii.gz: prepare the dataset with volumes (write_volumes)")
            record = json.loads((dataset / "patients" / f"{case}.json").read_text())
            kept = [r["roi"] for r in record["rois"] if r["status"] == "kept"]
            labels, geom = load_nifti(vol / "labels.nii.gz")
            ct, _ = load_nifti(vol / "ct_hu.nii.gz")
            pet, _ = load_nifti(vol / "pet_suv.nii.gz")
            save_nifti(target / f"images{suffix}" / f"{case}_0000.nii.gz", ct, geom)
            save_nifti(target / f"images{suffix}" / f"{case}_0001.nii.gz", pet.astype(np.float32), geom)
            save_nifti(target / f"labels{suffix}" / f"{case}.nii.gz", np.isin(labels, kept).astype(np.uint8), geom)
            n_train += suffix == "Tr"
    meta = {
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0, name: 1},
        "numTraining": n_train,
        "file_ending": ".nii.gz",
        "name": name,
        "description": "PET/CT exported by igtv prepare (PET in SUV resampled onto the CT grid)",
    }
    write_text_atomic(target / "dataset.json", json.dumps(meta, indent=1))
    write_text_atomic(target / "igtv_splits.json", json.dumps(splits, indent=1))
    return target
