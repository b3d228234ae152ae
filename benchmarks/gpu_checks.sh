#!/usr/bin/env bash
# Every GPU check of igtv in one go, each step time-capped, every result written under OUT as soon as it exists:
#   1. the CUDA tests (pytest -m gpu: Triton scan against the reference, launch settings, the tiny network);
#   2. benchmarks/tune_triton.py: the Triton scan's launch settings swept at CIPA-T's stage sizes;
#   3. with VMAMBA_SRC (VMamba's kernels/selective_scan), its authors' CUDA scan built and timed beside ours;
#   4. benchmarks/bench_gpu.py: CIPA-T at 512x512, inference and training img/s at batch 1 / 4 / 8;
#   5. igtv bench --device cuda (scan and models, then predict and prepare).
# Usage: benchmarks/gpu_checks.sh [OUT] [VMAMBA_SRC]    (7 minutes on one H200, session 26; there the predict and
# prepare step did not finish in its 130 s: on a GPU, post-processing and writing run on the host. VMamba's sources
# need two CUB names replaced to build with CUDA 13: see docs/performance.md, *Latest GPU table*.)
set -u
OUT=${1:-gpu_out}
VM=${2:-}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
t0=$SECONDS
step() { echo "[$((SECONDS - t0)) s] $*" | tee -a "$OUT/steps.log"; }

step "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nproc
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } > "$OUT/machine.txt" 2>&1
if [ -n "$VM" ]; then
  (timeout 330 nice -n 5 python3 benchmarks/vmamba_kernel.py build "$VM" /tmp/vmamba_build > "$OUT/vmamba_build.log" 2>&1
   echo "exit $?" >> "$OUT/vmamba_build.log") &
fi
step "CUDA tests"
timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/models/test_scan.py tests/models/test_cipa.py \
  > "$OUT/gpu_tests.log" 2>&1
step "Triton launch sweep"
timeout 150 python3 benchmarks/tune_triton.py --max-seconds 55 --json "$OUT/tune.json" > "$OUT/tune.md" 2>&1
if [ -n "$VM" ]; then
  step "VMamba kernel: waiting for its build"
  wait
  timeout 60 python3 benchmarks/vmamba_kernel.py compare "$VM" /tmp/vmamba_build > "$OUT/vmamba.md" 2>&1
fi
step "CIPA-T img/s"
timeout 50 python3 benchmarks/bench_gpu.py --batch 1 4 8 --skip-ref-model > "$OUT/bench_gpu.md" 2>&1
step "igtv bench: scan, models"
timeout 120 python3 -m igtv.cli bench --device cuda --sections scan,models --quick --json "$OUT/bench_models.json" \
  > "$OUT/bench_models.md" 2>&1
step "igtv bench: predict, prepare"
timeout 330 python3 -m igtv.cli bench --device cuda --sections predict,prepare --json "$OUT/bench_predict.json" \
  > "$OUT/bench_predict.md" 2>&1
step "done"
