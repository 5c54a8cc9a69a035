"""Scenario helpers for the cluster tests: QuantizedModels and the objects they create."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from tests.support.kube import GROUP, PLURAL, VERSION, ClusterHandle, is_ready, wait_for

SIZE = {"parametersBillions": 8.03, "numLayers": 32, "numKeyValueHeads": 8, "headDim": 128}


def a_model(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {
            "source": "hf://meta-llama/Llama-3.1-8B-Instruct",
            "revision": "v1",
            "size": SIZE,
        },
        "precisions": ["auto"],
        "quality": {"gate": "off"},
    }
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "QuantizedModel",
        "metadata": {"name": name},
        "spec": body,
    }


def create(cluster: ClusterHandle, namespace: str, body: dict[str, Any]) -> None:
    cluster.custom().create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def patch_spec(cluster: ClusterHandle, namespace: str, name: str, spec: dict[str, Any]) -> None:
    cluster.custom().patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
    )


def wait_ready(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    return cluster.wait_for_model(namespace, name, is_ready, describe=f"{name} to be Ready")


def build_jobs(cluster: ClusterHandle, namespace: str) -> list[client.V1Job]:
    jobs: list[client.V1Job] = (
        cluster.batch()
        .list_namespaced_job(namespace, label_selector="app.kubernetes.io/component=build")
        .items
    )
    return jobs


def events(cluster: ClusterHandle, namespace: str, name: str) -> list[client.CoreV1Event]:
    found: list[client.CoreV1Event] = (
        cluster.core()
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        .items
    )
    return found


def deployment(cluster: ClusterHandle, namespace: str, name: str) -> client.V1Deployment:
    found: client.V1Deployment = cluster.apps().read_namespaced_deployment(name, namespace)
    return found


def eval_job(cluster: ClusterHandle, namespace: str, key: str | None = None) -> client.V1Job:
    """The model's eval Job (for revision `key`, when given), once qmo has created it."""
    found: client.V1Job = wait_for(
        cluster.batch().list_namespaced_job,
        lambda j: key is None or j.metadata.annotations.get("qmo.dev/revision") == key,
        namespace=namespace,
        label_selector="app.kubernetes.io/component=evaluation",
        describe="the eval Job",
    )
    return found


def finish_job_pod(
    cluster: ClusterHandle, namespace: str, job: str, message: str = ""
) -> client.V1Pod:
    """End a held Job's pod (kwok keeps eval pods and 'e2e-hold-' builds running until a test
    ends them) as the kubelet would after its program wrote `message` to
    /dev/termination-log and exited 0; the Job controller then completes the Job.

    Waits for kwok to have the pod Running first: a pod patched while still Pending would be
    moved back to Running by kwok's stage, and its Job would never finish. Returns the pod as
    the Job controller made it."""
    pod: client.V1Pod = wait_for(
        cluster.core().list_namespaced_pod,
        lambda p: p.status.phase == "Running",
        namespace=namespace,
        label_selector=f"job-name={job}",
        timeout=120,
        describe=f"the pod of Job {job} to run",
    )
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    terminated = {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
    if message:
        terminated["message"] = message
    statuses = [
        {"name": c.name, "image": c.image, "imageID": "", "ready": False, "restartCount": 0,
         "state": {"terminated": terminated}}
        for c in pod.spec.containers
    ]  # fmt: skip
    cluster.core().patch_namespaced_pod_status(
        pod.metadata.name,
        namespace,
        {"status": {"phase": "Succeeded", "containerStatuses": statuses}},
    )
    return pod
