"""Writes charts/qmo/README.md from charts/qmo/values.yaml, as helm-docs does: every value with
its default and the `# --` comment above it. `make chart-readme` runs it; a unit test keeps the
README current (tests/unit/test_chart.py).

    python charts/readme.py            # write charts/qmo/README.md
    python charts/readme.py --check    # exit 1 when it is stale
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).parent / "qmo"
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z][\w.-]*):(?P<rest>.*)$")
HEAD = """# qmo Helm chart

The Quantized Model Operator: `QuantizedModel` resources become quantized TensorRT-LLM builds
and GPU Deployments, gated on quality.

```bash
helm install qmo qmo-<version>.tgz --namespace qmo-system --create-namespace
```

(`helm package charts/qmo` in a checkout makes that archive; a chart repository or OCI
registry that publishes it is installed from the same way, by its reference.)

**CRDs**: Helm installs them on the first install and never upgrades or deletes them. Before
upgrading the chart, apply the new ones from the chart itself (no checkout needed):

```bash
helm show crds qmo-<version>.tgz | kubectl apply --server-side -f -
```

Documentation: [install](https://github.com/qmo-dev/qmo/blob/main/docs/install.md),
[RBAC](https://github.com/qmo-dev/qmo/blob/main/docs/rbac.md),
[observability](https://github.com/qmo-dev/qmo/blob/main/docs/observability.md),
[upgrading CRDs](https://github.com/qmo-dev/qmo/blob/main/docs/upgrading-crds.md).
License: Apache-2.0.

## Values

Generated from `values.yaml` by `charts/readme.py`; do not edit by hand.

| Key | Default | Description |
|---|---|---|
"""


def documented(text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every key in file order; the description is the `# --`
    comment above it, or empty."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    collecting = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending, collecting = [stripped[4:].strip()], True
            continue
        if stripped.startswith("#"):
            if collecting:
                pending.append(stripped[1:].strip())
            continue
        collecting = False
        match = KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [match["key"]])
        stack.append((indent, match["key"]))
        found.append((path, " ".join(p for p in pending if p)))
        pending = []
    return found


def is_leaf(values: dict[str, Any], path: str) -> bool:
    """A value a user sets as a whole: not a mapping with keys of its own."""
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return not (isinstance(node, dict) and node)


def default_of(values: dict[str, Any], path: str) -> str:
    node: Any = values
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return f"`{json.dumps(node)}`"


def render() -> str:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    rows = [
        f"| `{path}` | {default_of(values, path)} | {what.replace('|', '/')} |"
        for path, what in documented(text)
        if is_leaf(values, path)
    ]
    return HEAD + "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    target = CHART / "README.md"
    wanted = render()
    if "--check" in argv:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != wanted:
            print("charts/qmo/README.md is stale: run python charts/readme.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(wanted, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
