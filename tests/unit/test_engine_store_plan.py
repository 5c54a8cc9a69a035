"""Which store a model's artifacts live on, and what the pods that read or write it get.

Pure: the planner's store resolution and migration, and the manifests of build, serving and
eval pods on a bucket. The store itself (a real S3 server) is in
tests/cluster/test_engine_store_objects.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from qmo.config import NodeCache, OperatorConfig, S3Defaults
from qmo.manifests.build import build_job
from qmo.manifests.evaluation import EVAL_CONTAINER, eval_job
from qmo.manifests.serving import build_deployment
from qmo.manifests.store import CACHE_MOUNT_PATH, FETCH_CONTAINER, GET_CONTAINER, StoreSetup
from qmo.planner.plan import plan_model
from qmo.planner.references import referenced_keys
from qmo.planner.store import (
    BucketStore,
    ClaimStore,
    SourceAccess,
    resolve_store,
)
from qmo.planner.types import Evaluation
from qmo.vocabulary import Reason, Refusal
from tests.support.builders import a_class, a_cluster, a_model, an_owner, variant

BUCKET_CONFIG = OperatorConfig(
    store_type="s3",
    s3=S3Defaults(
        bucket="models",
        prefix="qmo",
        endpoint="https://s3.storage:9000",
        path_style=True,
        credentials_secret="s3-keys",
        ca_bundle_configmap="s3-ca",
    ),
    allowed_images=("*",),
)


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_model_that_names_no_store_takes_the_operators_bucket() -> None:
    store = resolve_store(a_model().spec(), BUCKET_CONFIG)
    assert isinstance(store, BucketStore)
    assert store.identity == "s3://models/qmo"
    assert store.credentials_secret == "s3-keys"
    assert store.ca_bundle == ("s3-ca", "ca.crt")


def test_a_models_own_fields_override_the_operators_and_the_rest_is_kept() -> None:
    spec = a_model().with_store("qmo-engines", type="s3", s3={"bucket": "team-a"}).spec()
    store = resolve_store(spec, BUCKET_CONFIG)
    assert isinstance(store, BucketStore)
    assert store.location.bucket == "team-a"
    assert store.location.endpoint == "https://s3.storage:9000"


def test_a_model_may_keep_its_claim_under_an_operator_that_defaults_to_a_bucket() -> None:
    spec = a_model().with_store("qmo-engines", type="pvc").spec()
    assert resolve_store(spec, BUCKET_CONFIG) == ClaimStore("qmo-engines")


def test_s3_without_a_bucket_anywhere_is_refused_with_a_reason() -> None:
    spec = a_model().with_store("qmo-engines", type="s3").spec()
    refused = resolve_store(spec, OperatorConfig())
    assert isinstance(refused, Refusal)
    assert refused.reason == Reason.ENGINE_STORE_INVALID


def test_the_store_is_part_of_the_key_but_the_endpoint_is_not() -> None:
    spec = a_model().with_precisions("fp8").spec()
    cluster = a_cluster(a_class("h100"))
    on_claim = variant(plan_model(spec, cluster.observed(), OperatorConfig()), "h100-fp8")
    on_bucket = variant(plan_model(spec, cluster.observed(), BUCKET_CONFIG), "h100-fp8")
    elsewhere = replace(BUCKET_CONFIG, s3=replace(BUCKET_CONFIG.s3, endpoint="http://10.0.0.9"))
    same_bucket = variant(plan_model(spec, cluster.observed(), elsewhere), "h100-fp8")
    assert on_claim.cache_key != on_bucket.cache_key
    assert on_bucket.cache_key == same_bucket.cache_key
    assert on_bucket.build is not None
    assert on_bucket.build.output_dir == f"s3://models/qmo/artifacts/{on_bucket.cache_key}"


def test_an_invalid_store_starts_no_build_and_says_why() -> None:
    spec = a_model().with_precisions("fp8").with_store("qmo-engines", type="s3").spec()
    cluster = a_cluster(a_class("h100")).with_claims("qmo-engines")
    plan = plan_model(spec, cluster.observed(), OperatorConfig(allowed_images=("*",)))
    planned = variant(plan, "h100-fp8")
    assert planned.decision.reason == Reason.ENGINE_STORE_INVALID
    assert [n.reason for n in plan.notes] == [Reason.ENGINE_STORE_INVALID]


def test_an_artifact_built_on_the_claim_is_copied_to_the_bucket_not_rebuilt() -> None:
    spec = a_model().with_precisions("fp8").spec()
    cluster = a_cluster(a_class("h100")).with_claims("qmo-engines")
    on_claim = variant(plan_model(spec, cluster.observed(), OperatorConfig()), "h100-fp8")
    assert on_claim.cache_key is not None
    cluster.built(on_claim.cache_key)
    moved = variant(plan_model(spec, cluster.observed(), BUCKET_CONFIG), "h100-fp8")
    assert moved.build is not None
    assert moved.build.copy_from == f"/store/artifacts/{on_claim.cache_key}"
    assert moved.build_gpus == 0
    job = build_job(
        spec, moved, namespace="ns", image="builder", store=StoreSetup.of(spec, BUCKET_CONFIG)
    )
    pod = _pod(job)
    assert "nodeSelector" not in pod, "a copy needs no GPU node"
    assert "nvidia.com/gpu" not in str(pod["containers"][0]["resources"])
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "qmo-engines", "readOnly": True}


def test_without_the_old_artifact_a_bucket_build_is_a_build() -> None:
    spec = a_model().with_precisions("fp8").spec()
    cluster = a_cluster(a_class("h100")).with_claims("qmo-engines")
    planned = variant(plan_model(spec, cluster.observed(), BUCKET_CONFIG), "h100-fp8")
    assert planned.build is not None
    assert planned.build.copy_from is None
    assert planned.build_gpus == 1


def _planned(config: OperatorConfig) -> Any:
    spec = a_model().with_precisions("fp8").spec()
    return spec, variant(
        plan_model(spec, a_cluster(a_class("h100")).observed(), config), "h100-fp8"
    )


def test_a_bucket_build_gets_the_bucket_by_environment_and_no_claim() -> None:
    spec, planned = _planned(BUCKET_CONFIG)
    job = build_job(
        spec, planned, namespace="ns", image="builder", store=StoreSetup.of(spec, BUCKET_CONFIG)
    )
    pod = _pod(job)
    env = _env(pod["containers"][0])
    assert env["QMO_STORE_S3_BUCKET"] == "models"
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "s3-keys", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    assert any(v.get("configMap", {}).get("name") == "s3-ca" for v in pod["volumes"])


@pytest.mark.parametrize(
    ("mode", "volume"), [("node", "hostPath"), ("pod", "emptyDir")], ids=["node", "pod"]
)
def test_a_serving_pod_fetches_into_the_node_cache_and_serves_it_read_only(
    mode: str, volume: str
) -> None:
    config = replace(BUCKET_CONFIG, node_cache=NodeCache(mode=mode, size="100Gi"))
    spec, planned = _planned(config)
    deployment = build_deployment(
        spec, planned, an_owner(), key="k" * 16, store=StoreSetup.of(spec, config)
    )
    pod = _pod(deployment)
    fetch = pod["initContainers"][0]
    assert fetch["name"] == FETCH_CONTAINER
    assert fetch["args"][:3] == ["fetch", "--key", "k" * 16]
    assert fetch["args"][-2:] == [str(100 * 2**30), "--hold"]
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    # A native sidecar: it holds the artifact for the pod's life, the server starts once the
    # artifact is in the cache, and its requests (counted for the pod's life) stay small.
    assert fetch["restartPolicy"] == "Always"
    probe = fetch["startupProbe"]
    assert probe["exec"]["command"][-1] == f"{CACHE_MOUNT_PATH}/{'k' * 16}/qmo-artifact.json"
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 3600
    assert fetch["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    server = pod["containers"][0]
    cache_mount = next(m for m in server["volumeMounts"] if m["mountPath"] == CACHE_MOUNT_PATH)
    assert cache_mount["readOnly"] is True
    # The server holds its artifact locked while it runs, then execs trtllm-serve on it.
    assert server["command"][:2] == ["python3", "-c"]
    assert server["command"][3] == f"{CACHE_MOUNT_PATH}/{'k' * 16}/qmo-artifact.json"
    assert server["command"][4] == "trtllm-serve"
    assert server["args"][0].startswith(f"{CACHE_MOUNT_PATH}/{'k' * 16}/")
    cache = next(v for v in pod["volumes"] if v["name"] == cache_mount["name"])
    assert volume in cache
    assert "AWS_SECRET_ACCESS_KEY" not in str(server), "the server never sees the keys"


def test_an_eval_job_on_a_bucket_gets_its_datasets_and_uploads_its_outcomes() -> None:
    spec = (
        a_model()
        .with_precisions("fp8")
        .with_quality(benchmarks=[{"name": "gsm8k", "dataset": {"path": "benchmarks/gsm8k.jsonl"}}])
        .spec()
    )
    evaluation = Evaluation("h100-fp8", "k" * 16, on_candidate_track=True, baseline="h100-bf16")
    job = eval_job(
        spec, evaluation, an_owner(), image="evaluator", store=StoreSetup.of(spec, BUCKET_CONFIG)
    )
    pod = _pod(job)
    get, evaluator = pod["initContainers"]
    assert get["name"] == GET_CONTAINER
    assert "--path=benchmarks/gsm8k.jsonl" in get["args"]
    # Model-written code runs in the evaluator: it holds no key, and no address of the store.
    assert evaluator["name"] == EVAL_CONTAINER
    assert not any(e["name"].startswith(("AWS_", "QMO_STORE_")) for e in evaluator["env"])
    (upload,) = pod["containers"]
    assert upload["args"][:2] == ["put", "--from"]
    assert upload["args"][-1].startswith("evaluations/models/llama/h100-fp8/")
    assert _env(upload)["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "s3-keys", "key": "AWS_ACCESS_KEY_ID"}
    }


def test_whatever_a_model_a_report_or_a_pod_names_is_referenced() -> None:
    model = {"status": {"variants": [{"cacheKey": "a", "revision": "b", "lastGoodRevision": "c"}]}}
    report = {"spec": {"cacheKey": "d"}}
    build = {"metadata": {"annotations": {"qmo.dev/revision": "e"}}}
    deployment = {"spec": {"template": {"metadata": {"annotations": {"qmo.dev/revision": "f"}}}}}
    assert referenced_keys([model], [report], [build, deployment]) == set("abcdef")


# --- s3:// model sources -------------------------------------------------------------------


def _on_s3(**connection: Any) -> Any:
    model = a_model().from_source("s3://checkpoints/llama/8b").with_precisions("fp8")
    return (model.with_source_s3(**connection) if connection else model).spec()


@pytest.mark.parametrize(
    ("spec", "config", "expected"),
    [
        pytest.param(a_model().spec(), BUCKET_CONFIG, None, id="a hub source needs no S3 access"),
        pytest.param(
            _on_s3(),
            BUCKET_CONFIG,
            SourceAccess(
                "https://s3.storage:9000", "us-east-1", True, "s3-keys", ("s3-ca", "ca.crt")
            ),
            id="the engine store's server and keys",
        ),
        pytest.param(
            _on_s3(),
            OperatorConfig(),
            SourceAccess(),
            id="on a claim store with no defaults: AWS, workload identity",
        ),
        pytest.param(
            _on_s3(
                endpoint="http://minio.lab:9000",
                credentialsSecretName="lab-keys",
                caBundle={"name": "lab-ca", "key": "pem"},
            ),
            BUCKET_CONFIG,
            SourceAccess("http://minio.lab:9000", "us-east-1", True, "lab-keys", ("lab-ca", "pem")),
            id="model.s3 over the store's, field by field",
        ),
    ],
)
def test_how_a_build_reaches_an_s3_source(
    spec: Any, config: OperatorConfig, expected: SourceAccess | None
) -> None:
    assert StoreSetup.of(spec, config).source == expected


def test_a_build_of_an_s3_source_gets_the_server_its_keys_and_its_ca_by_reference() -> None:
    spec = _on_s3(credentialsSecretName="lab-keys", caBundle={"name": "lab-ca", "key": "pem"})
    planned = variant(
        plan_model(spec, a_cluster(a_class("h100")).observed(), OperatorConfig()), "h100-fp8"
    )
    job = build_job(
        spec, planned, namespace="ns", image="builder", store=StoreSetup.of(spec, OperatorConfig())
    )
    pod = _pod(job)
    builder = pod["containers"][0]
    env = _env(builder)
    assert env["QMO_SOURCE_S3_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "lab-keys", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert env["QMO_SOURCE_S3_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "lab-keys", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert env["QMO_SOURCE_S3_CA_BUNDLE"] == "/etc/qmo/source-ca/ca.crt"
    ca = next(v for v in pod["volumes"] if v["name"] == "source-ca")
    assert ca["configMap"] == {"name": "lab-ca", "items": [{"key": "pem", "path": "ca.crt"}]}
    assert {"name": "source-ca", "mountPath": "/etc/qmo/source-ca", "readOnly": True} in builder[
        "volumeMounts"
    ]
    assert "QMO_STORE_S3_BUCKET" not in env, "the artifacts stay on the claim"


def test_a_build_of_a_hub_source_gets_no_s3_variables() -> None:
    spec, planned = _planned(BUCKET_CONFIG)
    job = build_job(
        spec, planned, namespace="ns", image="builder", store=StoreSetup.of(spec, BUCKET_CONFIG)
    )
    env = _env(_pod(job)["containers"][0])
    assert not [name for name in env if name.startswith("QMO_SOURCE_S3_")]


# --- the build's working disk -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("scratch", "tmp"),
    [
        pytest.param(None, {"name": "tmp", "emptyDir": {}}, id="unset: the node's disk"),
        pytest.param(
            {"size": "800Gi", "storageClassName": "local-nvme"},
            {
                "name": "tmp",
                "ephemeral": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "800Gi"}},
                            "storageClassName": "local-nvme",
                        }
                    }
                },
            },
            id="a volume of the pod's own",
        ),
    ],
)
def test_a_build_works_on_tmp_on_the_nodes_disk_or_on_a_volume_of_its_own(
    scratch: dict[str, str] | None, tmp: dict[str, Any]
) -> None:
    model = a_model().with_precisions("fp8")
    spec = (model.with_build(scratch=scratch) if scratch else model).spec()
    planned = variant(
        plan_model(spec, a_cluster(a_class("h100")).observed(), OperatorConfig()), "h100-fp8"
    )
    pod = _pod(build_job(spec, planned, namespace="ns", image="builder"))
    assert next(v for v in pod["volumes"] if v["name"] == "tmp") == tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]
    without = variant(
        plan_model(a_model().with_precisions("fp8").spec(),
                   a_cluster(a_class("h100")).observed(), OperatorConfig()), "h100-fp8",
    )  # fmt: skip
    assert planned.cache_key == without.cache_key, "where it works is not part of the key"
