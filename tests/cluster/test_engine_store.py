"""A model on an S3-compatible store, end to end on the local control plane, with no claim:
the build publishes to the bucket, the serving pod's fetch step reads and verifies it into the
node cache, a second model with the same key reuses the artifact, credentials come from a
Secret, and a fetch that fails shows on the variant with the step's own reason.

The pods are kwok's: the test plays the builder (qmo-builder's own code, with the Job's
environment and the Secret it names) and the fetch step (the real `qmo-store` program, with the
Deployment's init container's arguments and environment), against versitygw on loopback.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.operator_process import OperatorProcess, running_operator
from qmo.api.buildcontract import BUILD_SPEC_ENV, BuildRequest, SourceRef
from qmo.api.quantizedmodel import EngineBackend
from qmo.builder import cli as builder_cli
from qmo.builder.gpucheck import SeenGpu
from qmo.manifests.store import FETCH_CONTAINER
from qmo.store.location import S3Location
from qmo.store.objects import connect
from tests.support.build_requests import a_checkpoint
from tests.support.kube import ClusterHandle, variants, wait_for
from tests.support.scenario import a_model, build_jobs, create, finish_job_pod, wait_ready
from tests.support.store_server import StoreServer
from tests.support.waits import wait_until

BUCKET = "qmo-e2e"
H100 = SeenGpu("NVIDIA H100 80GB HBM3", "9.0", 81559, "580.159.04")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    with StoreServer.start(tmp_path_factory.mktemp("s3") / "server") as running:
        running.create_bucket(BUCKET)
        yield running


def _secret(cluster: ClusterHandle, namespace: str, name: str, key_id: str, secret: str) -> None:
    cluster.core().create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            string_data={"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret},
        ),
    )


def _on_bucket(
    name: str, server: StoreServer, secret: str = "s3-keys", prefix: str = "cluster"
) -> dict[str, Any]:
    return a_model(
        name,
        # e2e-hold-: kwok keeps the build pod running until the test, as the builder, ends it.
        model={"revision": "e2e-hold-store"},
        precisions=["fp8"],
        gpu={"classes": ["h100"]},
        engine={
            "store": {
                "type": "s3",
                "s3": {
                    "bucket": BUCKET,
                    "prefix": prefix,
                    "endpoint": server.endpoint,
                    "pathStyle": True,
                    "credentialsSecretName": secret,
                },
            }
        },
    )


def resolved_env(cluster: ClusterHandle, namespace: str, container: Any) -> dict[str, str]:
    """A container's environment as the kubelet gives it: values, and Secret keys it names."""
    env = {}
    for var in container.env or []:
        if var.value is not None:
            env[var.name] = var.value
        elif var.value_from is not None and var.value_from.secret_key_ref is not None:
            ref = var.value_from.secret_key_ref
            data = cluster.core().read_namespaced_secret(ref.name, namespace).data
            env[var.name] = base64.b64decode(data[ref.key]).decode()
    return env


def play_the_builder(
    cluster: ClusterHandle, namespace: str, job: client.V1Job, workdir: Path
) -> dict[str, Any]:
    """Run qmo-builder's `run` with the Job's environment (a bf16 copy of a local checkpoint
    stands in for the download and quantization), then end the pod with its result."""
    container = job.spec.template.spec.containers[0]
    env = resolved_env(cluster, namespace, container)
    request = BuildRequest.model_validate(json.loads(env[BUILD_SPEC_ENV]))
    checkpoint = a_checkpoint(workdir / "checkpoint")
    request = request.model_copy(
        update={"source": SourceRef(uri=str(checkpoint)), "precision": "bf16",
                "kv_cache_dtype": "bf16", "backend": EngineBackend.PYTORCH}
    )  # fmt: skip
    env[BUILD_SPEC_ENV] = json.dumps(request.to_wire())
    env["QMO_BUILD_SCRATCH"] = str(workdir / "scratch")
    termination = workdir / "termination-log"
    args = builder_cli.build_parser().parse_args(["build", "--termination-log", str(termination)])
    code = builder_cli.run(args, env, probe=lambda: [H100], out=lambda _: None)
    message = termination.read_text()
    assert code == 0, message
    finish_job_pod(cluster, namespace, job.metadata.name, message)
    result: dict[str, Any] = json.loads(message)
    return result


