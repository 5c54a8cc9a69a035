"""The install paths on the real control plane: `helm install`/`upgrade` (cluster-wide and
namespaced), `kubectl apply --server-side` of crds/ and of the rendered manifest, and the
operator ServiceAccount's rights, checked with `kubectl auth can-i`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client

from tests.support.chart import CHART, helm, set_flags
from tests.support.kube import REPO, ClusterHandle, delete_namespace, unique_name, wait_for


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str

    @property
    def operator(self) -> str:
        return f"{self.name}-operator"

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.operator}"


def helm_on(cluster: ClusterHandle, *args: str) -> str:
    return helm("--kubeconfig", cluster.kubeconfig, *args).stdout


def install(cluster: ClusterHandle, release: Release, values: dict[str, str]) -> str:
    """Install and wait for the operator to be available; helm's output (with NOTES.txt)."""
    return helm_on(
        cluster, "install", release.name, str(CHART), "--namespace", release.namespace,
        "--wait", "--timeout", "90s", *set_flags(values),
    )  # fmt: skip


def upgrade(cluster: ClusterHandle, release: Release, values: dict[str, str]) -> None:
    helm_on(
        cluster, "upgrade", release.name, str(CHART), "--namespace", release.namespace,
        "--wait", "--timeout", "90s", *set_flags(values),
    )  # fmt: skip


def uninstall(cluster: ClusterHandle, release: Release) -> None:
    helm("--kubeconfig", cluster.kubeconfig, "uninstall", release.name, "-n", release.namespace,
         check=False)  # fmt: skip


def make_namespace(cluster: ClusterHandle, prefix: str) -> str:
    name = unique_name(prefix)
    cluster.core().create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


SUBRESOURCES = {"status", "exec", "token", "log"}


