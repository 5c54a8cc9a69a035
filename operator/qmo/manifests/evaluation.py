"""Eval Jobs and what they need: the benchmark list.

The eval Job runs `qmo-eval run` against the candidate's Service and the BF16 baseline's and
writes the scores as its container's termination message (`qmo.api.evalcontract`); the
operator creates the QualityReport from it. The pod needs no rights, so it gets none: it runs
as the namespace's default ServiceAccount with no token mounted. Code it runs on the model
author's behalf (an lm-eval `!function` in the task files) can reach no API with qmo's or
anyone's credentials, and can misreport only its own revision's scores.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from qmo.api.buildcontract import STORE_MOUNT_PATH
from qmo.api.evalcontract import (
    ALLOW_CODE_EXECUTION_FLAG,
    TERMINATION_MESSAGE_PATH,
    judge_key_env,
)
from qmo.api.quantizedmodel import QuantizedModelSpec, SpeedProbeSpec
from qmo.manifests import labels, names
from qmo.manifests.labels import Owner
from qmo.manifests.pod import STORE_VOLUME, container_security_context, pod_security_context
from qmo.manifests.store import (
    UPLOAD_CONTAINER,
    StoreAccess,
    StoreSetup,
    bucket_env,
    scratch_store_access,
    store_container,
)
from qmo.planner.cachekey import short_key
from qmo.planner.store import BucketStore, ClaimStore, claim_store
from qmo.planner.types import Evaluation
from qmo.resources import NETWORK_POLICIES
from qmo.vocabulary import Component

EVAL_CONTAINER = "evaluator"
# Which attempt at judging the revision the Job is ('' first, then per ask for more samples).
ATTEMPT_ANNOTATION = "qmo.dev/evaluation-attempt"
# Per-item outcomes: <store>/evaluations/<namespace>/<model>/<variant>/<key>/<attempt>.
OUTCOMES_DIRECTORY = "evaluations"
OUTCOMES_MOUNT_PATH = "/outcomes"
# Where on the store the Job keeps them, for the report to name.
OUTCOMES_ANNOTATION = "qmo.dev/outcomes"
# The BF16 variant the Job compares against: the report's baselineVariant.
BASELINE_ANNOTATION = "qmo.dev/baseline-variant"
# qmo-eval's exit code for bad input (a dataset, a task, a report too long): the same on a rerun.
BAD_INPUT_EXIT_CODE = 2
BENCHMARKS_FILE = "benchmarks.json"
BENCHMARKS_MOUNT = "/etc/qmo-eval"
DATASETS_MOUNT = "/benchmarks"
EVAL_DEADLINE_SECONDS = 7200


def benchmarks_config_map(spec: QuantizedModelSpec, owner: Owner) -> dict[str, Any]:
    """The model's benchmark list, as `qmo-eval --benchmarks` reads it."""
    benchmarks = [b.to_wire() for b in spec.quality.benchmarks]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.benchmarks_config_map(owner.name),
            "namespace": owner.namespace,
            "labels": labels.common(owner.name, Component.EVALUATION),
            "ownerReferences": [owner.reference()],
        },
        "data": {BENCHMARKS_FILE: json.dumps(benchmarks, indent=2, sort_keys=True)},
    }


def _dataset_volumes(spec: QuantizedModelSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """ConfigMap datasets at /benchmarks/<configmap>/<key>, and ConfigMaps of lm-eval task
    files at /benchmarks/<configmap>/; store paths come with /store."""
    volumes, mounts = [], []
    datasets = {
        b.dataset.config_map.name
        for b in spec.quality.benchmarks
        if b.dataset and b.dataset.config_map
    }
    task_files = {
        b.lm_eval.include.config_map.name
        for b in spec.quality.benchmarks
        if b.lm_eval and b.lm_eval.include and b.lm_eval.include.config_map
    }
    for config_map in sorted(datasets | task_files):
        volume = names.dataset_volume(config_map)
        volumes.append({"name": volume, "configMap": {"name": config_map}})
        mounts.append(
            {"name": volume, "mountPath": f"{DATASETS_MOUNT}/{config_map}", "readOnly": True}
        )
    return volumes, mounts


def _speed_args(spec: QuantizedModelSpec) -> list[str]:
    """The speed probe's flags, when quality.speed or quality.minSpeedup asks for speed."""
    quality = spec.quality
    if quality.speed is None and quality.min_speedup is None:
        return []
    probe = quality.speed or SpeedProbeSpec()
    return [
        "--speed-concurrency", str(probe.concurrency),
        "--speed-requests", str(probe.requests),
        "--speed-max-tokens", str(probe.max_tokens),
        "--speed-prompt-words", str(probe.prompt_tokens),
    ]  # fmt: skip


DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
ANYWHERE = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]


