"""The operator never imports the GPU stacks; qmo.builder imports them only inside functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "operator" / "qmo"
GPU_STACKS = {"torch", "modelopt", "transformers", "tensorrt_llm", "tensorrt", "datasets"}


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # module level only: imports inside functions are lazy
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


BUILDER_MODULES = sorted((PACKAGE / "builder").glob("*.py"))


@pytest.mark.parametrize("path", BUILDER_MODULES, ids=lambda p: p.name)
def test_builder_modules_import_no_gpu_stack_at_module_level(path: Path) -> None:
    assert _top_level_imports(path) & GPU_STACKS == set()


def test_no_operator_module_imports_the_builder() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "builder" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n and n.startswith("qmo.builder") for n in [module, *names]):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_importing_the_whole_builder_loads_no_gpu_stack() -> None:
    script = (
        "import sys, qmo.builder.cli, qmo.builder.pipeline, qmo.builder.quantize;"
        f"print(sorted(m for m in {sorted(GPU_STACKS)!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
