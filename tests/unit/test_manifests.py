"""Desired state as data: names, the build Job, the serving Deployment, Services and the store."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from qmo.api.buildcontract import BuildResult
from qmo.api.quantizedmodel import Precision, QuantizedModelSpec
from qmo.builder.spec import parse_request
from qmo.config import OperatorConfig
from qmo.gpu import GpuClass
from qmo.manifests import labels, names
from qmo.manifests.build import artifact_record, build_job
from qmo.manifests.serving import (
    build_deployment,
    build_main_service,
    build_store_claim,
    build_variant_service,
)
from qmo.planner import images
from qmo.planner.plan import plan_model
from qmo.planner.types import PlannedVariant
from qmo.vocabulary import BuildState
from tests.support.builders import a_class, a_cluster, a_model, an_owner, variant

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
OWNER = an_owner("llama", "models", "uid-1234")
BUILDER = "ghcr.io/qmo-dev/qmo-builder:0.1.0"
CONFIG = OperatorConfig(
    builder_image=BUILDER, allowed_images=(BUILDER, "registry.local/*", "nvcr.io/nvidia/*")
)
SECRET_VALUE = "hf_SuperSecretTokenValue"  # what the Secret holds; qmo must never see it

Obj = dict[str, Any]


def _planned(spec: QuantizedModelSpec, gpu: GpuClass, name: str) -> PlannedVariant:
    return variant(plan_model(spec, a_cluster(gpu).observed(), CONFIG), name)


def _job(spec: QuantizedModelSpec, gpu: GpuClass | None = None, name: str = "h100-fp8") -> Obj:
    planned = _planned(spec, gpu or a_class("h100"), name)
    return build_job(spec, planned, namespace="models", image=_builder(spec))


def _builder(spec: QuantizedModelSpec) -> str:
    return images.builder_image(spec, CONFIG)


def _container(obj: Obj) -> Obj:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container["env"]}


# --- Names ------------------------------------------------------------------------------------


def test_short_names_are_the_parts_joined() -> None:
    assert names.variant_deployment("llama", "h100-fp8") == "llama-h100-fp8"
    assert names.main_service("llama") == "llama"
    assert names.candidate_service("llama", "h100-fp8") == "llama-h100-fp8-candidate"
    assert names.build_job("h100-fp8", "0123456789abcdef" + "f" * 48) == (
        "qmo-build-h100-fp8-0123456789abcdef"
    )
    assert names.artifact_record("0123456789abcdef" + "f" * 48) == "qmo-artifact-0123456789abcdef"


LONG = "a-very-long-model-name-for-the-llama-3-1-70b-instruct-quantized-deployment-" * 2


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda m: names.variant_deployment(m, "rtx6000-ada-int4-gptq"), id="deploy"),
        pytest.param(lambda m: names.variant_service(m, "h100-fp8"), id="service"),
        pytest.param(lambda m: names.candidate_deployment(m, "h100-fp8"), id="candidate"),
        pytest.param(lambda m: names.main_service(m), id="main-service"),
        pytest.param(lambda m: names.eval_job(m, "h100-fp8", "ab" * 32), id="eval-job"),
    ],
)
def test_names_of_long_models_stay_within_63_characters_and_are_stable(make: Any) -> None:
    name = make(LONG)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert re.search(r"-[0-9a-f]{8}$", name)  # the hash of the full name
    assert make(LONG) == name
    assert make(LONG.replace("deployment", "deployments")) != name  # same prefix, other name


def test_a_cut_never_leaves_a_double_dash_before_the_hash() -> None:
    name = names.bounded("x" * 53, "y" * 20)  # the cut falls right after the joining dash
    assert len(name) <= 63
    assert "--" not in name


def test_build_jobs_are_named_by_content_not_by_model() -> None:
    key = "c" * 64
    assert names.build_job("h100-fp8", key) == names.build_job("h100-fp8", key)
    assert names.build_job("h100-fp8", key) != names.build_job("h100-fp8", "d" * 64)


# --- The build Job ----------------------------------------------------------------------------


def test_the_build_job_is_pinned_to_the_gpu_class_and_requests_the_build_gpus() -> None:
    spec = a_model().with_precisions("fp8").with_build(gpus=4).spec()
    job = _job(spec)
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    resources = _container(job)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == "4"
    assert resources["limits"]["nvidia.com/gpu"] == "4"


def test_the_build_job_is_bounded_in_retries_time_and_lifetime() -> None:
    spec = a_model().with_precisions("fp8").with_build(backoffLimit=2).spec()
    job = _job(spec)
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 14400
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_a_wrong_spec_or_a_wrong_gpu_fails_the_job_without_retries() -> None:
    (rule,) = _job(a_model().with_precisions("fp8").spec())["spec"]["podFailurePolicy"]["rules"]
    assert rule == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "builder", "operator": "In", "values": [2, 3]},
    }


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda spec: _job(spec), id="build-job"),
        pytest.param(
            lambda spec: build_deployment(
                spec, _planned(spec, a_class("h100"), "h100-fp8"), OWNER, key="k" * 64
            ),
            id="deployment",
        ),
    ],
)
def test_pods_run_as_non_root_with_a_read_only_root_and_no_capabilities(render: Any) -> None:
    obj = render(a_model().with_precisions("fp8").spec())
    pod = obj["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = _container(obj)["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in _container(obj)["volumeMounts"]}
    assert {"/tmp", "/dev/shm"} <= mounts  # writable scratch, since the root is read-only


def test_the_token_reaches_the_build_only_as_a_secret_key_reference() -> None:
    spec = a_model().with_precisions("fp8").with_token("hf-token", "token").spec()
    job = _job(spec)
    token = _env(_container(job))["HF_TOKEN"]
    assert token == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
    }
    rendered = json.dumps(job)
    assert SECRET_VALUE not in rendered
    assert rendered.count('"hf-token"') == 1  # the reference itself, nowhere else
    request = parse_request(_env(_container(job))["QMO_BUILD_SPEC"]["value"])
    assert request.source.token_env == "HF_TOKEN"  # the builder is told where, not what


def test_without_credentials_there_is_no_token_variable() -> None:
    env = _env(_container(_job(a_model().with_precisions("fp8").spec())))
    assert "HF_TOKEN" not in env
    request = parse_request(env["QMO_BUILD_SPEC"]["value"])
    assert request.source.token_env is None


def test_the_build_spec_parses_back_into_the_request_with_the_same_cache_key() -> None:
    spec = a_model().with_precisions("fp8").spec()
    planned = _planned(spec, a_class("h100"), "h100-fp8")
    job = build_job(spec, planned, namespace="models", image=_builder(spec))
    request = parse_request(_env(_container(job))["QMO_BUILD_SPEC"]["value"])
    assert request.cache_key == planned.cache_key
    assert request == planned.build
    assert job["metadata"]["annotations"][labels.REVISION_ANNOTATION] == planned.cache_key


def test_a_pvc_source_is_mounted_read_only_at_model() -> None:
    spec = a_model().with_precisions("fp8").from_source("pvc://checkpoints/llama/8b").spec()
    job = _job(spec)
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in _container(job)["volumeMounts"]}
    assert volumes["model-source"]["persistentVolumeClaim"] == {
        "claimName": "checkpoints",
        "readOnly": True,
    }
    assert mounts["model-source"] == {
        "name": "model-source",
        "mountPath": "/model",
        "readOnly": True,
    }
    request = parse_request(_env(_container(job))["QMO_BUILD_SPEC"]["value"])
    assert request.source.uri == "/model/llama/8b"


def test_a_hub_source_mounts_nothing_but_the_store_and_scratch() -> None:
    job = _job(a_model().with_precisions("fp8").spec())
    mounts = {m["name"]: m for m in _container(job)["volumeMounts"]}
    assert set(mounts) == {"engine-store", "tmp", "dshm"}
    assert mounts["engine-store"]["mountPath"] == "/store"
    assert mounts["engine-store"]["readOnly"] is False  # the build writes its artifact


def test_the_build_job_is_shared_labelled_by_key_and_owned_per_model_later() -> None:
    spec = a_model().with_precisions("fp8").spec()
    planned = _planned(spec, a_class("h100"), "h100-fp8")
    assert planned.cache_key is not None
    job = build_job(spec, planned, namespace="models", image=_builder(spec))
    meta = job["metadata"]
    assert meta["name"] == names.build_job("h100-fp8", planned.cache_key)
    assert meta["labels"][labels.CACHE_KEY] == planned.cache_key[:16]
    assert labels.MODEL not in meta["labels"]  # no single model owns a shared build
    assert "ownerReferences" not in meta


@pytest.mark.parametrize(
    ("builder_image", "expected"),
    [
        pytest.param(None, BUILDER, id="the-operator-default"),
        pytest.param("registry.local/qmo-builder:dev", "registry.local/qmo-builder:dev", id="spec"),
    ],
)
def test_the_build_runs_the_builder_image_the_spec_names_else_the_operators(
    builder_image: str | None, expected: str
) -> None:
    model = a_model().with_precisions("fp8")
    if builder_image is not None:
        model.with_builder_image(builder_image)
    assert _container(_job(model.spec()))["image"] == expected


def test_tolerations_and_node_selectors_of_the_spec_reach_the_pod() -> None:
    spec = (
        a_model()
        .with_precisions("fp8")
        .with_serving(
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            nodeSelector={"pool": "gpu"},
        )
        .spec()
    )
    pod = _job(spec)["spec"]["template"]["spec"]
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_the_artifact_record_remembers_the_result_by_key() -> None:
    key = "e" * 64
    result = BuildResult(
        cache_key=key, state=BuildState.SUCCEEDED, artifact_path=f"/store/artifacts/{key}"
    )
    record = artifact_record("models", "h100-fp8", result, "fp8", "h100")
    assert record["metadata"]["name"] == f"qmo-artifact-{key[:16]}"
    assert record["metadata"]["labels"][labels.CACHE_KEY] == key[:16]
    assert BuildResult.model_validate_json(record["data"]["artifact.json"]) == result


# --- The serving Deployment -------------------------------------------------------------------


def _deployment(
    spec: QuantizedModelSpec,
    gpu: GpuClass | None = None,
    name: str = "h100-fp8",
    *,
    key: str = "a" * 64,
    track: str = labels.STABLE,
) -> Obj:
    planned = _planned(spec, gpu or a_class("h100"), name)
    return build_deployment(spec, planned, OWNER, key=key, track=track)


def test_the_server_listens_on_all_interfaces_with_the_tp_and_limits_of_its_variant() -> None:
    spec = a_model().with_precisions("fp8").with_tensor_parallel(2).spec()
    container = _container(_deployment(spec, key="a" * 64))
    args = container["args"]
    assert container["command"] == ["trtllm-serve"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == "8000"
    assert args[args.index("--tp_size") + 1] == "2"
    assert args[args.index("--max_batch_size") + 1] == "64"
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"


@pytest.mark.parametrize(
    ("backend", "served", "tokenizer"),
    [
        pytest.param("tensorrt", "engine", True, id="tensorrt-serves-the-engine"),
        pytest.param("pytorch", "checkpoint", False, id="pytorch-serves-the-checkpoint"),
    ],
)
def test_the_server_reads_the_artifact_of_its_key(
    backend: str, served: str, tokenizer: bool
) -> None:
    spec = a_model().with_precisions("fp8").with_backend(backend).spec()
    args = _container(_deployment(spec, key="b" * 64))["args"]
    assert args[0] == f"/store/artifacts/{'b' * 64}/{served}"
    assert ("--tokenizer" in args) is tokenizer


def test_the_store_is_mounted_read_only_for_serving() -> None:
    mounts = _container(_deployment(a_model().with_precisions("fp8").spec()))["volumeMounts"]
    store = next(m for m in mounts if m["name"] == "engine-store")
    assert (store["mountPath"], store["readOnly"]) == ("/store", True)


@pytest.mark.parametrize("timeout", [60, 65, 1800, 3605])
def test_the_startup_probe_allows_the_whole_startup_timeout_and_no_more_than_a_period_extra(
    timeout: int,
) -> None:
    spec = a_model().with_precisions("fp8").with_serving(startupTimeoutSeconds=timeout).spec()
    container = _container(_deployment(spec))
    startup = container["startupProbe"]
    allowed = startup["periodSeconds"] * startup["failureThreshold"]
    assert timeout <= allowed < timeout + startup["periodSeconds"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["periodSeconds"] * 3 < allowed


def test_the_deployment_is_owned_by_its_model_as_controller() -> None:
    meta = _deployment(a_model().with_precisions("fp8").spec())["metadata"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "qmo.dev/v1alpha1",
            "kind": "QuantizedModel",
            "name": "llama",
            "uid": "uid-1234",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert (meta["name"], meta["namespace"]) == ("llama-h100-fp8", "models")


def test_the_deployment_carries_the_recommended_and_qmo_labels() -> None:
    deployment = _deployment(a_model().with_precisions("fp8").spec(), key="c" * 64)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["metadata"]["labels"] == pod_labels
    assert {
        "app.kubernetes.io/name": "qmo",
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/managed-by": "qmo",
        "qmo.dev/model": "llama",
        "qmo.dev/variant": "h100-fp8",
        "qmo.dev/precision": "fp8",
        "qmo.dev/gpu-class": "h100",
        "qmo.dev/track": "stable",
    }.items() <= pod_labels.items()
    assert "app.kubernetes.io/version" in pod_labels
    assert "app.kubernetes.io/instance" not in pod_labels  # Argo CD would claim the objects
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert "app.kubernetes.io/version" not in selector  # an upgrade must not orphan pods
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        labels.REVISION_ANNOTATION: "c" * 64
    }


def test_the_pod_template_changes_only_with_the_artifact() -> None:
    spec = a_model().with_precisions("fp8").spec()
    one = _deployment(spec, key="d" * 64)["spec"]["template"]
    same = _deployment(spec, key="d" * 64)["spec"]["template"]
    rescaled = _deployment(a_model().with_precisions("fp8").with_replicas(3).spec(), key="d" * 64)[
        "spec"
    ]["template"]
    other = _deployment(spec, key="e" * 64)["spec"]["template"]
    assert one == same == rescaled
    assert one != other


@pytest.mark.parametrize(
    ("nodes", "gpus_per_node", "tp", "replicas", "max_surge"),
    [
        pytest.param(1, 8, 8, 1, 0, id="tp8-fills-the-only-node"),
        pytest.param(1, 8, 4, 2, 0, id="two-tp4-replicas-fill-the-node"),
        pytest.param(1, 1, 1, 1, 0, id="a-single-gpu"),
        pytest.param(1, 8, 1, 1, 1, id="seven-spare-gpus"),
        pytest.param(2, 8, 8, 1, 1, id="a-spare-node"),
        pytest.param(1, 8, 4, 1, 1, id="room-for-one-more-tp4-pod"),
    ],
)
def test_rolling_updates_surge_only_when_the_class_has_spare_gpus(
    nodes: int, gpus_per_node: int, tp: int, replicas: int, max_surge: int
) -> None:
    spec = a_model().with_precisions("fp8").with_tensor_parallel(tp).with_replicas(replicas).spec()
    gpu = a_class("h100", nodes=nodes, gpus_per_node=gpus_per_node)
    strategy = _deployment(spec, gpu)["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": max_surge, "maxUnavailable": 1 - max_surge}


def test_a_candidate_runs_one_replica_on_its_own_track_and_name() -> None:
    spec = a_model().with_precisions("fp8").with_replicas(4).spec()
    candidate = _deployment(spec, track=labels.CANDIDATE)
    assert candidate["metadata"]["name"] == "llama-h100-fp8-candidate"
    assert candidate["spec"]["replicas"] == 1
    assert candidate["spec"]["selector"]["matchLabels"][labels.TRACK] == "candidate"
    assert _deployment(spec)["spec"]["replicas"] == 4


# --- Services and the store -------------------------------------------------------------------


def test_a_variant_service_selects_exactly_its_deployments_pods() -> None:
    spec = a_model().with_precisions("fp8").spec()
    planned = _planned(spec, a_class("h100"), "h100-fp8")
    service = build_variant_service(spec, planned, OWNER)
    deployment = build_deployment(spec, planned, OWNER, key="f" * 64)
    assert service["metadata"]["name"] == "llama-h100-fp8"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["metadata"]["ownerReferences"] == [OWNER.reference()]


def test_a_candidate_service_selects_the_candidate_track_only() -> None:
    spec = a_model().with_precisions("fp8").spec()
    planned = _planned(spec, a_class("h100"), "h100-fp8")
    service = build_variant_service(spec, planned, OWNER, labels.CANDIDATE)
    assert service["metadata"]["name"] == "llama-h100-fp8-candidate"
    assert service["spec"]["selector"][labels.TRACK] == "candidate"


@pytest.mark.parametrize(
    ("precision", "selector"),
    [
        pytest.param(
            None,
            {
                "qmo.dev/model": "llama",
                "app.kubernetes.io/component": "server",
                "qmo.dev/track": "stable",
            },
            id="every-variant",
        ),
        pytest.param(
            Precision.FP8,
            {
                "qmo.dev/model": "llama",
                "app.kubernetes.io/component": "server",
                "qmo.dev/track": "stable",
                "qmo.dev/precision": "fp8",
            },
            id="the-chosen-precision",
        ),
    ],
)
def test_the_main_service_selects_by_precision_only_when_one_is_chosen(
    precision: Precision | None, selector: dict[str, str]
) -> None:
    service = build_main_service(a_model().spec(), precision, OWNER)
    assert service["metadata"]["name"] == "llama"
    assert service["spec"]["selector"] == selector
    assert service["metadata"]["ownerReferences"] == [OWNER.reference()]


def test_the_main_service_selects_the_pods_of_its_precisions_variants() -> None:
    spec = a_model().with_precisions("fp8").spec()
    pods = _deployment(spec)["spec"]["template"]["metadata"]["labels"]
    selector = build_main_service(spec, Precision.FP8, OWNER)["spec"]["selector"]
    other = build_main_service(spec, Precision.INT8, OWNER)["spec"]["selector"]
    assert selector.items() <= pods.items()
    assert not other.items() <= pods.items()


@pytest.mark.parametrize(
    ("store", "storage_class"),
    [
        pytest.param({}, None, id="default-class"),
        pytest.param({"storageClassName": "nfs"}, "nfs", id="named-class"),
    ],
)
def test_the_store_claim_outlives_every_model(
    store: dict[str, str], storage_class: str | None
) -> None:
    spec = a_model().with_store("engines", create=True, size="2Ti", **store).spec()
    claim = build_store_claim(spec, "models")
    assert "ownerReferences" not in claim["metadata"]
    assert (claim["metadata"]["name"], claim["metadata"]["namespace"]) == ("engines", "models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "2Ti"}}
    assert claim["spec"].get("storageClassName") == storage_class


def test_an_eval_job_mounts_a_dataset_config_map_with_dots_under_a_valid_volume_name() -> None:
    from qmo.manifests.evaluation import eval_job
    from qmo.planner.types import Evaluation

    benchmarks = [
        {"name": name, "dataset": {"configMap": {"name": config_map, "key": "data.jsonl"}}}
        for name, config_map in (("gsm8k", "gsm8k.v2"), ("gsm8k-old", "gsm8k-v2"))
    ]
    spec = a_model().with_quality(benchmarks=benchmarks).spec()
    evaluation = Evaluation("h100-fp8", "ab" * 32, on_candidate_track=False, baseline="h100-bf16")

    pod = eval_job(spec, evaluation, an_owner("llama"), image="qmo-eval:test")["spec"]["template"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (container,) = pod["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}

    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) for name in volumes)
    assert len(volumes) == len(pod["spec"]["volumes"]), "every volume name is unique"
    for config_map in ("gsm8k.v2", "gsm8k-v2"):
        volume = volumes[mounts[f"/benchmarks/{config_map}"]]
        assert volume["configMap"]["name"] == config_map
