"""What the cache keeps of each object: what reconciles read, and no more."""

from __future__ import annotations

import copy
from typing import Any

from qmo.controller.projections import project, record_cache_key
from tests.support.builders import gpu_node

Obj = dict[str, Any]
NOISY_META = {
    "resourceVersion": "42",
    "managedFields": [{"manager": "kube-controller-manager"}],
    "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        "deployment.kubernetes.io/revision": "3",
        "qmo.dev/revision": "k" * 64,
    },
}


def a_deployment(**status: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llama-h100-fp8", "namespace": "m", "generation": 2, **NOISY_META},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "server"}]}}},
        "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 2, **status},
    }


def test_a_deployment_keeps_replicas_readiness_and_qmos_annotations_only() -> None:
    kept = project(a_deployment())
    assert kept == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "llama-h100-fp8",
            "namespace": "m",
            "generation": 2,
            "annotations": {"qmo.dev/revision": "k" * 64},
        },
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 2},
    }


def test_a_change_qmo_never_reads_projects_to_the_same_object() -> None:
    before = project(a_deployment(availableReplicas=1))
    after = project(a_deployment(availableReplicas=2, conditions=[{"type": "Available"}]))
    assert before == after, "such an event must not wake a reconcile"


def test_a_node_heartbeat_projects_to_the_same_node() -> None:
    node = gpu_node("h100")
    node["metadata"]["labels"]["kubernetes.io/hostname"] = "h100-node"
    beat = copy.deepcopy(node)
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-11-29T20:00:00Z"
    beat["status"]["images"] = [{"names": ["x"]}]
    assert project(node) == project(beat)
    assert "kubernetes.io/hostname" not in project(node)["metadata"]["labels"]
    assert project(node)["status"]["allocatable"] == {"nvidia.com/gpu": "8"}


def test_a_build_pod_keeps_the_builders_termination_message_and_scheduling() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "m", "labels": {"job-name": "j"}},
        "spec": {"containers": [{"name": "builder"}]},
        "status": {
            "phase": "Failed",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None},
                {"type": "Ready", "status": "False"},
            ],
            "containerStatuses": [
                {"name": "builder", "image": "x", "restartCount": 0,
                 "state": {"terminated": {"message": "{}", "finishedAt": "t", "exitCode": 3}}},
                {"name": "sidecar", "state": {}},
            ],
        },
    }  # fmt: skip
    kept = project(pod)
    assert kept["status"] == {
        "phase": "Failed",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [
            {"name": "builder",
             "state": {"terminated": {"message": "{}", "finishedAt": "t", "exitCode": 3}}}
        ],
    }  # fmt: skip


def test_an_eval_pod_keeps_the_evaluators_scores_and_exit_code() -> None:
    message = '{"results":[["arithmetic",0.8,0.8,true,4]]}'
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "m", "labels": {"job-name": "qmo-eval-j"}},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "evaluator", "image": "x", "imageID": "sha256:1", "ready": False,
                 "state": {"terminated": {"message": message, "exitCode": 0, "reason": "Done",
                                          "finishedAt": "t", "startedAt": "s"}}},
            ],
        },
    }  # fmt: skip
    (evaluator,) = project(pod)["status"]["containerStatuses"]
    assert evaluator == {
        "name": "evaluator",
        "state": {"terminated": {"message": message, "finishedAt": "t", "exitCode": 0}},
    }


def test_only_artifact_records_keep_their_data_and_are_found_by_full_key() -> None:
    record = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "qmo-artifact-1", "namespace": "m",
                     "labels": {"app.kubernetes.io/component": "artifact"}},
        "data": {"artifact.json": '{"cacheKey": "full-key", "state": "Succeeded"}'},
    }  # fmt: skip
    other = {**record, "metadata": {"name": "bench", "namespace": "m", "labels": {}},
             "data": {"benchmarks.json": "[...]"}}  # fmt: skip
    assert record_cache_key(project(record)) == "full-key"
    assert "data" not in project(other)