def _port_of(url: str) -> int:
    parsed = urlparse(url)
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def eval_network_policy(
    spec: QuantizedModelSpec, owner: Owner, store: StoreSetup | None = None
) -> dict[str, Any]:
    """What the model's eval pods may reach: the model's own serving pods (the candidate and
    its baseline) on the serving port, DNS, and only where the spec needs them a judge's port
    and the Hugging Face hub (HTTPS) for named lm-eval tasks; nothing may reach them. Model-
    written code (HumanEval+) runs in these pods, so what they can reach is what it can."""
    servers = {labels.MODEL: owner.name, labels.COMPONENT: Component.SERVER.value}
    egress: list[dict[str, Any]] = [
        {
            "to": [{"podSelector": {"matchLabels": servers}}],
            "ports": [{"protocol": "TCP", "port": spec.serving.port}],
        },
        {"ports": DNS_PORTS},
    ]
    outside = sorted(
        {_port_of(b.judge.url) for b in spec.quality.benchmarks if b.judge is not None}
        | {443 for b in spec.quality.benchmarks if b.lm_eval and b.lm_eval.include is None}
        | _bucket_ports(store)
    )
    if outside:
        # A NetworkPolicy names addresses, not hosts: these ports are open to any address.
        egress.append(
            {"to": ANYWHERE, "ports": [{"protocol": "TCP", "port": port} for port in outside]}
        )
    return {
        "apiVersion": NETWORK_POLICIES.api_version,
        "kind": NETWORK_POLICIES.kind,
        "metadata": {
            "name": names.eval_network_policy(owner.name),
            "namespace": owner.namespace,
            "labels": labels.common(owner.name, Component.EVALUATION),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "podSelector": {
                "matchLabels": {
                    labels.MODEL: owner.name,
                    labels.COMPONENT: Component.EVALUATION.value,
                }
            },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress,
        },
    }


def _bucket_ports(store: StoreSetup | None) -> set[int]:
    """The store steps (datasets in, outcomes out) reach the bucket's endpoint."""
    if store is None or not isinstance(store.store, BucketStore):
        return set()
    return {_port_of(store.store.location.endpoint or "https://s3.amazonaws.com")}


def _judge_keys(spec: QuantizedModelSpec) -> list[dict[str, Any]]:
    """Each judged benchmark's judge API key, from the Secret the spec names, as the variable
    qmo-eval reads it from: by reference, never in an argument."""
    return [
        {
            "name": judge_key_env(b.name),
            "valueFrom": {
                "secretKeyRef": {
                    "name": b.judge.api_key_secret_ref.name,
                    "key": b.judge.api_key_secret_ref.key,
                }
            },
        }
        for b in spec.quality.benchmarks
        if b.judge is not None and b.judge.api_key_secret_ref is not None
    ]


def outcomes_path(owner: Owner, evaluation: Evaluation) -> str:
    """Where on the engine store an evaluation keeps its per-item outcomes."""
    return "/".join(
        [
            OUTCOMES_DIRECTORY,
            owner.namespace,
            owner.name,
            evaluation.variant,
            short_key(evaluation.cache_key),
            evaluation.attempt or "first",
        ]
    )


def store_paths(spec: QuantizedModelSpec) -> list[str]:
    """The store paths an evaluation reads: datasets, task directories, tokenizers."""
    paths = []
    for benchmark in spec.quality.benchmarks:
        if benchmark.dataset is not None and benchmark.dataset.path:
            paths.append(benchmark.dataset.path)
        task = benchmark.lm_eval
        if task is not None and task.include is not None and task.include.path:
            paths.append(task.include.path)
        if task is not None and task.tokenizer and task.tokenizer.startswith(STORE_MOUNT_PATH):
            paths.append(task.tokenizer.removeprefix(STORE_MOUNT_PATH))
    return [p.strip("/") for p in paths if p.strip("/")]


def _store_mounts(
    access: StoreAccess, setup: StoreSetup, owner: Owner, evaluation: Evaluation
) -> list[dict[str, Any]]:
    """The store read-only at /store, and writable only at the evaluation's own directory:
    on the claim a subPath of it; with a bucket the scratch /store's, uploaded at the end."""
    if not isinstance(setup.store, ClaimStore):
        outcomes = {
            "name": STORE_VOLUME,
            "mountPath": OUTCOMES_MOUNT_PATH,
            "subPath": outcomes_path(owner, evaluation),
        }
        return [*access.mounts, outcomes]
    store_mount = access.mounts[0]
    return [
        {**store_mount, "mountPath": STORE_MOUNT_PATH, "readOnly": True},
        {
            "name": store_mount["name"],
            "mountPath": OUTCOMES_MOUNT_PATH,
            "subPath": outcomes_path(owner, evaluation),
        },
    ]


