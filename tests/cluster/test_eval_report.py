"""`qmo-eval run` writes its QualityReport as the eval Jobs' ServiceAccount would.

The identity is the real one: the chart's evaluator ClusterRole (create, get and list on
qualityreports), bound in the namespace by manifests/evaluation.py's `evaluator_identity`, and
a token the API server issued for that ServiceAccount. qmo-eval runs as a subprocess with a
kubeconfig holding only that token, against two local OpenAI-compatible servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.operator_process import OperatorProcess
from qmo.evaluator.report import build_report, result
from qmo.evaluator.report_writer import KubeWriter, Written
from qmo.manifests.evaluation import EVALUATOR_SERVICE_ACCOUNT, evaluator_identity
from tests.support.chart import helm_path, template
from tests.support.kube import GROUP, VERSION, ClusterHandle, unique_name, variants
from tests.support.openai_server import FakeModel, serving
from tests.support.scenario import a_model, create
from tests.unit.test_eval_lm_eval_tasks import QUESTIONS as FACTS
from tests.unit.test_eval_lm_eval_tasks import layout

pytestmark = pytest.mark.skipif(helm_path() is None, reason="helm is not built")

KEY = "5e" * 32
QUESTIONS = {"What is 2 + 2?": "4", "What is 3 + 3?": "6", "Capital of Italy?": "Rome"}


@pytest.fixture
def evaluator_kubeconfig(
    cluster: ClusterHandle, crds: None, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """A kubeconfig that authenticates as the namespace's qmo-evaluator ServiceAccount."""
    role = template().one("ClusterRole", "qmo-evaluator")
    role["metadata"] = {"name": unique_name("qmo-evaluator")}
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_cluster_role(role)
    for obj in evaluator_identity(namespace, role["metadata"]["name"]):
        cluster.apply_yaml(yaml.safe_dump(obj), namespace)
    token = (
        cluster.core()
        .create_namespaced_service_account_token(
            EVALUATOR_SERVICE_ACCOUNT,
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
            ),
        )
        .status.token
    )
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster_entry = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    path = tmp_path / "evaluator.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster_entry],
                "users": [{"name": "evaluator", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "evaluator",
                        "context": {
                            "cluster": cluster_entry["name"],
                            "user": "evaluator",
                            "namespace": namespace,
                        },
                    }
                ],
                "current-context": "evaluator",
            }
        )
    )
    yield path
    rbac.delete_cluster_role(role["metadata"]["name"])


def write_layout(root: Path) -> Path:
    (root / "datasets" / "qmo-benchmarks").mkdir(parents=True)
    rows = [{"prompt": q, "answer": a} for q, a in QUESTIONS.items()]
    (root / "datasets" / "qmo-benchmarks" / "sums.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows)
    )
    benchmarks = [
        {
            "name": "sums",
            "metric": "exact-match",
            "dataset": {"configMap": {"name": "qmo-benchmarks", "key": "sums.jsonl"}},
        }
    ]
    (root / "benchmarks.json").write_text(json.dumps(benchmarks))
    return root


