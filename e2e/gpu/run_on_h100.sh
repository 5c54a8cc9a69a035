#!/usr/bin/env bash
# The GPU run behind docs/builder.md: the benchmark, then qmo-builder's CLI as a Job runs it.
# Usage, from the repository root on a GPU machine, with ModelOpt and its dependencies
# importable (on an offline machine: pip install --target from carried wheels first):
#   OUT=results bash e2e/gpu/run_on_h100.sh
set -uo pipefail
OUT=${OUT:?set OUT to a results directory}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}operator:.
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}

nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
python3 -c 'import sys, torch, transformers, modelopt, pydantic; print(sys.version.split()[0], torch.__version__, torch.version.cuda, transformers.__version__, modelopt.__version__, pydantic.VERSION)'

python3 -m e2e.gpu.builder_h100 --out "$OUT"
bench=$?

cli() {  # qmo-builder as the Job runs it; prints exit code and termination message
  local spec=$1
  python3 -m qmo.builder build --spec "e2e/gpu/specs/$spec" --termination-log "/tmp/term-$spec"
  local rc=$?
  echo "qmo-builder $spec: exit=$rc termination=$(cat "/tmp/term-$spec" 2>/dev/null)"
}
python3 -m qmo.builder build --spec e2e/gpu/specs/fp8-h100.json --dry-run
cli fp8-h100.json     # a real build through the CLI
cli fp8-h100.json     # the same cache key again: a no-op
cli int4-a100.json    # an A100 build scheduled on this GPU: refused, exit 3
cp /tmp/qmo-builder-bench/store/artifacts/cli-fp8-h100-0001/qmo-artifact.json \
  "$OUT/manifest-cli-fp8.json" 2>/dev/null
ls -la /tmp/qmo-builder-bench/store/artifacts/
exit $bench
