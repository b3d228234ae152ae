"""The README's first command, shrunk (``--quick``): phantom -> prepare -> pretrain -> finetune -> predict."""

from __future__ import annotations

import json

from igtv.cli import main


def test_quick_demo_runs_every_stage(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quick", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    for stage in ("[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]", "best validation IoU", "report.html"):
        assert stage in out
    demo = tmp_path / "demo"
    assert (demo / "dataset_igtv" / "splits.json").exists() and (demo / "dataset_igtv" / "dataset_report.png").exists()
    report = json.loads((demo / "run_finetune" / "transfer_report.json").read_text())
    assert report["loaded"] and report["new"]  # stage 2 carried stage 1 over and added SIM
    assert (demo / "run_finetune" / "best.pt").exists()
    predict = demo / "predict"
    for name in ("RTSTRUCT_igtv.dcm", "mask.nii.gz", "stats.json", "report.html"):
        assert (predict / name).exists(), name
    stats = json.loads((predict / "stats.json").read_text())
    assert 0.0 <= stats["compare"]["dice"] <= 1.0  # against the unseen patient's true IGTV
