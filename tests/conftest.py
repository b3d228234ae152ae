from __future__ import annotations

import os

# Under pytest-xdist each worker gets one thread (torch, OpenMP, MKL, numba, and the subprocesses the tests start):
# two workers with two threads each oversubscribe a 2-core machine and run the suite far slower than 2x.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import pytest  # noqa: E402

from igtv.phantom.cohort import generate_cohort
from igtv.phantom.config import PhantomConfig


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


SMALL = dict(matrix_scale=0.125, pclt_size=64, z_extent_mm=200.0)


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """Three 64x64 IGTV-cohort patients, generated once per test session."""
    cfg = PhantomConfig(cohort="igtv", patients=3, seed=7, **SMALL)
    out = tmp_path_factory.mktemp("phantom_igtv")
    return cfg, generate_cohort(cfg, out, preview=True, progress=False)


@pytest.fixture(scope="session")
def qc_cohort(tmp_path_factory):
    """Four 128x128 IGTV-cohort patients (seed 7: kept and cold ROIs mixed), DICOM only."""
    cfg = PhantomConfig(cohort="igtv", patients=4, seed=7, matrix_scale=0.25, z_extent_mm=200.0, write_pclt=False)
    out = tmp_path_factory.mktemp("phantom_qc")
    return cfg, generate_cohort(cfg, out, progress=False)


@pytest.fixture(scope="session")
def prepared(qc_cohort, tmp_path_factory):
    """``igtv prepare`` (LUCID preset, 64 px PNGs) of the QC cohort."""
    from igtv.data.prepare import PrepareConfig, prepare_dataset

    out = tmp_path_factory.mktemp("prepared")
    cfg = PrepareConfig(size=64, workers=1)
    return cfg, prepare_dataset(qc_cohort[1].out_dir, out, cfg, progress=False)
