#!/usr/bin/env bash
# The GPU run behind e2e/gpu/results/h200-uncertainty/ (issue 23): e2e/gpu/uncertainty_h200.py at
# an outlier scale (SCALE: 32, or 128 with serving), its files packed into one archive (the device tool returns few files).
# From the repository root on a GPU machine:
#   WHEELS=.whl OUT=results SCALE=32 bash e2e/gpu/run_uncertainty_on_h200.sh
#   WHEELS=.whl OUT=results SCALE=128 bash e2e/gpu/run_uncertainty_on_h200.sh
set -uo pipefail
OUT=${OUT:?set OUT to a results directory}
mkdir -p "$OUT"
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}operator:.
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
work=/tmp/qmo-uncertainty-results
rm -rf "$work" && mkdir -p "$work"
pack() { tar -czf "$OUT/results.tgz" -C "$work" . ; }
trap pack EXIT
trap 'exit 143' TERM INT
# At x32 the whole sweep, scored only; at x128 (outliers that per-tensor INT8 activations
# cannot hold) the deployable recipes, and two exported checkpoints served through qmo-eval.
# NAME=nvfp4: the NVFP4 recipes beside FP8 and BF16 at x32 (issue 24).
case "${NAME:-${SCALE:-32}}" in
  32) extra=(--no-serve --only fp8 int4-awq int8 int8-no-smoothquant w8a7 w8a6 w8a5 w8a4) ;;
  nvfp4) extra=(--no-serve --only fp8 nvfp4 nvfp4-awq-lite) ;;
  *) extra=(--only fp8 int8 int8-no-smoothquant) ;;
esac
name=${NAME:-scale-${SCALE:-32}}
python3 -m e2e.gpu.uncertainty_h200 --out "$work/$name" \
  --outlier-scale "${SCALE:-32}" "${extra[@]}" 2>&1 | grep -v "it/s]\|s/it]" \
  | tee "$work/$name.log"
