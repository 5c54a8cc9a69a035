"""The informer against the real API server: list, watch, re-list, and the operator's writes."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from qmo.controller.informer import Informer
from qmo.controller.projections import DRIFTED
from qmo.kube import Kube, connect
from qmo.resources import CONFIG_MAPS, DEPLOYMENTS
from tests.support.kube import ClusterHandle

Obj = dict[str, Any]
SELECTOR = "qmo.dev/test=informer"


@pytest.fixture
def kube(cluster: ClusterHandle) -> Kube:
    return connect(kubeconfig=cluster.kubeconfig)


def config_map(namespace: str, name: str, value: str, labelled: bool = True) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace}
    if labelled:
        meta["labels"] = {"qmo.dev/test": "informer", "app.kubernetes.io/component": "artifact"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {"artifact.json": value},
    }


class Changes:
    """What an informer reported, as a queue a test waits on (no sleeps)."""

    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[str | None, str | None, str | None]] = queue.Queue()

    def __call__(self, old: Obj | None, new: Obj | None) -> None:
        name = (new or old or {}).get("metadata", {}).get("name")
        value = (new or {}).get("data", {}).get("artifact.json")
        self.seen.put(("deleted" if new is None else "changed", name, value))

    def next(self) -> tuple[str | None, str | None, str | None]:
        return self.seen.get(timeout=30)


@pytest.fixture
def informer(kube: Kube, namespace: str) -> Iterator[tuple[Informer, Changes]]:
    changes = Changes()
    found = Informer(
        kube, CONFIG_MAPS, namespace=namespace, label_selector=SELECTOR, on_change=changes
    )
    found.start()
    assert found.synced.wait(30)
    yield found, changes
    found.stop()


def test_it_lists_watches_and_filters_on_the_server(
    kube: Kube, namespace: str, informer: tuple[Informer, Changes]
) -> None:
    found, changes = informer
    kube.apply(config_map(namespace, "unlabelled", "{}", labelled=False))
    kube.apply(config_map(namespace, "a", '{"v": 1}'))
    assert changes.next() == ("changed", "a", '{"v": 1}'), "the unlabelled one is never streamed"
    kube.apply(config_map(namespace, "a", '{"v": 2}'))
    assert changes.next() == ("changed", "a", '{"v": 2}')
    assert found.get(namespace, "a")["data"] == {"artifact.json": '{"v": 2}'}
    kube.delete(config_map(namespace, "a", ""))
    assert changes.next() == ("deleted", "a", None)
    assert found.get(namespace, "a") is None
    assert found.get(namespace, "unlabelled") is None


def test_a_relist_reports_what_was_deleted_while_nobody_watched(kube: Kube, namespace: str) -> None:
    changes = Changes()
    found = Informer(
        kube, CONFIG_MAPS, namespace=namespace, label_selector=SELECTOR, on_change=changes
    )
    kube.apply(config_map(namespace, "kept", "{}"))
    kube.apply(config_map(namespace, "gone", "{}"))
    found.relist()
    assert {changes.next()[1], changes.next()[1]} == {"kept", "gone"}
    kube.delete(config_map(namespace, "gone", ""))  # no watch is running: the event is missed
    found.relist()
    assert changes.next() == ("deleted", "gone", None)
    assert [o["metadata"]["name"] for o in found.items()] == ["kept"]


def test_the_operators_own_write_is_seen_at_once_and_older_events_do_not_undo_it(
    kube: Kube, namespace: str
) -> None:
    changes = Changes()
    found = Informer(
        kube, CONFIG_MAPS, namespace=namespace, label_selector=SELECTOR, on_change=changes
    )
    first = kube.apply(config_map(namespace, "w", '{"v": 1}'))
    found.relist()
    changes.next()
    second = kube.apply(config_map(namespace, "w", '{"v": 2}'))
    found.observe_write(second)
    assert found.get(namespace, "w")["data"] == {"artifact.json": '{"v": 2}'}
    found.observe_write(first)  # as a late watch event of the first version would arrive
    assert found.get(namespace, "w")["data"] == {"artifact.json": '{"v": 2}'}
    assert changes.seen.empty(), "the operator's own writes wake no reconcile"


def a_deployment(namespace: str, name: str, replicas: int) -> Obj:
    labels = {"qmo.dev/test": "informer", "app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": "server:1"}]},
            },
        },
    }


def test_a_scale_is_not_drift_and_an_edit_of_the_template_is(
    kube: Kube, cluster: ClusterHandle, namespace: str
) -> None:
    seen: queue.Queue[Obj] = queue.Queue()
    found = Informer(
        kube,
        DEPLOYMENTS,
        namespace=namespace,
        label_selector=SELECTOR,
        on_change=lambda _old, new: seen.put(new or {}),
        track_drift=True,
    )
    found.start()
    try:
        assert found.synced.wait(30)
        found.observe_write(kube.apply(a_deployment(namespace, "served", 1)))

        def next_with(replicas: int) -> Obj:
            while True:
                obj = seen.get(timeout=60)
                if obj.get("spec", {}).get("replicas") == replicas:
                    return obj

        # The HPA controller's way: the scale subresource (the generation moves).
        apps = client.AppsV1Api(cluster.api)
        apps.patch_namespaced_deployment_scale("served", namespace, {"spec": {"replicas": 3}})
        scaled = next_with(3)
        assert scaled["metadata"]["generation"] == 2
        assert DRIFTED not in scaled["metadata"], "a scale is the scaler's, not drift"

        template = {"spec": {"replicas": 4, "template": {"metadata": {"annotations": {"x": "y"}}}}}
        apps.patch_namespaced_deployment("served", namespace, template)
        edited = next_with(4)
        assert edited["metadata"].get(DRIFTED) is True
    finally:
        found.stop()
