"""The reconcile's writes as data: what `desired_changes` asks for, and that it converges."""

from __future__ import annotations

import copy

import pytest

from qmo.config import OperatorConfig
from qmo.controller.applied import HASH_ANNOTATION, desired_hash, stamped
from qmo.controller.changes import AddOwner, Apply, Delete, mark_refused
from qmo.controller.projections import DRIFTED
from qmo.manifests.serving import build_deployment
from qmo.vocabulary import Refusal
from tests.support.builders import a_model, an_owner, gpu_node
from tests.support.simulated import (
    apply_changes,
    complete_jobs,
    kinds,
    ready_deployments,
    reconcile_changes,
)

OWNER = an_owner("llama", "models", "uid-llama")
OTHER = an_owner("twin", "models", "uid-twin")
H100 = gpu_node("h100", "h100-0")
STORE = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "qmo-engines", "namespace": "models"},
}
CLUSTER = [H100, STORE]


def fp8_on_h100() -> object:
    return a_model().with_precisions("fp8").ungated().spec()


def converge(spec: object, objects: list[dict[str, object]]) -> list[dict[str, object]]:
    """Reconcile, finish builds and rollouts, until nothing is left to write."""
    for _ in range(6):
        _, changes = reconcile_changes(spec, objects, OWNER)  # type: ignore[arg-type]
        if not changes:
            return objects
        objects = ready_deployments(complete_jobs(apply_changes(objects, changes, OWNER)))
    raise AssertionError("the reconcile did not converge")


def test_a_new_model_creates_its_build_job_and_main_service_and_nothing_else() -> None:
    _, changes = reconcile_changes(fp8_on_h100(), CLUSTER, OWNER)
    assert kinds(changes) == [("apply", "Job"), ("apply", "Service")]


def test_the_build_job_is_owned_by_the_model_and_applied_as_its_own_field_manager() -> None:
    _, changes = reconcile_changes(fp8_on_h100(), CLUSTER, OWNER)
    job = changes[0]
    assert isinstance(job, Apply)
    assert job.owner_manager, "shared objects merge owner references only per field manager"
    assert job.obj["metadata"]["ownerReferences"] == [OWNER.shared_reference()]
    assert job.variant == "h100-fp8"


def test_a_finished_build_is_recorded_and_rolled_out() -> None:
    spec = fp8_on_h100()
    _, first = reconcile_changes(spec, CLUSTER, OWNER)
    built = complete_jobs(apply_changes(CLUSTER, first, OWNER))
    _, changes = reconcile_changes(spec, built, OWNER)
    assert kinds(changes) == [
        ("apply", "ConfigMap"),
        ("apply", "Deployment"),
        ("apply", "Service"),
    ], "the main Service was applied already and is unchanged"


def test_a_converged_model_needs_no_write() -> None:
    spec = fp8_on_h100()
    objects = converge(spec, CLUSTER)
    plan, changes = reconcile_changes(spec, objects, OWNER)
    assert changes == []
    assert [v.phase.value for v in plan.variants] == ["Serving"]


def test_a_deployment_someone_else_changed_is_applied_again() -> None:
    spec = fp8_on_h100()
    objects = converge(spec, CLUSTER)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["metadata"][DRIFTED] = True  # what the informer marks on a foreign spec edit
    _, changes = reconcile_changes(spec, objects, OWNER)
    assert kinds(changes) == [("apply", "Deployment")]


def test_a_deleted_service_is_created_again() -> None:
    spec = fp8_on_h100()
    objects = converge(spec, CLUSTER)
    objects = [o for o in objects if o["metadata"]["name"] != "llama-h100-fp8"
               or o["kind"] != "Service"]  # fmt: skip
    _, changes = reconcile_changes(spec, objects, OWNER)
    assert kinds(changes) == [("apply", "Service")]


def test_a_build_another_model_started_gets_this_models_owner_not_a_second_job() -> None:
    spec = fp8_on_h100()
    _, theirs = reconcile_changes(spec, CLUSTER, OTHER)
    objects = apply_changes(CLUSTER, theirs, OTHER)
    _, changes = reconcile_changes(spec, objects, OWNER)
    assert ("apply", "Job") not in kinds(changes)
    adds = [c for c in changes if isinstance(c, AddOwner)]
    assert [a.target["kind"] for a in adds] == ["Job"]


def test_a_finished_build_another_model_recorded_is_reused_with_an_owner_reference() -> None:
    spec = fp8_on_h100()
    _, theirs = reconcile_changes(spec, CLUSTER, OTHER)
    objects = complete_jobs(apply_changes(CLUSTER, theirs, OTHER))
    _, theirs = reconcile_changes(spec, objects, OTHER)
    objects = apply_changes(objects, theirs, OTHER)
    _, changes = reconcile_changes(spec, objects, OWNER)
    assert sorted(c.target["kind"] for c in changes if isinstance(c, AddOwner)) == [
        "ConfigMap",
        "Job",
    ]
    assert ("apply", "ConfigMap") not in kinds(changes)


def test_a_variant_the_plan_no_longer_has_loses_its_deployment_and_service() -> None:
    objects = converge(fp8_on_h100(), CLUSTER)
    bf16 = a_model().with_precisions("bf16").ungated().spec()
    _, changes = reconcile_changes(bf16, objects, OWNER)
    deleted = sorted((c.target["kind"], c.target["metadata"]["name"]) for c in changes
                     if isinstance(c, Delete))  # fmt: skip
    assert deleted == [("Deployment", "llama-h100-fp8"), ("Service", "llama-h100-fp8")]


