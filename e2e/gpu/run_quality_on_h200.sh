#!/usr/bin/env bash
# The GPU run behind e2e/gpu/results/h200-quality/: qmo-builder's variants scored by
# lm-evaluation-harness on local-file tasks, imported as QualityReports and judged by the
# operator's verdict code (e2e/gpu/quality_h200.py). From the repository root on a GPU machine:
#   OUT=results bash e2e/gpu/run_quality_on_h200.sh
# Offline, WHEELS=DIR first installs the wheels in DIR (lm-eval, nvidia-modelopt and what the
# machine lacks of their dependencies: the list is in the results README).
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
python3 - <<'PY' || exit 1
import sys
from importlib import metadata
import datasets, lm_eval, modelopt, torch, transformers  # noqa: F401  (fail early if missing)
names = ("torch", "transformers", "nvidia-modelopt", "lm_eval", "datasets", "pyarrow", "fsspec",
         "huggingface_hub", "accelerate", "pydantic")
print("python", sys.version.split()[0], "cuda", torch.version.cuda,
      " ".join(f"{n}={metadata.version(n)}" for n in names))
PY
python3 -m e2e.gpu.quality_h200 --out "$OUT"