def _evaluator_without_keys(
    job: dict[str, Any], setup: StoreSetup, owner: Owner, evaluation: Evaluation
) -> dict[str, Any]:
    """On a bucket store: the evaluator runs as the last init container, with no store
    credentials (model-written code runs there), and a container of qmo-store's uploads the
    per-item outcomes it left after it ends; the termination message stays the evaluator's."""
    if isinstance(setup.store, ClaimStore):
        return job
    pod = job["spec"]["template"]["spec"]
    evaluator = pod["containers"][0]
    bucket = {e["name"] for e in bucket_env(setup.store)}
    evaluator["env"] = [e for e in evaluator["env"] if e["name"] not in bucket]
    outcomes = outcomes_path(owner, evaluation)
    upload = store_container(
        UPLOAD_CONTAINER,
        setup.image,
        ["put", "--from", f"{STORE_MOUNT_PATH}/{outcomes}", "--to", outcomes],
        setup.store,
        [{"name": STORE_VOLUME, "mountPath": STORE_MOUNT_PATH, "readOnly": True}],
    )
    pod["initContainers"] = [*pod.get("initContainers", []), evaluator]
    pod["containers"] = [upload]
    return job


def eval_job(
    spec: QuantizedModelSpec,
    evaluation: Evaluation,
    owner: Owner,
    *,
    image: str,
    node_selector: tuple[tuple[str, str], ...] = (),
    store: StoreSetup | None = None,
) -> dict[str, Any]:
    candidate_service = (
        names.candidate_service(owner.name, evaluation.variant)
        if evaluation.on_candidate_track
        else names.variant_service(owner.name, evaluation.variant)
    )
    baseline_service = names.variant_service(owner.name, evaluation.baseline)
    port = spec.serving.port
    setup = store or StoreSetup(claim_store(spec))
    access = scratch_store_access(setup.store, store_paths(spec), setup.image, read_only=False)
    dataset_volumes, dataset_mounts = _dataset_volumes(spec)
    config_map = names.benchmarks_config_map(owner.name)
    job_labels = {
        **labels.common(owner.name, Component.EVALUATION),
        labels.VARIANT: evaluation.variant,
        labels.CACHE_KEY: short_key(evaluation.cache_key),
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.eval_job(
                owner.name,
                evaluation.variant,
                evaluation.cache_key,
                evaluation.quality_key,
                evaluation.attempt,
            ),
            "namespace": owner.namespace,
            "labels": job_labels,
            "annotations": {
                labels.REVISION_ANNOTATION: evaluation.cache_key,
                BASELINE_ANNOTATION: evaluation.baseline,
                ATTEMPT_ANNOTATION: evaluation.attempt,
                OUTCOMES_ANNOTATION: outcomes_path(owner, evaluation),
            },
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": EVAL_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": 86400,
            # Bad input fails the same way every time: do not run the evaluation again.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": EVAL_CONTAINER,
                            "operator": "In",
                            "values": [BAD_INPUT_EXIT_CODE],
                        },
                    }
                ]
            },
            "template": {
                "metadata": {"labels": job_labels},
                "spec": {
                    "restartPolicy": "Never",
                    # No identity of qmo's and no token: the scores leave through the
                    # termination message, and the operator writes the report.
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    **({"nodeSelector": dict(node_selector)} if node_selector else {}),
                    **access.pod_fields(),
                    "containers": [
                        {
                            "name": EVAL_CONTAINER,
                            "image": image,
                            "command": ["qmo-eval", "run"],
                            "args": [
                                "--model",
                                owner.name,
                                "--namespace",
                                owner.namespace,
                                "--variant",
                                evaluation.variant,
                                "--cache-key",
                                evaluation.cache_key,
                                "--candidate-url",
                                f"http://{candidate_service}:{port}",
                                "--baseline-url",
                                f"http://{baseline_service}:{port}",
                                "--baseline-variant",
                                evaluation.baseline,
                                "--benchmarks",
                                f"{BENCHMARKS_MOUNT}/{BENCHMARKS_FILE}",
                                "--termination-log",
                                TERMINATION_MESSAGE_PATH,
                                "--outcomes-dir",
                                OUTCOMES_MOUNT_PATH,
                                # The pod is where model-written code may run (HumanEval+):
                                # no credentials, a read-only root, limits per item.
                                ALLOW_CODE_EXECUTION_FLAG,
                                *(f"--samples={b}={n}" for b, n in evaluation.samples),
                                *_speed_args(spec),
                            ],
                            "env": [
                                {"name": "HOME", "value": "/tmp"},
                                # lm-eval's task data and caches: the writable /tmp.
                                {"name": "HF_HOME", "value": "/tmp/huggingface"},
                                *_judge_keys(spec),
                                *access.env,
                            ],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "512Mi"},
                                "limits": {"memory": "2Gi"},
                            },
                            "securityContext": container_security_context(),
                            "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                            # A failed run leaves its last log lines there instead.
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": [
                                {
                                    "name": "benchmarks",
                                    "mountPath": BENCHMARKS_MOUNT,
                                    "readOnly": True,
                                },
                                {"name": "tmp", "mountPath": "/tmp"},
                                # The per-item outcomes go beside the report.
                                *_store_mounts(access, setup, owner, evaluation),
                                *dataset_mounts,
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "benchmarks", "configMap": {"name": config_map}},
                        {"name": "tmp", "emptyDir": {}},
                        *access.volumes,
                        *dataset_volumes,
                    ],
                },
            },
        },
    }
    return _evaluator_without_keys(job, setup, owner, evaluation)
