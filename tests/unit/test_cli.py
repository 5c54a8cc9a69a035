"""The qmo command line: plan and validate say what is wrong, never with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qmo.cli import main
from tests.support.kube import REPO

VALID = """
apiVersion: qmo.dev/v1alpha1
kind: QuantizedModel
metadata: {name: llama}
spec:
  model: {source: "hf://org/model", revision: v1}
  precisions: [fp8]
"""
NODE_WITH_NUMBERS_FOR_LABELS = """
apiVersion: v1
kind: Node
metadata:
  name: gpu-0
  labels:
    nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3
    nvidia.com/gpu.memory: 81559
status:
  allocatable: {nvidia.com/gpu: "8"}
  conditions: [{type: Ready, status: "True"}]
"""
FLEET_WITH_A_NUMBER_FOR_A_LABEL = """
nodes:
- {name: h100, product: NVIDIA-H100-80GB-HBM3, family: hopper, computeCapability: "9.0",
   memoryMiB: 81559, gpus: 8, labels: {pool: 1}}
"""
INVALID = """
apiVersion: qmo.dev/v1alpha1
kind: QuantizedModel
metadata: {name: broken}
spec:
  model: {source: "hf://org/model", revision: v1}
  precisions: [fp8]
  engine: {store: {size: lots}}
