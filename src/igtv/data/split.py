"""The patient-level split."""

from __future__ import annotations

import numpy as np


def patient_split(
    patients: list[str], fractions: tuple[float, float, float], seed: int, order: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Patient-level train/val/test split, deterministic for a given set of patients and seed: the one split
    function of igtv (``prepare``'s 70/15/15, the validation share of a PCLT20K train list, the phantom's PCLT20K
    lists).

    Patients are sorted, permuted by ``numpy.random.default_rng(seed)``, and cut test first, then validation; each
    split with a positive fraction gets at least one patient when there are enough patients for all of them.

    ``order`` maps each patient to the key it is sorted by before the seeded permutation. ``prepare`` passes the
    PatientID (held in memory, never written), so the split does not depend on the dataset's random pseudonym key:
    the same DICOM and seed give the same patients in each split on every run.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    ordered = sorted(patients, key=(lambda p: (order[p], p)) if order is not None else None)
    perm = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    n = len(perm)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= sum(f > 0 for f in fractions):  # every split non-empty when it can be
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_test = min(n_test, n)
    n_val = min(n_val, n - n_test)
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}
