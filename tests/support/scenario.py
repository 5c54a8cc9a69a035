"""Scenario helpers for the cluster tests: QuantizedModels and the objects they create."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.support.kube import GROUP, PLURAL, VERSION, ClusterHandle, is_ready

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
