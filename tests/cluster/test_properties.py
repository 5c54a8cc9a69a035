"""Properties over generated inputs, checked against the real API server (server-side dry run).

1. pydantic and the API server agree on QuantizedModel specs: both accept or both refuse, and
   when both refuse they name the same field.
2. Every spec the API server accepts reaches a status with conditions through the planner and
   status code, and every object qmo would create for it passes the API server's dry run.
3. The verdict is total: any QualityReport the API server accepts is judged Pass, Regressed or
   Invalid, with finite, bounded numbers that the status can carry.

`pytest --count 5000 tests/cluster/test_properties.py` runs thousands of examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from pydantic import ValidationError

from qmo.api.qualityreport import QualityReportSpec, QualityReportStatus, Verdict
from qmo.api.quantizedmodel import QualitySpec, QuantizedModel, QuantizedModelSpec
from qmo.controller.changes import Apply
from qmo.kube import ApiException, Kube, connect
from qmo.manifests import names
from qmo.planner.status import Names, build_status
from qmo.quality.verdict import MAX_DELTA_PERCENT, MAX_SPEEDUP, judge
from qmo.resources import QUALITY_REPORTS, QUANTIZED_MODELS, resource_for
from tests.support.builders import an_owner, gpu_node
from tests.support.kube import ClusterHandle, delete_namespace, unique_name
from tests.support.properties import examples
from tests.support.simulated import (
    CONFIG,
    apply_changes,
    complete_jobs,
    ready_deployments,
    reconcile_changes,
)
from tests.support.spec_strategies import (
    quality_report_specs,
    quantized_model,
    quantized_model_specs,
)

Obj = dict[str, Any]
DRY_RUN = {"dryRun": "All", "fieldValidation": "Strict"}
FLEET = [gpu_node("a100", "a100-0"), gpu_node("h100", "h100-0"), gpu_node("l40s", "l40s-0")]
SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


@pytest.fixture(scope="module")
def space(cluster: ClusterHandle, crds: None) -> Iterator[tuple[Kube, str]]:
    """A client and a namespace (with the engine store claim) for dry runs."""
    from kubernetes import client

    name = unique_name("prop")
    core = cluster.core()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    kube = connect(kubeconfig=cluster.kubeconfig)
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "qmo-engines", "namespace": name},
             "spec": {"accessModes": ["ReadWriteMany"],
                      "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip
    kube.apply(claim)
    yield kube, name
    delete_namespace(core, name)


@dataclass(frozen=True)
class Answer:
    accepted: bool
    fields: frozenset[str]
    message: str


def _path(parts: tuple[Any, ...] | list[Any]) -> str:
    """spec.serving.nodeSelector.pool, list indices dropped."""
    return ".".join(str(p) for p in parts if not isinstance(p, int))


def _normal(field: str) -> str:
    return re.sub(r"\[\d+\]", "", field).strip(".")


def pydantic_answer(obj: Obj) -> Answer:
    try:
        QuantizedModel.from_wire(obj)
    except ValidationError as err:
        fields = frozenset(_path(e["loc"]) for e in err.errors())
        return Answer(False, fields, str(err))
    return Answer(True, frozenset(), "")


def api_answer(kube: Kube, obj: Obj, resource: Any = QUANTIZED_MODELS) -> Answer:
    namespace = obj["metadata"]["namespace"]
    try:
        kube.request("CREATE", resource, resource.path(namespace), DRY_RUN, obj, "application/json")
    except ApiException as err:
        body = json.loads(err.body or "{}")
        causes = (body.get("details") or {}).get("causes") or []
        fields = {_normal(c["field"]) for c in causes if c.get("field")}
        fields |= {
            _normal(f) for f in re.findall(r'unknown field "([^"]+)"', body.get("message", ""))
        }
        return Answer(False, frozenset(fields), str(body.get("message")))
    return Answer(True, frozenset(), "")


def same_field(left: frozenset[str], right: frozenset[str]) -> bool:
    """Some field each names is the same, or one contains the other (a rule on an object
    names the object; the API server may name the field inside it)."""
    return any(
        a == b or a.startswith(f"{b}.") or b.startswith(f"{a}.") for a in left for b in right
    )


@settings(max_examples=examples(200), **SETTINGS)  # type: ignore[arg-type]
@given(spec=quantized_model_specs())
@example(spec={"model": {"source": "hf://org/model"}, "precisions": ["fp8"],
               "engine": {"store": {"size": "lots"}}})  # fmt: skip
@example(spec={"model": {"source": "hf://org/model"}, "precisions": ["fp8"],
               "serving": {"nodeSelector": {"bad key!": "x"}}})  # fmt: skip
def test_pydantic_and_the_api_server_agree_on_every_spec(
    space: tuple[Kube, str], spec: Obj
) -> None:
    kube, namespace = space
    obj = quantized_model("p", namespace, spec)
    ours, theirs = pydantic_answer(obj), api_answer(kube, obj)
    assert ours.accepted == theirs.accepted, (
        f"pydantic {'accepts' if ours.accepted else 'refuses'}, the API server "
        f"{'accepts' if theirs.accepted else 'refuses'}: {spec}\n"
        f"pydantic: {ours.message}\nAPI server: {theirs.message}"
    )
    if not ours.accepted:
        assert same_field(ours.fields, theirs.fields), (
            f"different fields: pydantic {sorted(ours.fields)}, API server "
            f"{sorted(theirs.fields)}: {spec}"
        )


def _dry_run_apply(kube: Kube, obj: Obj) -> None:
    resource = resource_for(obj["apiVersion"], obj["kind"])
    meta = obj["metadata"]
    kube.request(
        "APPLY",
        resource,
        resource.path(meta.get("namespace"), meta["name"]),
        {"fieldManager": "qmo", "force": "true", **DRY_RUN},
        obj,
        "application/apply-patch+yaml",
    )


@settings(max_examples=examples(40), **SETTINGS)  # type: ignore[arg-type]
@given(spec=quantized_model_specs())
def test_every_accepted_spec_gets_a_status_and_manifests_the_api_server_accepts(
    space: tuple[Kube, str], spec: Obj
) -> None:
    kube, namespace = space
    obj = quantized_model("p", namespace, spec)
    if not api_answer(kube, obj).accepted:
        return  # property 1 covers what the API server refuses
    model = QuantizedModelSpec.from_wire(spec)
    owner = an_owner("p", namespace, "uid-p")
    store = model.engine.store.claim_name
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": store, "namespace": namespace}}  # fmt: skip
    objects: list[Obj] = [*FLEET, claim]
    status = None
    applied: list[Obj] = []
    for _ in range(5):
        plan, changes = reconcile_changes(model, objects, owner, CONFIG)
        variant_names = {
            v.name: Names(names.variant_deployment("p", v.name), names.variant_service("p", v.name),
                          None)
            for v in plan.variants
        }  # fmt: skip
        status = build_status(
            model, plan, plan_inventory(), variant_names, status, generation=1,
            main_service=names.main_service("p"), now=datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip
        applied += [c.obj for c in changes if isinstance(c, Apply)]
        objects = ready_deployments(complete_jobs(apply_changes(objects, changes, owner)))
    assert status is not None
    assert {c.type for c in status.conditions} >= {"Ready", "Degraded", "QualityGate"}
    json.dumps(status.to_wire(), allow_nan=False)
    for desired in applied:
        try:
            _dry_run_apply(kube, desired)
        except ApiException as err:
            raise AssertionError(
                f"the API server refuses the {desired['kind']} qmo builds for {spec}: "
                f"{json.loads(err.body or '{}').get('message')}"
            ) from err


def plan_inventory() -> Any:
    from qmo.gpu import inventory_from_nodes

    return inventory_from_nodes(FLEET)


@settings(max_examples=examples(200), **SETTINGS)  # type: ignore[arg-type]
@given(report=quality_report_specs())
@example(report={"modelRef": {"name": "m"}, "variant": "h100-fp8", "cacheKey": "k" * 64,
                 "results": [{"benchmark": "gsm8k", "baselineScore": 5e-324,
                              "candidateScore": 1.7e308}]})  # fmt: skip
@example(report={"modelRef": {"name": "m"}, "variant": "h100-fp8", "cacheKey": "k" * 64,
                 "results": [{"benchmark": "gsm8k", "baselineScore": 0.8,
                              "candidateScore": 0.8}],
                 "speed": {"candidate": [{"concurrency": 8, "requests": 32,
                                          "ttftP50Seconds": 0.05, "ttftP95Seconds": 0.09,
                                          "itlP50Seconds": 0.01, "itlP95Seconds": 0.02,
                                          "outputTokensPerSecond": 1e300}],
                           "baseline": [{"concurrency": 8, "requests": 32,
                                         "ttftP50Seconds": 0.05, "ttftP95Seconds": 0.09,
                                         "itlP50Seconds": 0.01, "itlP95Seconds": 0.02,
                                         "outputTokensPerSecond": 1e-10}]}})  # fmt: skip
def test_every_report_the_api_server_accepts_gets_a_finite_verdict_or_invalid(
    space: tuple[Kube, str], report: Obj
) -> None:
    kube, namespace = space
    obj = {"apiVersion": "qmo.dev/v1alpha1", "kind": "QualityReport",
           "metadata": {"name": "r", "namespace": namespace}, "spec": report}  # fmt: skip
    if not api_answer(kube, obj, QUALITY_REPORTS).accepted:
        return
    judged = judge(QualityReportSpec.from_wire(report), QualitySpec())
    assert judged.verdict in (Verdict.PASS, Verdict.REGRESSED, Verdict.INVALID)
    assert judged.message
    for delta in judged.deltas:
        assert delta.delta_percent is not None
        assert abs(delta.delta_percent) <= MAX_DELTA_PERCENT
    if judged.worst_delta_percent is not None:
        assert abs(judged.worst_delta_percent) <= MAX_DELTA_PERCENT
    if judged.speedup is not None:
        assert 0 <= judged.speedup <= MAX_SPEEDUP
    status = QualityReportStatus(
        verdict=judged.verdict,
        reason=judged.reason,
        message=judged.message,
        deltas=list(judged.deltas),
        worst_delta_percent=judged.worst_delta_percent,
        speedup=judged.speedup,
    ).to_wire()
    json.dumps(status, allow_nan=False)  # a status the API server can decode
