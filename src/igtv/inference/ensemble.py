"""Ensembles of checkpoints: the mean of their probability maps (nnU-Net's way of combining its folds).

Several trainings of one configuration with different seeds make different mistakes, above all different false
lesions; averaging their probabilities before thresholding keeps what they agree on. Every member runs the full
prediction (its own windows, input size and sliding window), so members may differ in architecture, but they must
agree on what the post-processing reads from a checkpoint: threshold, cold-lesion training and the QC's SUVmax.

Whole-patient evaluation can keep each checkpoint's maps (:func:`cached_probability`), so an ensemble of seeds that
were already scored costs only its post-processing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from igtv.io import atomic_path

AGREE = ("threshold", "cold_lesions", "min_suv_max")  # what post-processing reads from the checkpoint
MAX_MEMBERS = 256  # the running sum is uint16: 256 x 255 + 128 < 2**16


def model_paths(model_path: str | Path | Sequence[str | Path]) -> list[Path]:
    """One path or several, as a list."""
    paths = [model_path] if isinstance(model_path, (str, Path)) else list(model_path)
    if not paths:
        raise ValueError("no model checkpoint given")
    return [Path(p) for p in paths]


def load_models(
    model_path: str | Path | Sequence[str | Path],
    device: torch.device | str,
    preset: str | None = None,
    threshold: float | None = None,
):
    """Load one checkpoint or an ensemble; members must agree on :data:`AGREE` (the error names the one that
    does not). ``threshold`` replaces every member's probability threshold (None: their cards')."""
    from igtv.inference.model import load_model

    paths = model_paths(model_path)
    lms = [load_model(p, device, preset, threshold) for p in paths]
    for path, lm in zip(paths[1:], lms[1:], strict=True):
        for attr in AGREE:
            if getattr(lm, attr) != getattr(lms[0], attr):
                raise ValueError(
                    f"{path}: {attr} {getattr(lm, attr)!r} differs from {paths[0].name}'s {getattr(lms[0], attr)!r}; "
                    "an ensemble's members must share it" + (" (or pass --threshold)" if attr == "threshold" else "")
                )
    return lms


def describe_members(members: Sequence) -> dict:
    """The model facts of a report: the checkpoint's, or the first member's with the ensemble's size."""
    facts = members[0].describe()
    if len(members) > 1:
        facts["ensemble"] = f"mean probability of {len(members)} checkpoints"
        facts["ensemble_models"] = [m.describe()["model"] for m in members]
    return facts


def _rounded_mean(total: np.ndarray, n: int) -> np.ndarray:
    return ((total + n // 2) // n).astype(np.uint8)


def ensemble_probability(
    lms: Sequence, predict_one: Callable[[object], tuple[np.ndarray, list[dict]]]
) -> tuple[np.ndarray, list[dict]]:
    """Mean probability of the members, each predicted by ``predict_one(lm) -> (uint8 map, candidates)``, one
    member at a time (memory holds one map and a uint16 running sum; one member: its own map, nothing more).
    Candidates are those of the first member."""
    if not lms:
        raise ValueError("no model in the ensemble: no probability map to average")
    if len(lms) > MAX_MEMBERS:
        raise ValueError(f"an ensemble holds at most {MAX_MEMBERS} checkpoints, got {len(lms)}")
    if len(lms) == 1:
        return predict_one(lms[0])
    total, candidates = None, []
    for lm in lms:
        prob, cand = predict_one(lm)
        if total is None:
            total, candidates = prob.astype(np.uint16), cand
        else:
            total += prob
    return _rounded_mean(total, len(lms)), candidates


def cache_key(lm, settings: dict) -> str:
    """What a cached map depends on: the checkpoint file (size and mtime) and the prediction settings."""
    st = Path(lm.path).stat()
    return json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, **settings}, sort_keys=True)


def _saved_map(path: Path, key: str) -> np.ndarray | None:
    if path.exists():
        try:
            with np.load(path) as z:
                if str(z["key"]) == key:
                    return z["prob"]
        except (OSError, KeyError, ValueError):
            pass  # unreadable or from another version: recompute
    return None


def cached_probability(
    path: Path, key: str, compute: Callable[[], np.ndarray], legacy: Path | None = None
) -> np.ndarray:
    """The uint8 map saved at ``path`` if it was made with ``key``, else ``compute()``, saved atomically.

    ``legacy``: where an earlier version kept the map; read when ``path`` has none and its key matches (the key
    names the CT file, so another dataset's map never matches), then moved to ``path``."""
    prob = _saved_map(path, key)
    if prob is not None:
        return prob
    prob = _saved_map(legacy, key) if legacy is not None else None
    moved = prob is not None
    if prob is None:
        prob = compute()
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, prob=prob, key=np.array(key))
    if moved:
        legacy.unlink()
    return prob


def probability_cache_path(ckpt: Path, split: str, volume_dir: Path) -> Path:
    """Where a checkpoint keeps one patient's probability map: ``probabilities/<split>/<patient>-<dataset>.npz``
    beside it, ``<dataset>`` a short hash of the volume folder's absolute path. Patient folders are pseudonyms, and
    phantom cohorts made with different seeds reuse them (P111e357e is in two of them), so the patient's name alone
    made each cohort overwrite the other's maps."""
    dataset = hashlib.sha1(str(volume_dir.resolve().parent).encode()).hexdigest()[:8]
    return ckpt.parent / "probabilities" / split / f"{volume_dir.name}-{dataset}.npz"


def cached_patient_probability(
    ckpt: Path, split: str, volume_dir: Path, key: str, compute: Callable[[], np.ndarray]
) -> np.ndarray:
    """:func:`cached_probability` at :func:`probability_cache_path`; a map that versions before session 33 kept at
    ``probabilities/<split>/<patient>.npz`` is read (and moved to the new name) when its key matches."""
    legacy = ckpt.parent / "probabilities" / split / f"{volume_dir.name}.npz"
    return cached_probability(probability_cache_path(ckpt, split, volume_dir), key, compute, legacy)
