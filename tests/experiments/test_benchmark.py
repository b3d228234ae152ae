from __future__ import annotations

import pytest
import torch

from igtv.experiments.benchmark import BenchConfig, _bf16_ok, format_table, parallel_scan_torch, run_benchmark
from igtv.models.scan.reference import selective_scan_ref


@pytest.mark.parametrize("length", [37, 64, 1])
def test_parallel_scan_torch_matches_the_reference(length):
    """The comparison scan of ``igtv bench`` (Blelloch, padded to a power of two) computes the same scan."""
    g = torch.Generator().manual_seed(length)
    dim, groups, n = 12, 4, 8
    u = torch.randn(2, dim, length, generator=g)
    delta = torch.randn(2, dim, length, generator=g)
    A = -torch.exp(torch.randn(dim, n, generator=g))
    B = torch.randn(2, groups, n, length, generator=g)
    C = torch.randn(2, groups, n, length, generator=g)
    D = torch.randn(dim, generator=g)
    bias = torch.randn(dim, generator=g) * 0.1
    want = selective_scan_ref(u, delta, A, B, C, D, bias)
    got = parallel_scan_torch(u, delta, A, B, C, D, bias, channel_chunk=5)  # chunks that split a group
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_bench_scan_and_models_sections_measure_every_row():
    cfg = BenchConfig(quick=True, size=32, widths=("tiny",), sections=("scan", "models"))
    result = run_benchmark(cfg)
    stages = {r["stage"] for r in result["scan"]}
    assert stages == {"stage 1", "stage 2", "stage 3", "stage 4"}
    impls = {r["impl"] for r in result["scan"]}
    assert {"ref", "parallel_torch"} <= impls
    for r in result["scan"]:
        assert r["forward_ms"] > 0
        if r["impl"] == "ref":
            assert r["forward_vs_ref"] == pytest.approx(1.0)
    stage1 = result["scan"][1]  # the paper-size model (t: dims[0] = 96, ssm_ratio 2, 4 scan orders)
    assert (stage1["L"], stage1["D"]) == ((32 // 4) ** 2, 4 * 2 * 96)
    names = {(r["model"], r["pass"]) for r in result["models"]}
    assert ("cipa_2d_tiny", "forward") in names and ("cipa_25d_sim_tiny", "train step") in names
    assert all(r["img_per_s"] > 0 and r["gflops_dense"] > 0 for r in result["models"])
    table = format_table(result)
    assert "| stage 4 |" in table and "cipa_25d_sim_tiny" in table and "torch.mm fp32 peak" in table


@pytest.mark.slow
def test_bench_predict_and_prepare_run_the_cli_on_a_phantom_patient(tmp_path):
    cfg = BenchConfig(sections=("predict", "prepare"), min_slices=3, long_slices=4, matrix_scale=0.125, spacing_mm=8.0,
                      workdir=str(tmp_path), paper_model="cipa_25d_sim_tiny", demo_model="cipa_2d_tiny")  # fmt: skip
    result = run_benchmark(cfg)
    bf16 = _bf16_ok(torch.device("cpu"))  # paper size, paper size in bf16 (CPUs with AVX512-BF16), demo size, long
    assert [r["ct_slices"] >= 3 for r in result["predict"]] == [True] * (4 if bf16 else 3)
    assert "cipa_2d_tiny" in result["predict"][-1]["model"] and "cipa_2d_tiny" in result["predict"][-2]["model"]
    assert ("bf16" in result["predict"][1]["model"]) == bf16
    for r in result["predict"]:
        assert r["wall_s"] >= r["predict_s"] >= r["network_s"] + r["postprocess_s"] and r["network_s"] > 0
        assert r["contoured_cc"] >= 0
        assert 100 < r["peak_rss_mib"] < 8192  # the child's own peak (torch alone is > 100 MiB)
    assert result["prepare"][0]["patients_per_s"] > 0
    assert list(tmp_path.iterdir()) == []  # the temporary folder is removed
    assert "| network s | post-processing s |" in format_table(result)


def test_bench_phantom_section_times_the_routes_and_both_cohorts(tmp_path):
    cfg = BenchConfig(sections=("phantom",), matrix_scale=0.125, phantom_patients=1, workdir=str(tmp_path))
    result = run_benchmark(cfg)
    rows = {r["route"].split(" (")[0]: r for r in result["phantom"]}
    assert len(rows) == 5 and all(r["patients"] == 1 and r["seconds"] > 0 and r["ct_slices"] > 3 for r in rows.values())
    assert "simulation only, GTV cohort" in rows
    assert rows["`igtv phantom` + `igtv prepare`"]["seconds"] > rows["`igtv phantom`"]["seconds"]  # it includes it
    assert "patients/s per core" in format_table(result)
    assert list(tmp_path.iterdir()) == []


def test_bench_rejects_unknown_sections():
    with pytest.raises(ValueError, match="unknown benchmark section"):
        BenchConfig(sections=("scan", "gpu-magic"))
