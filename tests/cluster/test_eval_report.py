"""`qmo-eval run` as the eval Job runs it: no credentials, the scores in the termination
message, and the QualityReport written by the operator, which judges it.

The eval Job's own command line and the benchmark list the operator wrote into its ConfigMap
are run by qmo-eval as a subprocess, against two local OpenAI-compatible servers instead of the
Services (kwok runs no model), with no kubeconfig; the test then plays the kubelet and puts
the termination-log file into the eval pod's status. By hand, qmo-eval still creates the report
with the caller's own credentials (the cluster writer, for external pipelines).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.operator_process import OperatorProcess
from qmo.evaluator.report import build_report, result
from qmo.evaluator.report_writer import KubeWriter, Written
from qmo.manifests import names
from qmo.manifests.quality_report import report_name
from tests.support.kube import GROUP, VERSION, ClusterHandle, is_ready, unique_name, variants
from tests.support.openai_server import FakeModel, serving
from tests.support.scenario import a_model, create, eval_job, finish_job_pod
from tests.unit.test_eval_lm_eval_tasks import QUESTIONS as FACTS
from tests.unit.test_eval_lm_eval_tasks import layout

KEY = "5e" * 32
QUESTIONS = {"What is 2 + 2?": "4", "What is 3 + 3?": "6", "Capital of Italy?": "Rome"}
# Flags of the eval Job's command line that name places inside the pod.
IN_THE_POD = ("--candidate-url", "--baseline-url", "--benchmarks", "--termination-log")


def qmo_eval_command() -> str:
    return str(Path(sys.executable).parent / "qmo-eval")


def as_the_job_runs_it(job: client.V1Job, local: dict[str, str]) -> list[str]:
    """The eval Job's own command line, with the pod's places (`IN_THE_POD`) replaced."""
    (container,) = job.spec.template.spec.containers
    args = list(container.args)
    for flag in IN_THE_POD:
        args[args.index(flag) + 1] = local[flag]
    return [qmo_eval_command(), *container.command[1:], *args]


@pytest.mark.usefixtures("engine_store")
def test_the_eval_jobs_scores_reach_the_gate_through_its_termination_message(
    cluster: ClusterHandle, namespace: str, tmp_path: Path, operator: OperatorProcess
) -> None:
    """An lm-eval task from local files and the speed probe, scored by qmo-eval with no
    credentials; the operator writes the report from the pod's message and passes fp8."""
    facts = {
        "name": "facts", "lmEval": {"task": "qmo_facts", "metric": "exact_match,strip",
                                    "include": {"path": "tasks/facts"}},
    }  # fmt: skip
    speed = {"concurrency": 4, "requests": 8, "maxTokens": 12, "promptTokens": 8}
    quality = {"gate": "after-rollout", "benchmarks": [facts], "minSpeedup": 1.5, "speed": speed}
    engine = {"maxBatchSize": 8, "maxSeqLen": 4096}  # TP 1: fits beside the other tests
    create(cluster, namespace, a_model("llama", precisions=["bf16", "fp8"], engine=engine,
                                       gpu={"classes": ["h100"]}, quality=quality))  # fmt: skip
    model = cluster.wait_for_model(
        namespace,
        "llama",
        lambda m: variants(m).get("h100-fp8", {}).get("phase") == "Serving",
        describe="fp8 to serve",
    )
    key = variants(model)["h100-fp8"]["cacheKey"]
    job = eval_job(cluster, namespace, key)
    pod = job.spec.template.spec
    assert pod.automount_service_account_token is False
    assert pod.service_account_name is None
    # The API server took the NetworkPolicy that confines the eval pods (applied before the Job).
    policy = client.NetworkingV1Api(cluster.api).read_namespaced_network_policy(
        names.eval_network_policy("llama"), namespace
    )
    assert policy.spec.pod_selector.match_labels["app.kubernetes.io/component"] == "evaluation"
    assert policy.spec.policy_types == ["Ingress", "Egress"]

    benchmarks = layout(tmp_path, facts)  # the task's files, where include.path points
    config_map = cluster.core().read_namespaced_config_map(
        names.benchmarks_config_map("llama"), namespace
    )
    benchmarks.write_text(config_map.data["benchmarks.json"])  # the list the operator wrote
    message_file = tmp_path / "termination-log"
    # Ten times faster per token: the probe's HTTP overhead on a loaded 2-core machine (tens of
    # ms a request) must not squeeze the measured speedup under minSpeedup (3x once did).
    baseline = FakeModel("bf16", answers=dict(FACTS), token_seconds=0.03)
    candidate = FakeModel("fp8", answers=dict(FACTS), token_seconds=0.003)
    # No credentials at all: the eval pod has none either.
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    with serving(baseline) as baseline_url, serving(candidate) as candidate_url:
        local = {
            "--candidate-url": candidate_url,
            "--baseline-url": baseline_url,
            "--benchmarks": str(benchmarks),
            "--termination-log": str(message_file),
        }
        command = [*as_the_job_runs_it(job, local), "--store-root", str(tmp_path / "store")]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "handed to the operator" in done.stderr
    assert len(message_file.read_bytes()) <= 4096

    finish_job_pod(cluster, namespace, job.metadata.name, message_file.read_text())
    judged = cluster.wait_for_model(
        namespace,
        "llama",
        lambda m: (
            variants(m)["h100-fp8"].get("quality", {}).get("verdict") not in (None, "Pending")
        ),
        timeout=180,  # the Job controller and a reconcile on a loaded CI machine (60 s ran out)
        describe="the report to judge fp8",
    )
    fp8 = variants(judged)["h100-fp8"]["quality"]
    assert fp8["verdict"] == "Pass", fp8
    assert fp8["report"] == report_name("llama", "h100-fp8", key)
    assert fp8["speedup"] > 1.5
    assert "h100-fp8=" in judged["status"]["summary"]["speedup"]
    report = stored_named(cluster, namespace, fp8["report"])
    assert report["spec"]["results"][0]["benchmark"] == "facts"
    assert report["spec"]["results"][0]["candidateScore"] == 1.0
    assert (report["spec"]["cacheKey"], report["spec"]["baselineVariant"]) == (key, "h100-bf16")
    assert report["status"]["speedup"] == fp8["speedup"]
    assert writes_of(report) == {("qmo", "spec")}, "the operator wrote it, nobody else"
    (owner,) = report["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("QuantizedModel", "llama")
    cluster.wait_for_model(namespace, "llama", is_ready, describe="llama to be Ready")


# --- by hand: qmo-eval's cluster writer, with the caller's credentials ---------------------


@pytest.fixture
def pipeline_kubeconfig(cluster: ClusterHandle, crds: None, namespace: str, tmp_path: Path) -> Path:
    """A kubeconfig for an external pipeline's identity: create, get and list QualityReports
    in the namespace (no patch), through a token the API server issued."""
    name = unique_name("pipeline")
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": name},
        "rules": [{"apiGroups": [GROUP], "resources": ["qualityreports"],
                   "verbs": ["create", "get", "list"]}],
    })  # fmt: skip
    cluster.core().create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    })  # fmt: skip
    token = (
        cluster.core()
        .create_namespaced_service_account_token(
            name,
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
    path = tmp_path / "pipeline.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster_entry],
                "users": [{"name": "pipeline", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "pipeline",
                        "context": {
                            "cluster": cluster_entry["name"],
                            "user": "pipeline",
                            "namespace": namespace,
                        },
                    }
                ],
                "current-context": "pipeline",
            }
        )
    )
    return path


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
        qmo_eval_command(), "run",
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
    return stored_named(cluster, namespace, f"llama-h100-fp8-{KEY[:12]}")


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


