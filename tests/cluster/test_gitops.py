"""What GitOps tools see: qmo writes only the status of a QuantizedModel, nothing Git owns."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.support.kube import ClusterHandle
from tests.support.scenario import a_model, wait_ready

pytestmark = pytest.mark.usefixtures("operator", "engine_store")


def test_the_operator_never_writes_spec_labels_annotations_or_finalizers(
    cluster: ClusterHandle, namespace: str
) -> None:
    manifest = a_model("git-owned", gpu={"classes": ["h100"]})
    manifest["metadata"]["labels"] = {"team": "inference"}
    manifest["metadata"]["annotations"] = {"owner": "git"}
    text = yaml.safe_dump(manifest)
    apply = [
        "apply",
        "--server-side",
        "--field-manager=argocd-controller",
        "-n",
        namespace,
        "-f",
        "-",
    ]
    cluster.kubectl(*apply, input=text)
    ready = wait_ready(cluster, namespace, "git-owned")

    meta = ready["metadata"]
    assert meta["labels"] == {"team": "inference"}
    assert meta["annotations"] == {"owner": "git"}
    assert not meta.get("finalizers")
    by_qmo = [m for m in meta["managedFields"] if m["manager"].startswith("qmo")]
    assert by_qmo, "qmo wrote the status with server-side apply"
    assert all(m.get("subresource") == "status" for m in by_qmo)
    assert all(set(m["fieldsV1"]) == {"f:status"} for m in by_qmo)

    # A sync of the unchanged manifest is a no-op for the spec: nothing to show as drift.
    generation = meta["generation"]
    cluster.kubectl(*apply, input=text)
    diff = cluster.kubectl(
        "diff", "--server-side", "--field-manager=argocd-controller", "-n", namespace, "-f", "-",
        input=text, check=False,
    )  # fmt: skip
    assert diff.returncode == 0, diff.stdout
    again = json.loads(
        cluster.kubectl("get", "qm", "git-owned", "-n", namespace, "-o", "json").stdout
    )
    assert again["metadata"]["generation"] == generation


def test_children_carry_no_label_argo_cd_tracks_by_default(
    cluster: ClusterHandle, namespace: str
) -> None:
    """Argo CD's label tracking reads app.kubernetes.io/instance: an Application named like
    the model must not claim (and prune) the objects the operator created."""
    cluster.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-",
        input=yaml.safe_dump(a_model("tracked", gpu={"classes": ["h100"]})),
    )  # fmt: skip
    wait_ready(cluster, namespace, "tracked")
    children = json.loads(
        cluster.kubectl(
            "get", "deployments,services,jobs,configmaps", "-n", namespace,
            "-l", "app.kubernetes.io/managed-by=qmo", "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    assert {c["kind"] for c in children} >= {"Deployment", "Service", "Job", "ConfigMap"}
    assert not [c for c in children if "app.kubernetes.io/instance" in c["metadata"]["labels"]]
