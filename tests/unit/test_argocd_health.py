"""The Argo CD health check (deploy/argocd/health.lua), run in Lua 5.1 with the libraries Argo
CD gives a health script (tests/support/argocd_lua.py), on QuantizedModel objects in every
state the operator reports."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.support.kube import REPO

lupa = pytest.importorskip("lupa.lua51", reason="lupa (dev extra) runs the Lua health check")
from tests.support.argocd_lua import ArgoLuaError, argocd_health  # noqa: E402

HEALTH_LUA = REPO / "deploy" / "argocd" / "health.lua"
ARGOCD_DOC = REPO / "docs" / "argocd.md"
APPLICATION = REPO / "deploy" / "argocd" / "application.yaml"
HEALTH_KEY = "resource.customizations.health.qmo.dev_QuantizedModel"


def cond(type_: str, status: str, reason: str = "Reason", message: str = "", gen: int = 2) -> dict:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def model(*conditions: dict[str, Any], generation: int = 2, observed: int | None = 2) -> dict:
    obj: dict[str, Any] = {
        "apiVersion": "qmo.dev/v1alpha1",
        "kind": "QuantizedModel",
        "metadata": {"name": "llama-8b", "namespace": "models", "generation": generation},
        "spec": {"model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"}},
    }
    if conditions or observed is not None:
        obj["status"] = {"conditions": list(conditions)}
        if observed is not None:
            obj["status"]["observedGeneration"] = observed
    return obj


def health(obj: dict[str, Any]) -> dict[str, str]:
    """health.lua under Argo CD's own library set (no string, no math; see argocd_lua)."""
    return argocd_health(HEALTH_LUA.read_text(encoding="utf-8"), obj)


READY = cond("Ready", "True", "AllVariantsServing", "2 variants serve and passed their gate")
NOT_BUILDING = cond("Building", "False", "BuildsComplete")
GATE_PASSED = cond("QualityGate", "True", "Passed")

CASES = [
    (model(observed=None), "Progressing", "Waiting for the operator to report status"),
    (
        model(READY, generation=3, observed=2),
        "Progressing",
        "Waiting for the operator to observe generation 3",
    ),
    (model(READY, observed=None), "Progressing", "Waiting for the operator to observe"),
    (model(READY, NOT_BUILDING, GATE_PASSED), "Healthy", "2 variants serve"),
    (
        model(cond("Degraded", "True", "BuildFailed", "h100-fp8: trtllm-build exited 1"), READY),
        "Degraded",
        "h100-fp8: trtllm-build exited 1",
    ),
    (
        model(cond("Building", "True", "BuildRunning", "building h100-fp8 (1 of 2)")),
        "Progressing",
        "building h100-fp8",
    ),
    (
        model(READY, cond("RolledBack", "True", "QualityRegressed", "h100-int4: mmlu -3.2%")),
        "Degraded",
        "Rolled back: h100-int4: mmlu -3.2%",
    ),
    (
        model(cond("QualityGate", "False", "Regressed", "int4-awq regressed 3.2% > 1.5%")),
        "Degraded",
        "int4-awq regressed",
    ),
    (
        model(cond("QualityGate", "False", "Regressed"), cond("Building", "True")),
        "Degraded",
        "Regressed",
    ),
    (
        model(cond("Ready", "False", "WaitingForGPUs", "no schedulable H100")),
        "Progressing",
        "no schedulable H100",
    ),
    (model(cond("Ready", "True", "Serving", gen=1)), "Progressing", "older generation"),
    (
        model(cond("Degraded", "False", "AsExpected"), cond("RolledBack", "False"), READY),
        "Healthy",
        "2 variants serve",
    ),
]
IDS = [
    "no status yet is Progressing",
    "a spec change the operator has not seen yet is Progressing",
    "conditions without observedGeneration are not trusted yet",
    "Ready=True is Healthy",
    "Degraded=True is Degraded even while Ready",
    "Building=True is Progressing",
    "RolledBack=True with Ready=True is Degraded: Git's revision is not serving",
    "QualityGate=False because Regressed is Degraded",
    "a regression wins over a build in progress",
    "Ready=False without failures is Progressing",
    "a Ready condition from an older generation is Progressing",
    "False Degraded and RolledBack conditions do not degrade",
]


@pytest.mark.parametrize(("obj", "status", "message"), CASES, ids=IDS)
def test_the_health_check_maps_quantizedmodel_conditions(
    obj: dict[str, Any], status: str, message: str
) -> None:
    result = health(obj)
    assert result["status"] == status
    assert message in result["message"]


def test_the_documented_argocd_cm_snippet_is_the_health_lua_file() -> None:
    text = ARGOCD_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    configmaps = [yaml.safe_load(b) for b in blocks if HEALTH_KEY in b]
    assert len(configmaps) == 1, f"docs/argocd.md should show one argocd-cm with {HEALTH_KEY}"
    configmap = configmaps[0]
    assert (configmap["kind"], configmap["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert configmap["data"][HEALTH_KEY] == HEALTH_LUA.read_text(encoding="utf-8")


def test_the_example_application_syncs_server_side_and_is_shown_in_the_docs() -> None:
    application = yaml.safe_load(APPLICATION.read_text(encoding="utf-8"))
    assert application["kind"] == "Application"
    assert "ServerSideApply=true" in application["spec"]["syncPolicy"]["syncOptions"]
    assert application["spec"]["source"]["path"] == "charts/qmo"
    assert APPLICATION.read_text(encoding="utf-8").strip() in ARGOCD_DOC.read_text(encoding="utf-8")


# --- the sandbox is Argo CD's, not a full Lua ----------------------------------------------

A_MODEL = model(READY, NOT_BUILDING, GATE_PASSED)


@pytest.mark.parametrize(
    "script",
    [
        'return {status = string.format("%s", "Healthy")}',
        'return {status = ("healthy"):upper()}',
        "return {status = tostring(math.floor(1.5))}",
        "return {status = os.time() and 'Healthy'}",
        'local io = require("io"); return {status = "Healthy"}',
    ],
)
def test_libraries_argo_cd_does_not_give_fail_here_too(script: str) -> None:
    with pytest.raises(ArgoLuaError):
        argocd_health(script, A_MODEL)


def test_what_argo_cd_does_give_works() -> None:
    script = (
        'local os = require("os"); local t = {}; table.insert(t, "Healthy"); '
        'return {status = t[1], message = tostring(os.time() > 0) .. table.concat({"a", "b"})}'
    )
    assert argocd_health(script, A_MODEL) == {"status": "Healthy", "message": "trueab"}


def test_a_status_argo_cd_does_not_know_becomes_unknown() -> None:
    assert argocd_health('return {status = "Fine"}', A_MODEL)["status"] == "Unknown"