def can_i(cluster: ClusterHandle, who: str, verb: str, what: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else []
    subresource = []
    resource, _, tail = what.partition("/")
    if tail in SUBRESOURCES:  # otherwise kubectl reads RESOURCE/NAME
        what, subresource = resource, [f"--subresource={tail}"]
    result = cluster.kubectl(
        "auth", "can-i", verb, what, *subresource, *scope, f"--as={who}", check=False
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


@pytest.fixture(scope="module")
def cluster_wide(cluster: ClusterHandle, crds: None) -> Iterator[Release]:
    """One release with default values, shared by the read-only checks below."""
    release = Release(unique_name("qmo"), make_namespace(cluster, "qmo-sys"))
    install(cluster, release, {})
    yield release
    uninstall(cluster, release)
    delete_namespace(cluster.core(), release.namespace)


def test_helm_install_creates_a_hardened_available_operator(
    cluster: ClusterHandle, cluster_wide: Release
) -> None:
    deployment = cluster.apps().read_namespaced_deployment(
        cluster_wide.operator, cluster_wide.namespace
    )
    assert deployment.status.available_replicas == 1
    pod = deployment.spec.template.spec
    assert pod.service_account_name == cluster_wide.operator
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    container = pod.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    assert container.liveness_probe.http_get.path == "/healthz"
    assert container.resources.limits["memory"] == "512Mi"
    assert "--leader-elect" in container.args

    core = cluster.core()
    core.read_namespaced_service_account(cluster_wide.operator, cluster_wide.namespace)
    service = core.read_namespaced_service(
        f"{cluster_wide.operator}-metrics", cluster_wide.namespace
    )
    assert [p.target_port for p in service.spec.ports] == ["metrics"]
    pdb = client.PolicyV1Api(cluster.api).read_namespaced_pod_disruption_budget(
        cluster_wide.operator, cluster_wide.namespace
    )
    assert pdb.spec.max_unavailable == 1
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    role = rbac.read_cluster_role(cluster_wide.operator)
    assert all("secrets" not in rule.resources for rule in role.rules)
    released = rbac.list_cluster_role(
        label_selector=f"app.kubernetes.io/instance={cluster_wide.name}"
    )
    assert [r.metadata.name for r in released.items] == [cluster_wide.operator], "no evaluator role"


# (verb, resource, namespace: None = the release's, "*" = another one, "" = cluster scope)
ALLOWED = [
    ("list", "quantizedmodels.qmo.dev", "*"),
    ("watch", "quantizedmodels.qmo.dev", "*"),
    ("patch", "quantizedmodels.qmo.dev/status", "*"),
    ("patch", "qualityreports.qmo.dev/status", "*"),
    ("create", "qualityreports.qmo.dev", "*"),
    ("patch", "qualityreports.qmo.dev", "*"),
    ("create", "jobs.batch", "*"),
    ("delete", "jobs.batch", "*"),
    ("patch", "deployments.apps", "*"),
    ("delete", "services", "*"),
    ("create", "configmaps", "*"),
    ("create", "persistentvolumeclaims", "*"),
    ("watch", "pods", "*"),
    ("create", "events", "*"),
    ("list", "nodes", ""),
    ("watch", "nodes", ""),
    ("create", "leases.coordination.k8s.io", None),
    ("update", "leases.coordination.k8s.io/{release}-operator", None),
]
FORBIDDEN = [
    # Reads come from watches: no GET, no update where server-side apply only patches.
    ("get", "quantizedmodels.qmo.dev", "*"),
    ("get", "pods", "*"),
    ("get", "nodes", ""),
    ("update", "quantizedmodels.qmo.dev/status", "*"),
    ("update", "deployments.apps", "*"),
    ("delete", "configmaps", "*"),
    ("create", "events.events.k8s.io", "*"),
    ("patch", "events", "*"),
    ("patch", "serviceaccounts/default", "*"),
    ("patch", "rolebindings.rbac.authorization.k8s.io/admin", "*"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("get", "secrets", "*"),
    ("list", "secrets", "*"),
    ("watch", "secrets", None),
    ("get", "secrets", None),
    ("delete", "persistentvolumeclaims", "*"),
    ("patch", "nodes", ""),
    ("delete", "nodes", ""),
    ("patch", "quantizedmodels.qmo.dev", "*"),
    ("update", "quantizedmodels.qmo.dev", "*"),
    ("delete", "quantizedmodels.qmo.dev", "*"),
    ("get", "qualityreports.qmo.dev", "*"),
    ("delete", "qualityreports.qmo.dev", "*"),
    ("create", "pods", "*"),
    ("create", "pods/exec", "*"),
    ("get", "pods/log", "*"),
    # Eval Jobs run with no token: the operator creates no identity and binds nothing.
    ("create", "serviceaccounts", "*"),
    ("patch", "serviceaccounts/qmo-evaluator", "*"),
    ("create", "serviceaccounts/token", "*"),
    ("delete", "serviceaccounts", "*"),
    ("list", "serviceaccounts", "*"),
    ("create", "rolebindings.rbac.authorization.k8s.io", "*"),
    ("patch", "rolebindings.rbac.authorization.k8s.io/qmo-evaluator", "*"),
    ("delete", "rolebindings.rbac.authorization.k8s.io", "*"),
    ("bind", "clusterroles.rbac.authorization.k8s.io/{release}-operator", "*"),
    ("bind", "clusterroles.rbac.authorization.k8s.io/{release}-evaluator", "*"),
    ("bind", "roles.rbac.authorization.k8s.io", "*"),
    ("create", "roles.rbac.authorization.k8s.io", "*"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin", "*"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("list", "namespaces", ""),
    ("create", "leases.coordination.k8s.io", "*"),
    ("update", "leases.coordination.k8s.io/someone-elses-lease", None),
    ("delete", "leases.coordination.k8s.io/{release}-operator", None),
    ("impersonate", "users", ""),
]


def _ids(rows: list[tuple[str, str, str | None]], answer: str) -> list[str]:
    where = {None: "in its own namespace", "*": "in any namespace", "": "cluster-wide"}
    return [f"{answer} {verb} {what.split('/', 1)[0] if '{' in what else what} {where[ns]}"
            for verb, what, ns in rows]  # fmt: skip


@pytest.mark.parametrize(
    ("verb", "what", "namespace", "allowed"),
    [(*row, True) for row in ALLOWED] + [(*row, False) for row in FORBIDDEN],
    ids=_ids(ALLOWED, "may") + _ids(FORBIDDEN, "may not"),
)
def test_the_operator_service_account_can_do_what_it_needs_and_nothing_more(
    cluster: ClusterHandle,
    cluster_wide: Release,
    verb: str,
    what: str,
    namespace: str | None,
    allowed: bool,
) -> None:
    scope = {None: cluster_wide.namespace, "*": "any-team", "": None}[namespace]
    target = what.format(release=cluster_wide.name)
    assert can_i(cluster, cluster_wide.service_account, verb, target, scope) is allowed


def test_namespaced_mode_grants_rights_only_in_watched_namespaces_across_upgrades(
    cluster: ClusterHandle, crds: None
) -> None:
    team_a, team_b = make_namespace(cluster, "team-a"), make_namespace(cluster, "team-b")
    release = Release(unique_name("qmo"), make_namespace(cluster, "qmo-sys"))
    sa = release.service_account
    try:
        notes = install(cluster, release, {"watchNamespaces": f"{{{team_a},{team_b}}}"})
        assert f"It watches QuantizedModels in: {team_a}, {team_b} (namespaced mode)" in notes
        deployment = cluster.apps().read_namespaced_deployment(release.operator, release.namespace)
        args = deployment.spec.template.spec.containers[0].args
        assert {f"--namespace={team_a}", f"--namespace={team_b}"} <= set(args)
        for namespace in (team_a, team_b):
            assert can_i(cluster, sa, "create", "jobs.batch", namespace)
            assert can_i(cluster, sa, "watch", "quantizedmodels.qmo.dev", namespace)
            assert not can_i(cluster, sa, "get", "secrets", namespace)
        assert not can_i(cluster, sa, "create", "jobs.batch", "unwatched")
        assert not can_i(cluster, sa, "list", "quantizedmodels.qmo.dev", release.namespace)
        assert can_i(cluster, sa, "list", "nodes", None)
        assert not can_i(cluster, sa, "list", "namespaces", None), "kopf watches nothing itself"
        operator_role = f"clusterroles.rbac.authorization.k8s.io/{release.operator}"
        assert not can_i(cluster, sa, "bind", operator_role, team_a)
        assert not can_i(cluster, sa, "create", "rolebindings.rbac.authorization.k8s.io", team_a)

        upgrade(cluster, release, {"watchNamespaces": f"{{{team_a}}}", "replicaCount": "2"})
        assert can_i(cluster, sa, "create", "jobs.batch", team_a)
        assert not can_i(cluster, sa, "create", "jobs.batch", team_b)
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        left = [r.metadata.name for r in rbac.list_namespaced_role(team_b).items]
        assert release.operator not in left
        deployment = cluster.apps().read_namespaced_deployment(release.operator, release.namespace)
        assert deployment.status.available_replicas == 2
        assert f"--namespace={team_b}" not in deployment.spec.template.spec.containers[0].args
    finally:
        uninstall(cluster, release)
        for namespace in (team_a, team_b, release.namespace):
            delete_namespace(cluster.core(), namespace)


def test_helm_upgrade_scales_to_two_replicas_and_removes_a_disabled_service(
    cluster: ClusterHandle, crds: None, namespace: str
) -> None:
    release = Release(unique_name("qmo"), namespace)
    try:
        notes = install(cluster, release, {})
        assert "It watches QuantizedModels in every namespace" in notes
        assert f"get lease {release.operator}" in notes
        upgrade(cluster, release, {"replicaCount": "2", "metrics.service.enabled": "false"})
        deployment = cluster.apps().read_namespaced_deployment(release.operator, namespace)
        assert deployment.spec.replicas == 2
        assert deployment.status.available_replicas == 2
        services = cluster.core().list_namespaced_service(namespace).items
        assert [s.metadata.name for s in services] == []  # removed by the upgrade
        history = json.loads(helm_on(cluster, "history", release.name, "-n", namespace,
                                     "-o", "json"))  # fmt: skip
        assert [h["status"] for h in history] == ["superseded", "deployed"]
        # The disruption controller updates the budget's status after the rollout: follow it.
        pdb = wait_for(
            client.PolicyV1Api(cluster.api).list_namespaced_pod_disruption_budget,
            lambda p: p.metadata.name == release.operator and p.status.expected_pods == 2,
            namespace=namespace,
            describe="the PodDisruptionBudget to count both replicas",
        )
        assert pdb.status.expected_pods == 2
    finally:
        uninstall(cluster, release)


def ensure_namespace(cluster: ClusterHandle, name: str) -> None:
    """An Active namespace `name`; a reused cluster may still be deleting an old one."""
    found = cluster.kubectl("get", "namespace", name, "-o", "jsonpath={.status.phase}", check=False)
    if found.returncode == 0 and found.stdout == "Active":
        return
    if found.returncode == 0:
        cluster.kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=120s")
    cluster.kubectl("create", "namespace", name)


def _resource_versions(cluster: ClusterHandle, path: str) -> dict[str, str]:
    listing = json.loads(cluster.kubectl("get", "-f", path, "-o", "json").stdout)
    return {
        f"{i['kind']}/{i['metadata'].get('namespace', '')}/{i['metadata']['name']}": i["metadata"][
            "resourceVersion"
        ]
        for i in listing["items"]
    }


def test_applying_the_crds_server_side_twice_changes_nothing_the_second_time(
    cluster: ClusterHandle, crds: None
) -> None:
    path = str(REPO / "crds")
    cluster.kubectl("apply", "--server-side", "-f", path)
    before = _resource_versions(cluster, path)
    cluster.kubectl("apply", "--server-side", "-f", path)
    assert _resource_versions(cluster, path) == before
    assert cluster.kubectl("diff", "--server-side", "-f", path, check=False).returncode == 0
    assert len(before) == 2


def test_the_rendered_kubectl_manifest_applies_twice_without_changes_and_runs(
    cluster: ClusterHandle, crds: None
) -> None:
    path = str(REPO / "deploy" / "kubectl" / "qmo.yaml")
    ensure_namespace(cluster, "qmo-system")  # the manifest's namespace is fixed
    try:
        cluster.kubectl("apply", "--server-side", "-f", path)
        wait_for(
            cluster.apps().list_namespaced_deployment,
            lambda d: (d.status.available_replicas or 0) == 1,
            namespace="qmo-system",
            field_selector="metadata.name=qmo-operator",
            describe="the kubectl-applied operator to be available",
        )
        before = _resource_versions(cluster, path)
        cluster.kubectl("apply", "--server-side", "-f", path)
        assert _resource_versions(cluster, path) == before
    finally:
        cluster.kubectl("delete", "-f", path, "--wait=false", "--ignore-not-found", check=False)
        delete_namespace(cluster.core(), "qmo-system")