@pytest.mark.parametrize(
    ("claims", "expected"),
    [([], [("apply", "PersistentVolumeClaim")]), (["engines"], [])],
    ids=["a missing claim is created", "an existing claim is left alone"],
)
def test_the_engine_store_claim_is_created_only_when_missing(
    claims: list[str], expected: list[tuple[str, str]]
) -> None:
    spec = a_model().with_precisions("fp8").ungated().with_store("engines", create=True).spec()
    objects = [H100] + [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": c, "namespace": "models"}}
        for c in claims
    ]  # fmt: skip
    _, changes = reconcile_changes(spec, objects, OWNER)
    assert [k for k in kinds(changes) if k[1] == "PersistentVolumeClaim"] == expected


def test_the_desired_hash_ignores_its_own_annotation_and_follows_the_object() -> None:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"a": 1}}
    marked = stamped(obj)
    assert marked["metadata"]["annotations"][HASH_ANNOTATION] == desired_hash(obj)
    assert desired_hash(marked) == desired_hash(obj)
    changed = copy.deepcopy(obj)
    changed["spec"]["a"] = 2
    assert desired_hash(changed) != desired_hash(obj)


def test_a_refused_variant_takes_the_refusal_as_its_reason_and_the_rest_is_unchanged() -> None:
    spec = a_model().with_precisions("fp8", "bf16").ungated().spec()
    plan, _ = reconcile_changes(spec, CLUSTER, OWNER)
    refusal = Refusal("ChildRejected", "Service x was refused by the API server: invalid")
    marked = mark_refused(plan, {"h100-fp8": refusal, None: refusal})
    by_name = {v.name: v for v in marked.variants}
    assert (by_name["h100-fp8"].reason, by_name["h100-fp8"].message) == (
        refusal.reason,
        refusal.message,
    )
    assert by_name["h100-bf16"] == next(v for v in plan.variants if v.name == "h100-bf16")
    assert refusal in marked.notes


def fail_jobs(objects: list[dict[str, object]]) -> list[dict[str, object]]:
    failed = copy.deepcopy(objects)
    for obj in failed:
        if obj["kind"] == "Job":
            obj["status"] = {"conditions": [{"type": "Failed", "status": "True"}]}
    return failed


def test_a_retry_deletes_the_failed_build_job_so_it_is_started_again() -> None:
    spec = fp8_on_h100()
    _, first = reconcile_changes(spec, CLUSTER, OWNER)
    failed = fail_jobs(apply_changes(CLUSTER, first, OWNER))
    _, without = reconcile_changes(spec, failed, OWNER)
    assert [c for c in without if isinstance(c, Delete)] == []
    _, changes = reconcile_changes(spec, failed, OWNER, retry=True)
    deleted = [c.target["kind"] for c in changes if isinstance(c, Delete)]
    assert deleted == ["Job"]
    _, after = reconcile_changes(spec, apply_changes(failed, changes, OWNER), OWNER)
    assert ("apply", "Job") in kinds(after), "the next reconcile builds again"


def test_a_deployment_that_lent_gpus_gets_its_replicas_back_when_the_build_fails() -> None:
    spec = a_model().with_precisions("fp8").ungated().with_replicas(2).spec()
    objects = converge(spec, CLUSTER)
    newer = a_model().with_precisions("fp8").ungated().with_replicas(2).with_revision("v2")
    _, build = reconcile_changes(newer.spec(), objects, OWNER)
    objects = fail_jobs(apply_changes(objects, build, OWNER))
    plan, _ = reconcile_changes(newer.spec(), objects, OWNER)
    live = next(o for o in objects if o["kind"] == "Deployment")
    # It lent one replica's GPUs to the build, as qmo applied it then.
    lending = stamped(
        build_deployment(
            newer.spec(), plan.variants[0], OWNER,
            key=live["metadata"]["annotations"]["qmo.dev/revision"], replicas=1,
        )
    )  # fmt: skip
    objects = [o for o in objects if o is not live] + [lending]
    _, changes = reconcile_changes(newer.spec(), objects, OWNER)
    restored = [c.obj for c in changes if isinstance(c, Apply) and c.obj["kind"] == "Deployment"]
    assert [d["spec"]["replicas"] for d in restored] == [2]


def test_the_eval_job_runs_the_evaluator_image_the_spec_names() -> None:
    config = OperatorConfig(
        builder_image="qmo-builder:test",
        evaluator_image="qmo-eval:test",
        allowed_images=("qmo-builder:test", "qmo-eval:test", "registry.local/*", "nvcr.io/*"),
    )
    benchmarks = [{"name": "gsm8k", "dataset": {"path": "benchmarks/gsm8k.jsonl"}}]
    spec = (
        a_model()
        .with_precisions("fp8")
        .with_quality(benchmarks=benchmarks, evaluatorImage="registry.local/eval:2")
        .spec()
    )
    objects = CLUSTER
    eval_jobs = []
    for _ in range(6):
        _, changes = reconcile_changes(spec, objects, OWNER, config)
        eval_jobs += [
            c.obj
            for c in changes
            if isinstance(c, Apply)
            and c.obj["kind"] == "Job"
            and c.obj["metadata"]["labels"].get("app.kubernetes.io/component") == "evaluation"
        ]
        objects = ready_deployments(complete_jobs(apply_changes(objects, changes, OWNER)))
    assert eval_jobs, "an eval Job once candidate and baseline serve"
    images = {
        c["image"] for job in eval_jobs for c in job["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.local/eval:2"}
