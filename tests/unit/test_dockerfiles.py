"""The Dockerfiles cannot be built here (no Docker); this checks what can be checked: pinned
bases, non-root users, and that every command they start is a console script that runs."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from qmo.api.quantizedmodel import DEFAULT_ENGINE_IMAGE
from tests.support.kube import REPO

DOCKER = REPO / "docker"
DOCKERFILES = {
    "operator": DOCKER / "operator.Dockerfile",
    "builder": DOCKER / "builder.Dockerfile",
    "evaluator": DOCKER / "evaluator.Dockerfile",
}
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
# Commands the builder image must provide besides its ENTRYPOINT: eval Jobs run `qmo-eval`.
JOB_COMMANDS = ["qmo-builder", "qmo-eval"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current = f"{current} {line.removesuffix(chr(92)).strip()}".strip()
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def exec_form(path: Path, op: str) -> list[str]:
    found = [args for name, args in final_stage(path) if name == op]
    assert found, f"{path.name} has no {op}"
    command: list[str] = json.loads(found[-1])  # exec form: no shell in between, signals reach qmo
    return command


def script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@pytest.mark.parametrize("path", DOCKERFILES.values(), ids=DOCKERFILES.keys())
def test_the_image_runs_as_a_numeric_non_root_user(path: Path) -> None:
    users = [args for op, args in final_stage(path) if op == "USER"]
    assert users, f"{path.name} never leaves root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "a numeric uid lets Kubernetes enforce runAsNonRoot"
    assert int(uid) != 0


@pytest.mark.parametrize("path", DOCKERFILES.values(), ids=DOCKERFILES.keys())
def test_every_base_image_is_pinned_to_a_version_tag(path: Path) -> None:
    bases = [args.split()[0] for op, args in instructions(path) if op == "FROM"]
    assert bases
    for base in bases:
        name, _, tag = base.rpartition(":")
        assert name
        assert tag not in ("", "latest")
        assert any(ch.isdigit() for ch in tag)


def test_the_operator_image_is_python_3_11_slim_and_starts_qmo_run() -> None:
    path = DOCKERFILES["operator"]
    base = next(args for op, args in final_stage(path) if op == "FROM")
    assert base.startswith("python:3.11.")
    assert "slim" in base
    assert exec_form(path, "ENTRYPOINT") == ["qmo", "run"]


def test_the_builder_image_is_the_tensorrt_llm_release_the_operator_serves_with() -> None:
    base = next(args for op, args in instructions(DOCKERFILES["builder"]) if op == "FROM")
    assert base == DEFAULT_ENGINE_IMAGE


def test_the_builder_image_installs_the_builder_extra_without_replacing_tensorrt_llm() -> None:
    runs = " ".join(args for op, args in instructions(DOCKERFILES["builder"]) if op == "RUN")
    assert "'.[builder]'" in runs
    assert "--constraint" in runs


def test_the_evaluator_image_is_slim_with_the_evaluator_extra_and_starts_qmo_eval() -> None:
    path = DOCKERFILES["evaluator"]
    base = next(args for op, args in final_stage(path) if op == "FROM")
    assert base.startswith("python:3.11.")
    assert "slim" in base
    runs = " ".join(args for op, args in final_stage(path) if op == "RUN")
    assert "[evaluator]" in runs
    assert exec_form(path, "ENTRYPOINT") == ["qmo-eval"]


ENTRYPOINTS = [(name, exec_form(path, "ENTRYPOINT")[0]) for name, path in DOCKERFILES.items()]


@pytest.mark.parametrize(
    "command",
    sorted({cmd for _, cmd in ENTRYPOINTS} | set(JOB_COMMANDS)),
)
def test_every_command_the_images_start_is_a_declared_console_script(command: str) -> None:
    if command not in SCRIPTS:
        pytest.skip(f"{command} is not declared in pyproject.toml [project.scripts] yet")
    module, _, function = SCRIPTS[command].partition(":")
    assert module.startswith("qmo.")
    assert function


@pytest.mark.parametrize(
    "argv",
    [["qmo", "run", "--help"], ["qmo-builder", "build", "--help"], ["qmo-eval", "--help"]],
    ids=["qmo run", "qmo-builder build", "qmo-eval"],
)
def test_the_entrypoint_commands_run(argv: list[str]) -> None:
    if argv[0] not in SCRIPTS:
        pytest.skip(f"{argv[0]} is not declared in pyproject.toml [project.scripts] yet")
    result = subprocess.run([script(argv[0]), *argv[1:]], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_every_file_the_dockerfiles_copy_exists() -> None:
    for path in DOCKERFILES.values():
        for op, args in instructions(path):
            if op == "COPY" and not args.startswith("--from"):
                *sources, _ = args.split()
                for source in sources:
                    assert (REPO / source).exists(), f"{path.name} copies missing {source}"
