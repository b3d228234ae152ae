from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from igtv.geometry import Geometry, fast_gzip_available, load_nifti, save_nifti
from igtv.io import atomic_path


def test_index_patient_round_trip():
    d = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    g = Geometry((5, 6, 7), (0.8, 0.9, 3.0), (-10.0, 20.0, -300.0), d)
    ijk = np.array([[1.0, 2.0, 3.0], [6.0, 0.0, 4.0]])
    assert np.allclose(g.patient_to_index(g.index_to_patient(ijk)), ijk)
    assert np.allclose(g.index_to_patient([0, 0, 0]), g.origin_mm)
    assert np.allclose(g.index_to_patient([1, 0, 0]), np.array(g.origin_mm) + 0.8 * np.array([0.0, -1.0, 0.0]))


def test_nifti_affine_matches_patient_coordinates(tmp_path):
    g = Geometry((4, 5, 6), (0.7, 0.8, 2.5), (-100.0, -50.0, -200.0))
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    save_nifti(tmp_path / "a.nii.gz", arr, g)
    back, g2 = load_nifti(tmp_path / "a.nii.gz")
    assert np.array_equal(back, arr)
    assert np.allclose(g2.origin_mm, g.origin_mm) and np.allclose(g2.spacing_mm, g.spacing_mm)
    import nibabel as nib

    ras = nib.load(str(tmp_path / "a.nii.gz")).affine @ np.array([3, 2, 1, 1.0])
    lps = g.index_to_patient([3, 2, 1])
    assert np.allclose(ras[:3], [-lps[0], -lps[1], lps[2]])


@pytest.mark.skipif(not fast_gzip_available(), reason="isal not installed")
@pytest.mark.parametrize("dtype", [np.int16, np.float32, bool])
def test_isal_gzip_nifti_reads_as_itks_own(tmp_path, dtype):
    """The ISA-L path writes the file ITK's compression writes, voxel for voxel and header for header, as a plain
    gzip stream that is the same bytes on every write (no name or time inside) and leaves no temporary file."""
    import gzip

    rng = np.random.default_rng(0)
    rotated = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    g = Geometry((7, 33, 20), (0.98, 0.98, 3.27), (-250.0, -180.5, -612.0), rotated)
    arr = (rng.normal(0, 300, g.shape_zyx) > 200 if dtype is bool else rng.normal(0, 300, g.shape_zyx)).astype(dtype)
    save_nifti(tmp_path / "itk.nii.gz", arr, g, fast_gzip=False)
    save_nifti(tmp_path / "fast.nii.gz", arr, g, fast_gzip=True)
    a, ga = load_nifti(tmp_path / "itk.nii.gz")
    b, gb = load_nifti(tmp_path / "fast.nii.gz")
    assert np.array_equal(a, b) and a.dtype == b.dtype and ga == gb
    assert np.array_equal(b, arr.astype(np.uint8) if dtype is bool else arr)
    raw_itk = gzip.decompress((tmp_path / "itk.nii.gz").read_bytes())
    assert gzip.decompress((tmp_path / "fast.nii.gz").read_bytes()) == raw_itk  # the same NIfTI inside
    first = (tmp_path / "fast.nii.gz").read_bytes()
    save_nifti(tmp_path / "fast.nii.gz", arr, g)  # the default takes the fast path when isal is there
    assert (tmp_path / "fast.nii.gz").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.nii.gz", "itk.nii.gz"]


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_import_is_light():
    code = "import sys, igtv, igtv.cli; print(any(m in sys.modules for m in ('torch', 'SimpleITK', 'matplotlib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_cli_help_lists_subcommands():
    from igtv.cli import build_parser

    text = build_parser().format_help()
    for name in ("phantom", "demo", "model-info"):
        assert name in text
    out = subprocess.run([sys.executable, "-m", "igtv.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "igtv" in out.stdout
