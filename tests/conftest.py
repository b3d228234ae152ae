from __future__ import annotations

import pytest

from igtv.data.phantom import PhantomConfig
from igtv.data.phantom_io import generate_cohort

SMALL = dict(matrix_scale=0.125, pclt_size=64, z_extent_mm=200.0)


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """Three 64x64 IGTV-cohort patients, generated once per test session."""
    cfg = PhantomConfig(cohort="igtv", patients=3, seed=7, **SMALL)
    out = tmp_path_factory.mktemp("phantom_igtv")
    return cfg, generate_cohort(cfg, out, preview=True, progress=False)
