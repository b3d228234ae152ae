#!/bin/bash
# Issue 18: stage 1 on randomised phantom data vs none vs realistic phantom GTV data (the demo), same fine-tuning,
# scored whole-patient on 12 unseen phantom IGTV patients. Needs a finished `make demo` in $DEMO (default demo_out).
# About an hour on 2 CPU cores. Writes under $OUT (default /tmp/synth).
set -e
cd "$(dirname "$0")/.."
mkdir -p "${OUT:-/tmp/synth}"
B=.venv/bin
T0=$(date +%s)
$B/igtv phantom --out ${OUT:-/tmp/synth}/ev99 --patients 12 --seed 99 --cohort igtv --no-pclt --workers 2 > ${OUT:-/tmp/synth}/ev99.log 2>&1
$B/python -c "
from igtv.data.prepare import PrepareConfig, prepare_dataset
from igtv.phantom.config import PHANTOM_PSEUDONYM_KEY
prepare_dataset('${OUT:-/tmp/synth}/ev99', '${OUT:-/tmp/synth}/ev99_ds', PrepareConfig(split=(0.0, 0.0, 1.0), size=256, workers=2), progress=False, pseudonym_key=PHANTOM_PSEUDONYM_KEY)
" >> ${OUT:-/tmp/synth}/ev99.log 2>&1
echo "ev99 ready $(( $(date +%s) - T0 )) s"
$B/igtv train --config pretrain_phantom.yaml --out ${OUT:-/tmp/synth}/pre > ${OUT:-/tmp/synth}/pre.log 2>&1
echo "synthetic pretrain done $(( $(date +%s) - T0 )) s"
$B/igtv finetune --config demo_finetune.yaml --data ${DEMO:-demo_out}/dataset_igtv --init ${OUT:-/tmp/synth}/pre/best.pt --out ${OUT:-/tmp/synth}/ft > ${OUT:-/tmp/synth}/ft.log 2>&1
echo "finetune done $(( $(date +%s) - T0 )) s"
$B/igtv train --config demo_finetune.yaml --data ${DEMO:-demo_out}/dataset_igtv --out ${OUT:-/tmp/synth}/scratch > ${OUT:-/tmp/synth}/scratch.log 2>&1
echo "scratch done $(( $(date +%s) - T0 )) s"
for m in demo:${DEMO:-demo_out}/run_finetune/best.pt synth:${OUT:-/tmp/synth}/ft/best.pt scratch:${OUT:-/tmp/synth}/scratch/best.pt; do
  n=${m%%:*}; ck=${m#*:}
  $B/igtv evaluate --model $ck --data ${OUT:-/tmp/synth}/ev99_ds --split test --out ${OUT:-/tmp/synth}/eval_$n --bootstrap 1000 2>&1 | tail -1
done
echo "all done $(( $(date +%s) - T0 )) s"
