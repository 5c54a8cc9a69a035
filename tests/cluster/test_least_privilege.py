"""The chart's RBAC is enough, and no more: the operator runs with its ServiceAccount's token
through a whole gated rollout, and the API server's own authorizer says that identity cannot
hand rights on.

The can-i table in test_install.py lists what the ServiceAccount may and may not do; this
proves that what it may do suffices (the eval Job's scores reach the gate through its pod's
termination message, and the operator writes the report), that the eval pod runs with no
token, and, through SubjectAccessReviews, that the operator can neither bind a role nor create
a binding or an identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from e2e.operator_process import OperatorProcess
from qmo.api.evalcontract import EvalResult
from qmo.evaluator.report import result
from tests.cluster.test_install import Release, install, make_namespace, uninstall
from tests.support.kube import ClusterHandle, delete_namespace, is_ready, unique_name, wait_for
from tests.support.scenario import a_model, create, eval_job, finish_job_pod


def token_kubeconfig(cluster: ClusterHandle, release: Release, path: Path) -> str:
    """A kubeconfig that authenticates as the operator's ServiceAccount, nothing more."""
    token = cluster.kubectl(
        "create", "token", release.operator, "-n", release.namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    server = admin["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": server}],
                "users": [{"name": "qmo", "user": {"token": token}}],
                "contexts": [{"name": "qmo", "context": {"cluster": "c", "user": "qmo"}}],
                "current-context": "qmo",
            }
        )
    )
    return str(path)


@pytest.fixture
def installed(cluster: ClusterHandle, namespace: str, crds: None) -> Iterator[Release]:
    """The chart in namespaced mode, watching the test's namespace."""
    release = Release(unique_name("qmo"), make_namespace(cluster, "qmo-sys"))
    try:
        install(cluster, release, {"watchNamespaces": f"{{{namespace}}}"})
        yield release
    finally:
        uninstall(cluster, release)
        delete_namespace(cluster.core(), release.namespace)


def may(cluster: ClusterHandle, release: Release, namespace: str | None, **attributes: str) -> bool:
    """The API server's authorizer on whether the operator's ServiceAccount may do it."""
    user = f"system:serviceaccount:{release.namespace}:{release.operator}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{release.namespace}",
              "system:authenticated"]  # fmt: skip
    review = client.AuthorizationV1Api(cluster.api).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=groups,
                resource_attributes=client.V1ResourceAttributes(namespace=namespace, **attributes),
            )
        )
    )
    return bool(review.status.allowed)


RBAC = "rbac.authorization.k8s.io"
# What would let a stolen operator token outlive its rotation: bind a role to an identity of
# its choosing, create one, or mint it a token. (verb, group, resource, name)
HANDS_RIGHTS_ON = [
    ("bind", RBAC, "clusterroles", "cluster-admin"),
    ("bind", RBAC, "clusterroles", "{operator}"),
    ("bind", RBAC, "clusterroles", "{release}-evaluator"),
    ("bind", RBAC, "roles", "admin"),
    ("escalate", RBAC, "clusterroles", "{operator}"),
    ("create", RBAC, "rolebindings", ""),
    ("patch", RBAC, "rolebindings", "qmo-evaluator"),
    ("create", RBAC, "clusterrolebindings", ""),
    ("create", "", "serviceaccounts", ""),
    ("create", "", "serviceaccounts/token", "default"),
    ("impersonate", "", "serviceaccounts", "default"),
]


@pytest.mark.usefixtures("engine_store")
def test_the_operator_runs_a_gated_rollout_with_only_the_charts_permissions(
    cluster: ClusterHandle,
    namespace: str,
    installed: Release,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    kubeconfig = token_kubeconfig(cluster, installed, tmp_path / "sa.kubeconfig")
    log = tmp_path / "sa-operator.log"
    least = OperatorProcess(kubeconfig, log, "--namespace", namespace)
    operator.kill()  # one operator per namespace: the session's watches every namespace
    try:
        least.start()
        quality = {
            "gate": "after-rollout",
            "benchmarks": [{"name": "arithmetic", "dataset": {"path": "benchmarks/a.jsonl"}}],
        }
        create(
            cluster,
            namespace,
            a_model("least", precisions=["bf16", "fp8"], gpu={"classes": ["h100"]},
                    quality=quality),
        )  # fmt: skip
        cluster.wait_for_model(namespace, "least", is_ready, describe="the model to be Ready")
        job = eval_job(cluster, namespace)
        # The eval pod runs the model author's code: no ServiceAccount of qmo's, no token.
        template = job.spec.template.spec
        assert template.automount_service_account_token is False
        assert template.service_account_name is None
        managed = {"label_selector": "app.kubernetes.io/managed-by=qmo"}
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        assert cluster.core().list_namespaced_service_account(namespace, **managed).items == []
        assert rbac.list_namespaced_role_binding(namespace, **managed).items == []
        # The scores leave through the termination message; the operator writes the report
        # (create and patch on qualityreports) and judges it (the status subresource).
        scores = [result("arithmetic", 0.8, 0.8, higher_is_better=True, samples=4)]
        pod = finish_job_pod(
            cluster, namespace, job.metadata.name, EvalResult.of(scores, None).to_message()
        )
        assert pod.spec.automount_service_account_token is False
        assert pod.spec.service_account_name == "default"
        mounts = [m.mount_path for c in pod.spec.containers for m in c.volume_mounts or []]
        assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts
        assert not [v for v in pod.spec.volumes if v.projected is not None]
        judged = wait_for(
            cluster.custom().list_namespaced_custom_object,
            lambda r: (r.get("status") or {}).get("verdict") == "Pass",
            group="qmo.dev", version="v1alpha1", namespace=namespace, plural="qualityreports",
            describe="the report qmo wrote to be judged",
        )  # fmt: skip
        assert judged["spec"]["cacheKey"] == job.metadata.annotations["qmo.dev/revision"]
        assert "Forbidden" not in log.read_text()
        assert "forbidden" not in log.read_text()
    finally:
        least.stop()
        operator.start()

    assert may(cluster, installed, namespace, verb="create", group="qmo.dev",
               resource="qualityreports")  # fmt: skip
    for verb, group, resource, name in HANDS_RIGHTS_ON:
        named = name.format(operator=installed.operator, release=installed.name)
        kind, _, subresource = resource.partition("/")
        for where in (namespace, None):
            attributes = {"verb": verb, "group": group, "resource": kind, "name": named}
            if subresource:
                attributes["subresource"] = subresource
            assert not may(cluster, installed, where, **attributes), (attributes, where)
