"""Crash safety: runs killed with SIGKILL and started again lose nothing.

- training killed 5 times at seeded random points (while importing, mid-epoch, while a checkpoint is written) and
  resumed each time ends with the weights of an uninterrupted run, bitwise (that kernels compiled in a process and
  kernels loaded from numba's cache give the same bits is tests/models/test_scan_determinism.py's to check);
- a killed ``igtv phantom`` and a killed ``igtv prepare`` re-run to the outputs of uninterrupted runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from igtv.checkpoint import load_checkpoint
from igtv.config import save_config
from tests.training.test_training import tiny_cfg

pytestmark = pytest.mark.slow


def _rows(log: Path) -> int:
    return max(0, len(log.read_text().splitlines()) - 1) if log.exists() else 0


def _kill_when(proc: subprocess.Popen, ready, jitter_s: float, timeout_s: float = 120.0) -> bool:
    """SIGKILL ``proc`` ``jitter_s`` after ``ready()`` holds; False when it ended first."""
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() - t0 > timeout_s:
            proc.kill()
            raise AssertionError("the run made no progress")
        time.sleep(0.02)
    time.sleep(jitter_s)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def test_training_survives_five_sigkills(small_cohort, tmp_path):
    root = small_cohort[1].out_dir / "pclt"
    cfg = dataclasses.replace(tiny_cfg(root, epochs=6), evaluate_test=False)
    save_config(cfg, tmp_path / "cfg.yaml")
    # numba's cache as the rest of the suite leaves it: an empty one made the reference compile the scan kernels
    # (~60 s of this test's ~125 s on 2 cores) to check compiled against cached bits, which
    # tests/models/test_scan_determinism.py does in ~30 s
    env = dict(os.environ)
    ref = [sys.executable, "-m", "igtv.train", "--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "full")]
    subprocess.run(ref, check=True, capture_output=True, env=env)  # the uninterrupted reference, same conditions
    out = tmp_path / "killed"
    rng = random.Random(2026)
    kills, log = 0, out / "log.csv"
    # kill 1 while the process starts; kills 2-5 after epochs 1-4 were logged, with a random delay that lands
    # anywhere from the next epoch's first step to the middle of its checkpoint write
    plans = [(lambda: True, rng.uniform(0.5, 2.0))] + [
        ((lambda k=k: _rows(log) >= k), rng.uniform(0.0, 0.6)) for k in range(1, 5)
    ]
    for ready, jitter in plans:
        cmd = [sys.executable, "-m", "igtv.train", "--config", str(tmp_path / "cfg.yaml"), "--out", str(out)]
        if (out / "last.pt").exists():
            cmd.append("--resume")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        kills += _kill_when(proc, ready, jitter)
    cmd = [sys.executable, "-m", "igtv.train", "--config", str(tmp_path / "cfg.yaml"), "--out", str(out)]
    resume = ["--resume"] if (out / "last.pt").exists() else []
    done = subprocess.run(cmd + resume, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert kills == 5
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(out / "last.pt")
    assert a["epoch"] == b["epoch"] == cfg.train.epochs - 1
    # bitwise (same thread count in both runs: under pytest-xdist one thread each, see tests/conftest.py)
    for key in a["model"]:
        assert torch.equal(b["model"][key], a["model"][key]), key
    assert [round(r["train_loss"], 2) for r in a["history"]] == [round(r["train_loss"], 2) for r in b["history"]]
    assert not list(out.glob(".*.tmp*")), "a killed checkpoint write left a temporary file"


def _digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file; JSON records without their wall-clock ``seconds``."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in skip:
            data = p.read_bytes()
            if p.suffix == ".json":
                record = json.loads(data)
                if isinstance(record, dict):
                    record.pop("seconds", None)
                data = json.dumps(record, sort_keys=True).encode()
            out[str(p.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "igtv.cli", *args]


def test_killed_phantom_and_prepare_rerun_to_the_same_outputs(tmp_path):
    phantom = ["phantom", "--patients", "3", "--seed", "5", "--matrix-scale", "0.125", "--workers", "1", "--no-pclt"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_cli(*phantom, "--out", str(ref)), check=True, capture_output=True)
    proc = subprocess.Popen(_cli(*phantom, "--out", str(cut)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _kill_when(proc, lambda: (cut / "I0001" / "truth.json").exists(), 0.3), "phantom ended before the kill"
    subprocess.run(_cli(*phantom, "--out", str(cut)), check=True, capture_output=True)
    assert _digest(cut) == _digest(ref)

    prep = ["prepare", "--size", "64", "--workers", "1"]
    p_ref, p_cut = tmp_path / "p_ref", tmp_path / "p_cut"
    subprocess.run(_cli(*prep, "--dicom", str(ref), "--out", str(p_ref)), check=True, capture_output=True)
    p_cut.mkdir()
    (p_cut / ".pseudonym_key").write_bytes((p_ref / ".pseudonym_key").read_bytes())  # the same pseudonyms
    proc = subprocess.Popen(
        _cli(*prep, "--dicom", str(ref), "--out", str(p_cut)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    patients = p_cut / "patients"
    assert _kill_when(proc, lambda: patients.exists() and any(patients.iterdir()), 0.2), "prepare ended first"
    subprocess.run(_cli(*prep, "--dicom", str(ref), "--out", str(p_cut)), check=True, capture_output=True)
    a = json.loads((p_ref / "dataset.json").read_text())
    b = json.loads((p_cut / "dataset.json").read_text())
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert _digest(p_cut, ("dataset.json",)) == _digest(p_ref, ("dataset.json",)), "files differ"
    assert not list(p_cut.rglob(".*.tmp*"))
