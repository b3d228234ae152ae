"""Statistics of the tables: patient-level bootstrap confidence intervals and the paired Wilcoxon test."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np


def bootstrap_ci(
    groups: dict[str, list], statistic: Callable[[list], dict[str, float]], n: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Patient-level bootstrap: resample the groups (patients) with replacement ``n`` times, apply ``statistic``
    to the pooled members, and return the 2.5 / 97.5 percentiles per key. Deterministic for a given seed."""
    keys = sorted(groups)
    if not keys or n <= 0:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = defaultdict(list)
    for _ in range(n):
        pick = rng.integers(0, len(keys), len(keys))
        members = [m for i in pick for m in groups[keys[i]]]
        for k, v in statistic(members).items():
            draws[k].append(v)
    out = {}
    for k, vals in draws.items():
        a = np.asarray(vals, dtype=np.float64)
        a = a[np.isfinite(a)]
        out[k] = (float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))) if a.size else (np.nan, np.nan)
    return out


def wilcoxon_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of the paired Wilcoxon signed-rank test of ``a`` against ``b`` (SciPy); NaN with fewer than two
    pairs or when every difference is zero."""
    from scipy.stats import wilcoxon

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(d) < 2 or np.allclose(d, 0):
        return float("nan")
    return float(wilcoxon(a, b).pvalue)