def run_fetch_step(
    cluster: ClusterHandle, namespace: str, deployment: client.V1Deployment, cache: Path
) -> subprocess.CompletedProcess[str]:
    """The Deployment's fetch init container, run as the kubelet would run it (its arguments
    and environment), but with the node cache at `cache`."""
    init = deployment.spec.template.spec.init_containers[0]
    assert init.name == FETCH_CONTAINER
    env = resolved_env(cluster, namespace, init)
    args = [a if a != "/cache" else str(cache) for a in init.args]
    args += ["--termination-log", str(cache.parent / "fetch-termination-log")]
    qmo_store = Path(sys.executable).with_name("qmo-store")
    # A sidecar (--hold): it fetches, then holds the artifact until the pod ends, which the
    # test plays with SIGTERM once it says so (or it has failed and exited).
    step = subprocess.Popen(
        [str(qmo_store), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert step.stdout is not None
    said = []
    for line in step.stdout:
        said.append(line)
        if "held in the node cache" in line:
            step.send_signal(signal.SIGTERM)
            break
    out, err = step.communicate(timeout=120)
    return subprocess.CompletedProcess(step.args, step.returncode, "".join(said) + out, err)


def play_the_gc_pod(
    cluster: ClusterHandle,
    namespace: str,
    job: client.V1Job,
    keep: str,
    workdir: Path,
    root: Path | None = None,
) -> None:
    """Run a store GC Job's `qmo-store gc` as its pod would (its arguments and environment,
    the keep list `keep`, a claim at `root`), then end the pod with the pass's summary."""
    container = job.spec.template.spec.containers[0]
    (workdir / "keys").write_text(keep)
    said = workdir / "termination-log"
    args = [str(root) if a == "/store" and root else a for a in container.args]
    args = [str(workdir / "keys") if a.endswith("/keys") else a for a in args]
    args = [str(said) if a == "/dev/termination-log" else a for a in args]
    ran = subprocess.run(
        [str(Path(sys.executable).with_name("qmo-store")), *args],
        env={**os.environ, **resolved_env(cluster, namespace, container)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    finish_job_pod(cluster, namespace, job.metadata.name, said.read_text())


def _job(cluster: ClusterHandle, namespace: str, component: str = "build") -> client.V1Job:
    """The first Job of a component (build, store-gc) in the namespace, once there is one."""
    found: client.V1Job = wait_for(
        cluster.batch().list_namespaced_job,
        lambda j: True,
        namespace=namespace,
        label_selector=f"app.kubernetes.io/component={component}",
        timeout=120,
        describe=f"the {component} Job",
    )
    return found


def _deployment(cluster: ClusterHandle, namespace: str, model: str) -> client.V1Deployment:
    found: client.V1Deployment = wait_for(
        cluster.apps().list_namespaced_deployment,
        lambda d: d.spec.template.spec.init_containers,
        namespace=namespace,
        label_selector=f"qmo.dev/model={model}",
        timeout=120,
        describe=f"the serving Deployment of {model}",
    )
    return found


def test_a_model_on_a_bucket_builds_fetches_verifies_and_shares_without_a_claim(
    cluster: ClusterHandle, operator: Any, namespace: str, server: StoreServer, tmp_path: Path
) -> None:
    _secret(cluster, namespace, "s3-keys", server.access_key, server.secret_key)
    create(cluster, namespace, _on_bucket("first", server))
    job = _job(cluster, namespace)
    pod = job.spec.template.spec
    assert not any(v.persistent_volume_claim for v in pod.volumes), "no claim anywhere"
    result = play_the_builder(cluster, namespace, job, tmp_path / "build")
    assert result["artifactPath"].startswith(f"s3://{BUCKET}/cluster/artifacts/")

    wait_ready(cluster, namespace, "first")
    deployment = _deployment(cluster, namespace, "first")
    assert not any(v.persistent_volume_claim for v in deployment.spec.template.spec.volumes)
    cache = tmp_path / "node" / "cache"
    cache.parent.mkdir(parents=True)
    fetched = run_fetch_step(cluster, namespace, deployment, cache)
    assert fetched.returncode == 0, fetched.stderr
    assert "fetched and verified" in fetched.stdout
    key = job.metadata.annotations["qmo.dev/revision"]
    assert (cache / key / "qmo-artifact.json").is_file()
    again = run_fetch_step(cluster, namespace, deployment, cache)  # a second pod on the node
    assert again.returncode == 0, again.stderr
    assert "reused from the node cache" in again.stdout

    # A second model of the same content reuses the artifact: no new build Job.
    create(cluster, namespace, _on_bucket("second", server))
    wait_ready(cluster, namespace, "second")
    second = _deployment(cluster, namespace, "second")
    assert second.metadata.annotations["qmo.dev/revision"] == key
    assert len(build_jobs(cluster, namespace)) == 1


def test_a_fetch_with_wrong_credentials_shows_its_reason_on_the_variant(
    cluster: ClusterHandle, operator: Any, namespace: str, server: StoreServer, tmp_path: Path
) -> None:
    _secret(cluster, namespace, "s3-keys", server.access_key, server.secret_key)
    create(cluster, namespace, _on_bucket("keys", server))
    job = _job(cluster, namespace)
    play_the_builder(cluster, namespace, job, tmp_path / "build")
    wait_ready(cluster, namespace, "keys")
    deployment = _deployment(cluster, namespace, "keys")
    # The keys are rotated wrongly: the next pod's fetch step is refused.
    cluster.core().patch_namespaced_secret(
        "s3-keys", namespace, {"stringData": {"AWS_SECRET_ACCESS_KEY": "rotated-wrongly"}}
    )
    cache = tmp_path / "node" / "cache"
    cache.parent.mkdir(parents=True)
    refused = run_fetch_step(cluster, namespace, deployment, cache)
    assert refused.returncode == 1
    said = (cache.parent / "fetch-termination-log").read_text()
    assert json.loads(said)["reason"] == "StoreAccessDenied"
    assert "rotated-wrongly" not in said + refused.stderr

    # The kubelet restarts the step with backoff; the pod is not ready, and says why.
    pods = cluster.core().list_namespaced_pod(namespace, label_selector="qmo.dev/model=keys")
    serving = next(p for p in pods.items if p.spec.init_containers)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    failed = {"exitCode": 1, "reason": "Error", "message": said, "startedAt": now,
              "finishedAt": now}  # fmt: skip
    cluster.core().patch_namespaced_pod_status(
        serving.metadata.name,
        namespace,
        {
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False"}],
                "initContainerStatuses": [
                    {"name": FETCH_CONTAINER, "image": "qmo", "imageID": "", "ready": False,
                     "restartCount": 1, "lastState": {"terminated": failed},
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ],
            }
        },
    )  # fmt: skip
    stuck = cluster.wait_for_model(
        namespace,
        "keys",
        lambda m: any(
            v.get("reason") == "ArtifactFetchFailed"
            for v in (m.get("status") or {}).get("variants") or []
        ),
        timeout=120,
        describe="the variant to say its fetch fails",
    )
    variant = next(v for v in stuck["status"]["variants"] if v["name"] == "h100-fp8")
    assert "StoreAccessDenied" in variant["message"]


@pytest.fixture
def gc_operator(
    cluster: ClusterHandle, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator of this namespace alone, collecting garbage every few seconds; the shared
    one pauses."""
    operator.stop()
    try:
        with running_operator(
            cluster.kubeconfig, tmp_path / "qmo.log", "--namespace", namespace,
            "--store-gc-interval-seconds", "3",
        ) as own:  # fmt: skip
            yield own
    finally:
        operator.start()


@pytest.mark.usefixtures("engine_store")
def test_the_claim_store_is_collected_by_a_job_the_operator_starts_and_reports(
    cluster: ClusterHandle, namespace: str, gc_operator: OperatorProcess, tmp_path: Path
) -> None:
    create(cluster, namespace, a_model("kept", precisions=["fp8"], gpu={"classes": ["h100"]}))
    kept = variants(wait_ready(cluster, namespace, "kept"))["h100-fp8"]["cacheKey"]
    job = _job(cluster, namespace, "store-gc")
    pod = job.spec.template.spec
    claim = next(v for v in pod.volumes if v.persistent_volume_claim)
    assert claim.persistent_volume_claim.claim_name == "qmo-engines"
    keep_map = next(v for v in pod.volumes if v.config_map).config_map.name
    keep = cluster.core().read_namespaced_config_map(keep_map, namespace).data["keys"]
    assert kept in keep.split()
    assert "--delete" not in pod.containers[0].args, "a dry run by default"

    # The pod, played: qmo-store gc on a copy of the claim with the model's artifact and an
    # orphan, with the keep list the operator wrote.
    root = tmp_path / "claim"
    for key in (kept, "0" * 64):
        (root / "artifacts" / key).mkdir(parents=True)
        (root / "artifacts" / key / "qmo-artifact.json").write_text(
            json.dumps({"complete": True, "cacheKey": key, "files": []})
        )
    play_the_gc_pod(cluster, namespace, job, keep, tmp_path, root=root)
    store = f"pvc:{namespace}/qmo-engines"
    wait_until(
        lambda: gc_operator.metric("qmo_store_artifacts", store=store, state="waiting") == 1,
        timeout=120,
        what="the GC pass's counts in metrics",
    )
    assert gc_operator.metric("qmo_store_artifacts", store=store, state="referenced") == 1
    assert gc_operator.metric("qmo_store_gc_dry_run", store=store) == 1
    assert (root / "artifacts" / ("0" * 64)).is_dir(), "a dry run deletes nothing"


def test_a_models_own_bucket_is_collected_by_a_job_in_its_namespace_with_its_keys(
    cluster: ClusterHandle,
    namespace: str,
    gc_operator: OperatorProcess,
    server: StoreServer,
    tmp_path: Path,
) -> None:
    _secret(cluster, namespace, "s3-keys", server.access_key, server.secret_key)
    create(cluster, namespace, _on_bucket("own", server, prefix="own-bucket"))
    # An artifact no model needs, on the model's bucket (the operator holds no keys for it).
    location = S3Location(BUCKET, "own-bucket", server.endpoint, path_style=True)
    keys = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    orphan = "0" * 64
    connect(location, keys).write_json(
        location.artifact_key(orphan, "qmo-artifact.json"),
        {"complete": True, "cacheKey": orphan, "files": [], "totalBytes": 0},
    )
    job = _job(cluster, namespace, "store-gc")
    container = job.spec.template.spec.containers[0]
    assert "--root" not in container.args
    keep_map = next(v for v in job.spec.template.spec.volumes if v.config_map).config_map.name
    keep = cluster.core().read_namespaced_config_map(keep_map, namespace).data["keys"]

    # The pod, played: qmo-store gc with the Job's own environment (the namespace's keys).
    play_the_gc_pod(cluster, namespace, job, keep, tmp_path)
    store = "s3://qmo-e2e/own-bucket"
    wait_until(
        lambda: gc_operator.metric("qmo_store_artifacts", store=store, state="waiting") == 1,
        timeout=120,
        what="the bucket's GC pass in metrics",
    )
    assert gc_operator.metric("qmo_store_gc_dry_run", store=store) == 1