def test_by_hand_qmo_eval_creates_its_report_and_keeps_it_on_a_rerun(
    cluster: ClusterHandle, namespace: str, pipeline_kubeconfig: Path, tmp_path: Path
) -> None:
    root = write_layout(tmp_path)
    baseline = FakeModel("bf16", answers=dict(QUESTIONS))
    candidate = FakeModel("fp8", answers={**QUESTIONS, "Capital of Italy?": "Milan"})

    with serving(baseline) as baseline_url, serving(candidate) as candidate_url:
        first = qmo_eval(pipeline_kubeconfig, root, namespace, baseline_url, candidate_url)
        assert first.returncode == 0, first.stderr
        assert "created" in first.stderr
        report = stored(cluster, namespace)
        # The per-item pairs' statistics: the API server takes the paired block as qmo-eval
        # writes it (3 items, one lost: a standard error of a third).
        assert report["spec"]["results"][0]["paired"] == {
            "items": 3,
            "standardErrorPercent": 33.333333,
            "method": "paired-normal",
            "exhausted": True,
        }
        assert [
            {k: v for k, v in r.items() if k != "paired"} for r in report["spec"]["results"]
        ] == [
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

        again = qmo_eval(pipeline_kubeconfig, root, namespace, baseline_url, candidate_url)
        assert again.returncode == 0, again.stderr
        assert "unchanged" in again.stderr

        candidate.answers["Capital of Italy?"] = "Rome"  # a rerun scores differently
        rerun = qmo_eval(pipeline_kubeconfig, root, namespace, baseline_url, candidate_url)
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
