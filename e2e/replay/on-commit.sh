#!/usr/bin/env bash
# Run today's serving state machines against the operator code of an older commit (default
# 26dea1f, before issue 21's fixes): a worktree at that commit gets today's tests/support and
# tests/unit/test_serving_invariants.py, with shims for the few names the older code lacks.
# Prints, per machine, whether it held or what it found. Usage: e2e/replay/on-commit.sh [commit]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
commit=${1:-26dea1f}
tree=$(mktemp -d)/old
trap 'git -C "$repo" worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
git -C "$repo" worktree add -f -q "$tree" "$commit"
cp "$repo"/tests/support/*.py "$tree/tests/support/"
cp "$repo/tests/unit/test_serving_invariants.py" "$tree/tests/unit/"
python3 - "$tree" <<'PY'
import pathlib, sys
tree = pathlib.Path(sys.argv[1])
def patch(path, old, new):
    file = tree / path
    text = file.read_text()
    if old in text:
        file.write_text(text.replace(old, new, 1))
# Names the older code lacks or called otherwise.
patch("tests/support/fake_kube.py", "from qmo.manifests.evaluation import EVAL_CONTAINER\n",
      "try:\n    from qmo.manifests.evaluation import EVAL_CONTAINER\nexcept ImportError:\n    EVAL_CONTAINER = 'evaluator'\n")
patch("tests/support/fake_kube.py", "    def job_pods(self, namespace: str, job_name: str) -> list[Obj]:",
      "    def build_pods(self, namespace: str, job_name: str) -> list[Obj]:\n        return self._view().build_pods(namespace, job_name)\n\n    def job_pods(self, namespace: str, job_name: str) -> list[Obj]:")
patch("tests/support/reconciles.py", "from qmo.manifests.routes import gateways\n",
      "try:\n    from qmo.manifests.routes import gateways\nexcept ImportError:\n    gateways = None\n")
patch("tests/unit/test_serving_invariants.py", "retried.reason_label != Reason.NAME_TAKEN", 'retried.reason_label != "NameTaken"')
PY
cd "$tree"
PYTHONPATH="$tree/operator:$tree" "$repo/.venv/bin/python" "$repo/e2e/replay/state_machines.py" 2>&1 | grep -v '^Writing the status'
