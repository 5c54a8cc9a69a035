"""The chart's RBAC is enough: the operator runs with its ServiceAccount's token and works.

The can-i table in test_install.py proves what the ServiceAccount may not do; this proves
that what it may do suffices for a whole gated rollout, eval identity included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.operator_process import OperatorProcess
from tests.cluster.test_install import Release, install, make_namespace, uninstall
from tests.support.kube import ClusterHandle, delete_namespace, is_ready, unique_name, wait_for
from tests.support.scenario import a_model, create


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


@pytest.mark.usefixtures("engine_store")
def test_the_operator_runs_a_gated_rollout_with_only_the_charts_permissions(
    cluster: ClusterHandle,
    namespace: str,
    installed: Release,
    operator: OperatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kubeconfig = token_kubeconfig(cluster, installed, tmp_path / "sa.kubeconfig")
    monkeypatch.setenv("QMO_EVALUATOR_CLUSTER_ROLE", f"{installed.name}-evaluator")
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
        # The eval Job runs as the evaluator ServiceAccount the operator bound to the role.
        job = wait_for(
            cluster.batch().list_namespaced_job,
            lambda j: True,
            namespace=namespace,
            label_selector="app.kubernetes.io/component=evaluation",
            describe="the eval Job",
        )
        assert job.spec.template.spec.service_account_name == "qmo-evaluator"
        binding = cluster.kubectl("get", "rolebinding", "qmo-evaluator", "-n", namespace,
                                  "-o", "jsonpath={.roleRef.name}").stdout  # fmt: skip
        assert binding == f"{installed.name}-evaluator"
        # Judging a report writes the QualityReport's status subresource.
        key = job.metadata.annotations["qmo.dev/revision"]
        cluster.custom().create_namespaced_custom_object(
            "qmo.dev", "v1alpha1", namespace, "qualityreports",
            {"apiVersion": "qmo.dev/v1alpha1", "kind": "QualityReport",
             "metadata": {"name": "least-report"},
             "spec": {"modelRef": {"name": "least"}, "variant": "h100-fp8", "cacheKey": key,
                      "results": [{"benchmark": "arithmetic", "baselineScore": 0.8,
                                   "candidateScore": 0.8}]}},
        )  # fmt: skip
        wait_for(
            cluster.custom().list_namespaced_custom_object,
            lambda r: (r.get("status") or {}).get("verdict") == "Pass",
            group="qmo.dev", version="v1alpha1", namespace=namespace, plural="qualityreports",
            describe="the report to be judged",
        )  # fmt: skip
        assert "Forbidden" not in log.read_text()
        assert "forbidden" not in log.read_text()
    finally:
        least.stop()
        operator.start()
