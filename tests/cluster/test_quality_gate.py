"""The quality gate end to end: QualityReports promote, roll back and fall back variants.

Reports are written here as an external evaluation system (or qmo-eval by hand) would write
them; the eval Jobs qmo creates run under kwok without scoring anything and never complete
(tests/cluster/test_eval_report.py ends one with qmo-eval's scores).
"""

from __future__ import annotations

import pytest

from e2e.operator_process import OperatorProcess
from tests.support.gate_scenario import (
    gated,
    key_of,
    report,
    report_status,
    roll_out_v2,
    v2_after_a_good_v1,
    wait_event,
    wait_report_judged,
)
from tests.support.kube import (
    ClusterHandle,
    condition,
    is_ready,
    variants,
    wait_for,
)
from tests.support.scenario import create, deployment, events, patch_spec, wait_ready

pytestmark = pytest.mark.usefixtures("operator", "engine_store")


def test_a_passing_report_promotes_a_before_traffic_candidate(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(
        cluster,
        namespace,
        gated("canary", "before-traffic", "rollback", precisions=["bf16", "fp8"],
              gpu={"classes": ["h100"]}),
    )  # fmt: skip
    evaluating = cluster.wait_for_model(
        namespace,
        "canary",
        lambda m: variants(m).get("h100-fp8", {}).get("phase") == "Evaluating",
        describe="fp8 to run as a candidate",
    )
    key = key_of(evaluating, "h100-fp8")
    candidate = deployment(cluster, namespace, "canary-h100-fp8-candidate")
    assert candidate.spec.template.metadata.labels["qmo.dev/track"] == "candidate"
    main = cluster.core().read_namespaced_service("canary", namespace)
    assert main.spec.selector["qmo.dev/track"] == "stable"
    # Once the candidate and the BF16 baseline both serve, an eval Job compares them.
    eval_job = wait_for(
        cluster.batch().list_namespaced_job,
        lambda j: j.metadata.annotations.get("qmo.dev/revision") == key,
        namespace=namespace,
        label_selector="app.kubernetes.io/component=evaluation",
        describe="the eval Job",
    )
    args = eval_job.spec.template.spec.containers[0].args
    assert "http://canary-h100-fp8-candidate:8000" in args
    assert "http://canary-h100-bf16:8000" in args

    name = report(cluster, namespace, "canary", "h100-fp8", key, arithmetic=0.788, wikitext=10.1)
    promoted = cluster.wait_for_model(
        namespace,
        "canary",
        lambda m: variants(m)["h100-fp8"]["phase"] == "Serving" and is_ready(m),
        describe="fp8 to be promoted",
    )
    fp8 = variants(promoted)["h100-fp8"]
    assert fp8["quality"]["verdict"] == "Pass"
    assert fp8["lastGoodRevision"] == key
    assert condition(promoted, "QualityGate")["reason"] == "AllPassed"
    assert (
        deployment(cluster, namespace, "canary-h100-fp8").metadata.annotations["qmo.dev/revision"]
        == key
    )
    assert report_status(cluster, namespace, name)["state"] == "Current"
    wait_event(cluster, namespace, "canary", "QualityPassed")


def test_a_regression_rolls_back_to_the_last_good_revision_and_the_rest_keeps_serving(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    create(
        cluster,
        namespace,
        gated("rolls", "after-rollout", "rollback", precisions=["bf16", "fp8"],
              gpu={"classes": ["h100", "l40s"]}),
    )  # fmt: skip
    v1 = wait_ready(cluster, namespace, "rolls")
    for variant in ("h100-fp8", "l40s-fp8"):
        report(cluster, namespace, "rolls", variant, key_of(v1, variant))
    good = cluster.wait_for_model(
        namespace,
        "rolls",
        lambda m: condition(m, "QualityGate").get("reason") == "AllPassed",
        describe="v1 to pass",
    )
    v1_key = variants(good)["h100-fp8"]["lastGoodRevision"]
    assert v1_key == key_of(v1, "h100-fp8")
    rollbacks_before = operator.metric("qmo_rollbacks_total", model="rolls", namespace=namespace)

    v2 = roll_out_v2(cluster, namespace, "rolls")
    v2_h100, v2_l40s = key_of(v2, "h100-fp8"), key_of(v2, "l40s-fp8")
    assert v2_h100 != v1_key
    report(cluster, namespace, "rolls", "h100-fp8", v2_h100, arithmetic=0.7832)  # -2.1%

    rolled = cluster.wait_for_model(
        namespace,
        "rolls",
        lambda m: variants(m)["h100-fp8"]["phase"] == "RolledBack",
        describe="h100-fp8 to roll back",
    )
    rolled_back = condition(rolled, "RolledBack")
    assert rolled_back["status"] == "True"
    assert "arithmetic +2.10%" in rolled_back["message"]
    serving = deployment(cluster, namespace, "rolls-h100-fp8")
    assert serving.metadata.annotations["qmo.dev/revision"] == v1_key
    # The rest keeps serving v2: its rollout ends with one ready replica (a surge pod of the
    # old revision may still be scaling down when the rollback is seen).
    other = wait_for(
        cluster.apps().list_namespaced_deployment,
        lambda d: (
            d.metadata.name == "rolls-l40s-fp8"
            and d.status.replicas == 1
            and d.status.ready_replicas == 1
        ),
        namespace=namespace,
        describe="l40s-fp8 to end its rollout with one ready replica",
    )
    assert other.metadata.annotations["qmo.dev/revision"] == v2_l40s
    wait_event(cluster, namespace, "rolls", "RolledBack")
    assert [e.reason for e in events(cluster, namespace, "rolls")].count("RolledBack") == 1
    assert (
        operator.metric("qmo_rollbacks_total", model="rolls", namespace=namespace)
        == rollbacks_before + 1
    )

    # The next reconciles leave it rolled back: no flapping back to the regressed revision.
    steady = cluster.wait_for_model(
        namespace,
        "rolls",
        lambda m: is_ready(m) and variants(m)["h100-fp8"]["revision"] == v1_key,
        describe="the rollback to settle",
    )
    assert variants(steady)["h100-fp8"]["cacheKey"] == v2_h100


def test_a_regression_on_the_first_rollout_falls_back_to_the_next_precision(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(
        cluster,
        namespace,
        gated("ladder", "after-rollout", "fallback", precisions=["int4-awq"],
              gpu={"classes": ["h100"]}),
    )  # fmt: skip
    first = cluster.wait_for_model(
        namespace,
        "ladder",
        lambda m: variants(m).get("h100-int4-awq", {}).get("phase") == "Serving",
        describe="int4 to serve",
    )
    assert "h100-bf16" in variants(first), "a temporary BF16 reference runs for the evaluation"
    assert variants(first)["h100-bf16"]["reason"] == "Reference"
    int4_key = key_of(first, "h100-int4-awq")
    report(cluster, namespace, "ladder", "h100-int4-awq", int4_key, wikitext=10.5)  # ppl +5%

    fallen = cluster.wait_for_model(
        namespace,
        "ladder",
        lambda m: "h100-int8" in variants(m),
        describe="the fallback to int8",
    )
    int8 = variants(fallen)["h100-int8"]
    assert int8["requestedPrecision"] == "int4-awq"
    assert "h100-int4-awq" not in variants(fallen)
    assert condition(fallen, "RolledBack")["reason"] == "FellBack"
    jobs = cluster.batch().list_namespaced_job(
        namespace, label_selector="app.kubernetes.io/component=build,qmo.dev/precision=int8"
    )
    assert len(jobs.items) == 1
    fell_back = wait_event(cluster, namespace, "ladder", "FellBack")
    assert fell_back.type == "Warning"
    assert "wikitext +5.00%" in fell_back.message
    assert [e.reason for e in events(cluster, namespace, "ladder")].count("FellBack") == 1


def test_a_report_for_a_stale_revision_changes_nothing(
    cluster: ClusterHandle, namespace: str
) -> None:
    create(
        cluster,
        namespace,
        gated("steady", "after-rollout", "rollback", precisions=["bf16", "fp8"],
              gpu={"classes": ["h100"]}),
    )  # fmt: skip
    before = wait_ready(cluster, namespace, "steady")
    name = report(cluster, namespace, "steady", "h100-fp8", "0" * 64, arithmetic=0.5)

    status = wait_report_judged(cluster, namespace, name)
    assert status["state"] == "Stale"
    assert status["verdict"] == "Regressed"
    after = cluster.model(namespace, "steady")
    assert variants(after)["h100-fp8"]["revision"] == variants(before)["h100-fp8"]["revision"]
    assert variants(after)["h100-fp8"]["phase"] == "Serving"
    assert condition(after, "RolledBack").get("status") == "False"
    assert not [e for e in events(cluster, namespace, "steady") if e.reason == "RolledBack"]


def test_an_operator_restart_during_a_rollback_rolls_back_once(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    v1_key, v2_key = v2_after_a_good_v1(cluster, namespace, "crash")

    operator.kill()  # the regression arrives while no operator runs
    report(cluster, namespace, "crash", "h100-fp8", v2_key, arithmetic=0.70)
    operator.start()
    cluster.wait_for_model(
        namespace, "crash", lambda m: variants(m)["h100-fp8"]["phase"] == "RolledBack"
    )
    wait_event(cluster, namespace, "crash", "RolledBack")
    operator.kill()  # and the operator dies again right after acting
    operator.start()
    # Wait until the new process has reconciled the model at least twice.
    patch_spec(cluster, namespace, "crash", {"serving": {"startupTimeoutSeconds": 1200}})
    settled = cluster.wait_for_model(
        namespace,
        "crash",
        lambda m: m["status"]["observedGeneration"] == m["metadata"]["generation"],
    )
    assert variants(settled)["h100-fp8"]["phase"] == "RolledBack"
    assert (
        deployment(cluster, namespace, "crash-h100-fp8").metadata.annotations["qmo.dev/revision"]
        == v1_key
    )
    assert [e.reason for e in events(cluster, namespace, "crash")].count("RolledBack") == 1
    assert operator.metric("qmo_rollbacks_total", model="crash", namespace=namespace) == 0


def test_a_failed_eval_job_shows_in_the_gate_and_a_retry_runs_it_again(
    cluster: ClusterHandle, namespace: str
) -> None:
    name = "e2e-evalfail-gate"
    create(
        cluster,
        namespace,
        gated(name, "after-rollout", "rollback", precisions=["fp8"], gpu={"classes": ["h100"]}),
    )
    failed = cluster.wait_for_model(
        namespace,
        name,
        lambda m: condition(m, "QualityGate").get("reason") == "EvaluationFailed",
        timeout=180,
        describe="the failed eval Job to show in the QualityGate condition",
    )
    gate = condition(failed, "QualityGate")
    assert gate["status"] == "Unknown"
    assert "BackoffLimitExceeded" in gate["message"]
    assert "qmo.dev/retry" in gate["message"], "it says how to run it again"
    wait_event(cluster, namespace, name, "EvaluationFailed")  # it follows the status
    warnings = [e for e in events(cluster, namespace, name) if e.reason == "EvaluationFailed"]
    assert len(warnings) == 1
    jobs = (
        cluster.batch()
        .list_namespaced_job(namespace, label_selector="app.kubernetes.io/component=evaluation")
        .items
    )
    (first,) = jobs
    cluster.kubectl("annotate", "qm", name, "-n", namespace, "qmo.dev/retry=after-fix")
    wait_for(
        cluster.batch().list_namespaced_job,
        lambda j: j.metadata.name == first.metadata.name and j.metadata.uid != first.metadata.uid,
        namespace=namespace,
        label_selector="app.kubernetes.io/component=evaluation",
        describe="the eval Job to run again",
    )
