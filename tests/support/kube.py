"""Access to the test cluster: API clients and waits that follow watches, never sleeps."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from e2e.cluster import FLEETS_DIR, LocalCluster
from e2e.cluster.binaries import ensure_binaries

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ClusterHandle:
    """A cluster the tests may use: the local control plane, or one given by KUBECONFIG."""

    kubeconfig: str
    local: LocalCluster | None
    api: client.ApiClient

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def autoscaling(self) -> client.AutoscalingV2Api:
        return client.AutoscalingV2Api(self.api)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl (the pinned build) against this cluster; raises on failure when `check`."""
        result = subprocess.run(
            [ensure_binaries().path("kubectl"), "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply_yaml(self, text: str, namespace: str | None = None) -> None:
        args = ["apply", "--server-side", "--field-manager=qmo-tests", "-f", "-"]
        self.kubectl(*args, *(["-n", namespace] if namespace else []), input=text)

    def model(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom().get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return found

    def wait_for_model(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: int = 120,
        describe: str = "the QuantizedModel",
    ) -> dict[str, Any]:
        try:
            found: dict[str, Any] = wait_for(
                self.custom().list_namespaced_custom_object,
                lambda o: o["metadata"]["name"] == name and predicate(o),
                timeout=timeout,
                describe=describe,
                group=GROUP,
                version=VERSION,
                namespace=namespace,
                plural=PLURAL,
            )
        except AssertionError as timed_out:
            # What the model said when the wait gave up: a CI log then shows why it never got there.
            try:
                said = status_summary(self.model(namespace, name).get("status") or {})
            except ApiException as err:
                said = f"unreadable ({err.status})"
            raise AssertionError(f"{timed_out}; its status then: {said}") from None
        return found


GROUP, VERSION, PLURAL = "qmo.dev", "v1alpha1", "quantizedmodels"


def status_summary(status: dict[str, Any]) -> str:
    """A QuantizedModel's conditions and variants in one line, for a failed wait's message."""
    conditions = [
        f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message')})"
        for c in status.get("conditions") or []
    ]
    variants = [
        f"{v.get('name')}: {v.get('phase')}, quality {v.get('quality') or {}}"
        for v in status.get("variants") or []
    ]
    return "; ".join([*conditions, *variants]) or "none"


def condition(model: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (model.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            found: dict[str, Any] = cond
            return found
    return {}


def variants(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in (model.get("status") or {}).get("variants") or []}


def is_ready(model: dict[str, Any]) -> bool:
    generation = model["metadata"]["generation"]
    status = model.get("status") or {}
    return (
        status.get("observedGeneration") == generation
        and condition(model, "Ready").get("status") == "True"
    )


def open_test_cluster(name: str, fleet: str = "mixed.yaml") -> Iterator[ClusterHandle]:
    """Start the local control plane with a fleet of e2e/fleets (the mixed one unless told),
    or use QMO_TEST_KUBECONFIG."""
    given = os.environ.get("QMO_TEST_KUBECONFIG")
    if given:
        yield ClusterHandle(given, None, config.new_client_from_config(config_file=given))
        return
    local = LocalCluster.start(name, FLEETS_DIR / fleet)
    try:
        api = config.new_client_from_config(config_file=local.kubeconfig)
        yield ClusterHandle(local.kubeconfig, local, api)
    finally:
        local.stop()


def apply_crds(cluster: ClusterHandle) -> None:
    """The CRDs from crds/, applied the way users apply them, and Established."""
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/quantizedmodels.qmo.dev", "crd/qualityreports.qmo.dev",
    )  # fmt: skip


def apply_gateway_api_crds(cluster: ClusterHandle) -> Path:
    """The Gateway API's standard CRDs (pinned, from its Go module), applied as its docs say,
    and Established; returns their directory."""
    crds = ensure_binaries().gateway_api_crds
    cluster.kubectl("apply", "--server-side", "-f", str(crds))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/httproutes.gateway.networking.k8s.io", "crd/gateways.gateway.networking.k8s.io",
    )  # fmt: skip
    return crds


def apply_keda_crds(cluster: ClusterHandle) -> Path:
    """KEDA's ScaledObject CRD (pinned, from its Go module), applied, and Established."""
    crds = ensure_binaries().keda_crds
    cluster.kubectl("apply", "--server-side", "-f", str(crds))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/scaledobjects.keda.sh"
    )  # fmt: skip
    return crds


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(
    list_fn: Callable[..., Any],
    predicate: Callable[[Any], bool],
    *,
    timeout: int = 120,
    describe: str = "condition",
    **list_kwargs: Any,
) -> Any:
    """First object from `list_fn` (a list_* API call) that satisfies `predicate`.

    Lists once, then follows a watch from that list's resourceVersion, so no change can slip
    between the two and no polling interval is needed.
    """
    listing = list_fn(**list_kwargs)
    items = listing["items"] if isinstance(listing, dict) else listing.items
    for item in items:
        if predicate(item):
            return item
    version = (
        listing["metadata"]["resourceVersion"]
        if isinstance(listing, dict)
        else listing.metadata.resource_version
    )
    stream = watch.Watch()
    try:
        for event in stream.stream(
            list_fn, resource_version=version, timeout_seconds=timeout, **list_kwargs
        ):
            if event["type"] != "DELETED" and predicate(event["object"]):
                return event["object"]
    finally:
        stream.stop()
    raise AssertionError(f"timed out after {timeout}s waiting for {describe}")


def delete_namespace(core: client.CoreV1Api, name: str) -> None:
    with suppress(client.ApiException):
        core.delete_namespace(name)


def wait_until_none(
    list_fn: Callable[..., Any],
    *,
    timeout: int = 120,
    describe: str = "objects",
    **list_kwargs: Any,
) -> None:
    """Wait until `list_fn` lists nothing, re-checking on each watch event of that kind."""

    def empty() -> tuple[bool, str]:
        listing = list_fn(**list_kwargs)
        return not listing.items, listing.metadata.resource_version

    done, version = empty()
    if done:
        return
    stream = watch.Watch()
    try:
        for _ in stream.stream(
            list_fn, resource_version=version, timeout_seconds=timeout, **list_kwargs
        ):
            if empty()[0]:
                return
    finally:
        stream.stop()
    raise AssertionError(f"timed out after {timeout}s waiting for {describe} to be gone")
