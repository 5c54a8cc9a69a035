"""The qmo command line: plan and validate say what is wrong, never with a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmo.cli import main

INVALID = """
apiVersion: qmo.dev/v1alpha1
kind: QuantizedModel
metadata: {name: broken}
spec:
  model: {source: "hf://org/model", revision: v1}
  precisions: [fp8]
  engine: {store: {size: lots}}
"""


def test_plan_on_an_invalid_spec_says_which_field_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "model.yaml"
    manifest.write_text(INVALID)
    assert main(["plan", "-f", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "invalid" in err
    assert "size" in err
    assert "Traceback" not in err


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