def qmo_eval(kubeconfig: Path, root: Path, namespace: str, baseline: str, candidate: str) -> Any:
    command = [
        str(Path(sys.executable).parent / "qmo-eval"), "run",
        "--model", "llama", "--namespace", namespace,
        "--variant", "h100-fp8", "--cache-key", KEY, "--baseline-variant", "h100-bf16",
        "--candidate-url", candidate, "--baseline-url", baseline,
        "--benchmarks", str(root / "benchmarks.json"),
        "--datasets-root", str(root / "datasets"),
    ]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def stored_named(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.custom().get_namespaced_custom_object(
        GROUP, VERSION, namespace, "qualityreports", name
    )
    return found


def stored(cluster: ClusterHandle, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.custom().get_namespaced_custom_object(
        GROUP, VERSION, namespace, "qualityreports", f"llama-h100-fp8-{KEY[:12]}"
    )
    return found


def writes_of(report: dict[str, Any]) -> set[tuple[str, str]]:
    """(manager, top-level field) pairs outside the status subresource: who wrote the spec.
    The session's operator may already have judged the report; its status is not asked about.
    """
    return {
        (entry["manager"], field.removeprefix("f:"))
        for entry in report["metadata"]["managedFields"]
        if entry.get("subresource") != "status"
        for field in entry.get("fieldsV1", {})
        if field not in ("f:metadata", "f:apiVersion", "f:kind")
    }


def test_qmo_eval_creates_its_report_as_the_evaluator_and_keeps_it_on_a_rerun(
    cluster: ClusterHandle, namespace: str, evaluator_kubeconfig: Path, tmp_path: Path
) -> None:
    root = write_layout(tmp_path)
    baseline = FakeModel("bf16", answers=dict(QUESTIONS))
    candidate = FakeModel("fp8", answers={**QUESTIONS, "Capital of Italy?": "Milan"})

    with serving(baseline) as baseline_url, serving(candidate) as candidate_url:
        first = qmo_eval(evaluator_kubeconfig, root, namespace, baseline_url, candidate_url)
        assert first.returncode == 0, first.stderr
        assert "created" in first.stderr
        report = stored(cluster, namespace)
        assert report["spec"]["results"] == [
            {
                "benchmark": "sums",
                "baselineScore": 1.0,
                "candidateScore": round(2 / 3, 6),
                "higherIsBetter": True,
                "samples": 3,
            }
        ]
        assert report["spec"]["modelRef"] == {"name": "llama"}
        assert writes_of(report) == {("qmo-eval", "spec")}  # the operator owns the status

        again = qmo_eval(evaluator_kubeconfig, root, namespace, baseline_url, candidate_url)
        assert again.returncode == 0, again.stderr
        assert "unchanged" in again.stderr

        candidate.answers["Capital of Italy?"] = "Rome"  # a rerun scores differently
        rerun = qmo_eval(evaluator_kubeconfig, root, namespace, baseline_url, candidate_url)
        assert rerun.returncode == 0, rerun.stderr
        assert "kept the existing report" in rerun.stderr
        assert stored(cluster, namespace)["spec"] == report["spec"]


def test_an_identity_that_may_patch_applies_new_scores_over_the_report(
    cluster: ClusterHandle, crds: None, namespace: str
) -> None:
    def report(candidate: float) -> Any:
        return build_report(
            model="llama",
            variant="h100-fp8",
            cache_key=KEY,
            namespace=namespace,
            results=[result("sums", 1.0, candidate, higher_is_better=True, samples=3)],
        )

    writer = KubeWriter(cluster.custom())

    assert writer.write(report(0.5)) == Written.CREATED
    assert writer.write(report(0.75)) == Written.UPDATED
    assert stored(cluster, namespace)["spec"]["results"][0]["candidateScore"] == 0.75
    assert writes_of(stored(cluster, namespace)) == {("qmo-eval", "spec")}


def test_an_lm_eval_task_and_the_speed_probe_feed_the_gate_end_to_end(
    cluster: ClusterHandle,
    namespace: str,
    evaluator_kubeconfig: Path,
    tmp_path: Path,
    operator: OperatorProcess,
    engine_store: str,
) -> None:
    """qmo-eval, as the eval Job runs it: an lm-eval task from local files and the speed probe
    against two test servers, the report created as the evaluator; the operator judges it."""
    facts = {
        "name": "facts", "lmEval": {"task": "qmo_facts", "metric": "exact_match,strip",
                                    "include": {"path": "tasks/facts"}},
    }  # fmt: skip
    quality = {"gate": "after-rollout", "benchmarks": [facts], "minSpeedup": 1.5}
    engine = {"maxBatchSize": 8, "maxSeqLen": 4096}  # TP 1: fits beside the other tests
    create(cluster, namespace, a_model("llama", precisions=["bf16", "fp8"], engine=engine,
                                       gpu={"classes": ["h100"]}, quality=quality))  # fmt: skip
    # Not Ready: this test's evaluator RoleBinding names its own role, which the operator,
    # finding it, reports (ChildRejected); the variants serve regardless.
    model = cluster.wait_for_model(
        namespace,
        "llama",
        lambda m: variants(m).get("h100-fp8", {}).get("phase") == "Serving",
        describe="fp8 to serve",
    )
    key = variants(model)["h100-fp8"]["cacheKey"]
    benchmarks = layout(tmp_path, facts)
    baseline = FakeModel("bf16", answers=dict(FACTS), token_seconds=0.006)
    candidate = FakeModel("fp8", answers=dict(FACTS), token_seconds=0.002)
    command = [
        str(Path(sys.executable).parent / "qmo-eval"), "run",
        "--model", "llama", "--namespace", namespace, "--variant", "h100-fp8",
        "--cache-key", key, "--baseline-variant", "h100-bf16",
        "--benchmarks", str(benchmarks), "--store-root", str(tmp_path / "store"),
        "--speed-concurrency", "4", "--speed-requests", "8", "--speed-max-tokens", "12",
        "--speed-prompt-words", "8",
    ]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(evaluator_kubeconfig)}
    with serving(baseline) as baseline_url, serving(candidate) as candidate_url:
        urls = ["--candidate-url", candidate_url, "--baseline-url", baseline_url]
        done = subprocess.run(
            [*command, *urls], env=env, capture_output=True, text=True, timeout=180
        )
    assert done.returncode == 0, done.stderr
    judged = cluster.wait_for_model(
        namespace,
        "llama",
        lambda m: variants(m)["h100-fp8"]["quality"].get("verdict") == "Pass",
        describe="the report to pass fp8",
    )
    fp8 = variants(judged)["h100-fp8"]["quality"]
    assert fp8["speedup"] > 1.5
    assert "h100-fp8=" in judged["status"]["summary"]["speedup"]
    report = stored_named(cluster, namespace, fp8["report"])
    assert report["spec"]["results"][0]["benchmark"] == "facts"
    assert report["status"]["speedup"] == fp8["speedup"]