"""


def test_plan_on_an_invalid_spec_says_which_field_in_one_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "model.yaml"
    manifest.write_text(INVALID)
    assert main(["plan", "-f", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "invalid" in err
    assert "spec.engine.store.size" in err
    assert len(err.splitlines()) == 1


def test_plan_prints_valid_service_names_for_a_dotted_model_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "model.yaml"
    manifest.write_text(
        INVALID.replace("name: broken", "name: llama-3.1-8b").replace(
            "engine: {store: {size: lots}}", ""
        )
    )
    fleet = Path(__file__).resolve().parents[2] / "e2e" / "fleets" / "hopper.yaml"
    assert main(["plan", "-f", str(manifest), "--nodes", str(fleet), "-o", "json"]) == 0
    import json

    (planned,) = json.loads(capsys.readouterr().out)
    service = planned["mainService"]["name"]
    assert service.startswith("llama-3-1-8b-")
    assert "." not in service


@pytest.mark.parametrize(
    ("field", "says"),
    [
        pytest.param("engine: {store: {size: -1Gi}}", "store.size must be above zero", id="size"),
        pytest.param(
            "serving: {resources: {requests: {memory: -1Gi}}}",
            "request may not be negative",
            id="request",
        ),
        pytest.param(
            "engine: {build: {resources: {limits: {cpu: -500m}}}}",
            "limit may not be negative",
            id="limit",
        ),
    ],
)
def test_validate_refuses_a_negative_quantity_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, says: str
) -> None:
    manifest = tmp_path / "model.yaml"
    manifest.write_text(INVALID.replace("engine: {store: {size: lots}}", field))
    assert main(["validate", "-f", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert says in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("command", "files", "code", "says"),
    [
        pytest.param(
            ["plan", "-f", "{missing}"], {}, 2, "No such file or directory", id="plan-missing"
        ),
        pytest.param(
            ["validate", "-f", "{missing}"],
            {},
            2,
            "No such file or directory",
            id="validate-missing",
        ),
        pytest.param(
            ["plan", "-f", "{model}", "--nodes", "{missing}"],
            {"model": VALID},
            2,
            "No such file or directory",
            id="plan-missing-nodes",
        ),
        pytest.param(
            ["plan", "-f", "{model}"],
            {"model": "- a\n- b\n"},
            1,
            "document 1 is a list, not a Kubernetes object",
            id="plan-a-yaml-list",
        ),
        pytest.param(
            ["validate", "-f", "{model}"],
            {"model": "just words\n"},
            1,
            "document 1 is a string",
            id="validate-a-yaml-string",
        ),
        pytest.param(
            ["plan", "-f", "{model}", "--nodes", "{nodes}"],
            {"model": VALID, "nodes": "- a\n"},
            1,
            "document 1 is a list, not a fleet or a Node",
            id="plan-nodes-a-yaml-list",
        ),
        pytest.param(
            ["plan", "-f", "{model}", "--nodes", "{nodes}"],
            {"model": VALID, "nodes": NODE_WITH_NUMBERS_FOR_LABELS},
            1,
            "node gpu-0: metadata.labels.nvidia.com/gpu.memory: Input should be a valid string",
            id="plan-node-labels-that-are-numbers",
        ),
        pytest.param(
            ["plan", "-f", "{model}", "--nodes", "{nodes}"],
            {"model": VALID, "nodes": FLEET_WITH_A_NUMBER_FOR_A_LABEL},
            1,
            "not a fleet: nodes.0.labels.pool: Input should be a valid string",
            id="plan-fleet-labels-that-are-numbers",
        ),
    ],
)
def test_a_file_qmo_cannot_use_is_one_line_and_exit_1_and_one_it_cannot_read_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    files: dict[str, str],
    code: int,
    says: str,
) -> None:
    paths = {"missing": str(tmp_path / "missing.yaml")}
    for name, text in files.items():
        paths[name] = str(tmp_path / f"{name}.yaml")
        Path(paths[name]).write_text(text)

    assert main([part.format(**paths) for part in command]) == code

    err = capsys.readouterr().err
    assert says in err
    assert len(err.splitlines()) == 1, err


def test_plan_shows_each_variants_autoscaling_range_and_what_bounds_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = Path(__file__).parents[2]
    example = str(repo / "examples" / "autoscaled.yaml")
    fleet = str(repo / "e2e" / "fleets" / "mixed.yaml")
    assert main(["plan", "-f", example, "--nodes", fleet]) == 0
    out = capsys.readouterr().out
    section = out[out.index("Autoscaling:") :].splitlines()[1:3]
    assert [line.split(":")[0].strip() for line in section] == ["h100-int8", "a100-80gb-int8"]
    assert all("1-6 replicas" in line and "requestsWaiting at 4" in line for line in section)


BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["qmo", "--version"], 0, "qmo 0."),
        (["qmo-eval", "--version"], 0, "qmo-eval 0."),
        (["qmo-builder", "--version"], 0, "qmo-builder 0."),
        (["qmo-store", "--version"], 0, "qmo-store 0."),
        (["qmo-store", "fetch", "--key", "k", "--cache", "/tmp/c", "--max-bytes", "1",
          "--termination-log", "/proc/qmo-no"], 1, "no bucket in the environment"),
        (["qmo-store", "gc", "--keep-file", "/no/such/keys", "--root", "/tmp"], 2,
         "cannot read the keep list"),
        (["qmo", "store-references"], 1, "qmo store-references:"),
        (["qmo", "validate", "-f", "/no/such.yaml"], 2, "No such file"),
        (["qmo", "plan", "-f", "/no/such.yaml"], 2, "No such file"),
        (["qmo", "plan", "-f", "examples/single-precision.yaml", "--cluster"], 1,
         "cannot read the cluster"),
        (["qmo", "crds", "--out", "/proc/qmo-cannot-write"], 1, "cannot write"),
        (["qmo-builder", "build", "--spec", "/no/such.json"], 2, "cannot read build spec"),
        (["qmo", "frobnicate"], 2, "invalid choice"),
    ],
)  # fmt: skip
def test_each_cli_answers_an_ordinary_mistake_in_a_line_without_a_traceback(
    argv: list[str], code: int, says: str
) -> None:
    env = {**os.environ, "KUBECONFIG": "/no/such/kubeconfig"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    done = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=60,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert says in output
    assert "Traceback" not in output


def test_plan_says_when_it_planned_against_no_fleet() -> None:
    done = subprocess.run(
        [str(BIN / "qmo"), "plan", "-f", "examples/single-precision.yaml"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    assert "no fleet given (--nodes FILE or --cluster)" in done.stderr


@pytest.mark.parametrize(
    ("argv", "shows"),
    [
        (["qmo", "run", "--help"], "/healthz liveness port (default: 8081)"),
        (["qmo-eval", "run", "--help"], "(default: 64)"),
        (["qmo-store", "fetch", "--help"], "tries before giving up (default: 6)"),
    ],
)
def test_help_shows_the_defaults(argv: list[str], shows: str) -> None:
    done = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0
    assert shows in " ".join(done.stdout.split())
    assert "(default: None)" not in done.stdout
