"""How a pod reaches the engine store: the claim mounted at /store, or a bucket.

PURE. For a bucket, a pod gets the location as environment (qmo.store.location), credentials
from the model's Secret by reference (never their values), the CA bundle from a ConfigMap, and
the workload-identity ServiceAccount. Serving pods fetch their artifact into the node cache in
a native sidecar (`qmo-store fetch --hold`, which keeps it there for the pod's life) and the
server reads it read-only from there; build and
eval pods get the store paths they read (calibration data, datasets, task files) copied into
a scratch /store first (`qmo-store get`), so the programs in them read /store as on a claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qmo.api.base import quantity_value
from qmo.api.buildcontract import STORE_MOUNT_PATH, TERMINATION_MESSAGE_PATH
from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.config import DEFAULT_EVALUATOR_IMAGE, NodeCache, OperatorConfig
from qmo.manifests.pod import STORE_VOLUME, container_security_context
from qmo.planner.store import (
    CA_BUNDLE_DIR,
    SOURCE_CA_BUNDLE_DIR,
    SOURCE_CA_BUNDLE_FILE,
    BucketStore,
    ClaimStore,
    EngineStore,
    SourceAccess,
    claim_store,
    resolve_store,
    source_access,
)
from qmo.store.cache import SERVE_WITH_LOCK
from qmo.store.location import (
    ACCESS_KEY_ENV,
    MANIFEST,
    SECRET_KEY_ENV,
    SOURCE_ACCESS_KEY_ENV,
    SOURCE_CA_BUNDLE_ENV,
    SOURCE_ENDPOINT_ENV,
    SOURCE_PATH_STYLE_ENV,
    SOURCE_REGION_ENV,
    SOURCE_SECRET_KEY_ENV,
)

CACHE_VOLUME = "artifact-cache"
CACHE_MOUNT_PATH = "/cache"
CA_VOLUME = "store-ca"
SOURCE_CA_VOLUME = "source-ca"
FETCH_CONTAINER = "fetch-artifact"
GET_CONTAINER = "get-store-files"
UPLOAD_CONTAINER = "upload-outcomes"
# The store's keys are read from these keys of the model's Secret.
SECRET_KEYS = (ACCESS_KEY_ENV, SECRET_KEY_ENV)


@dataclass(frozen=True)
class StoreSetup:
    """The model's resolved store and the operator's cache settings, for the pod builders."""

    store: EngineStore
    cache: NodeCache = field(default_factory=NodeCache)
    image: str = DEFAULT_EVALUATOR_IMAGE
    source: SourceAccess | None = None  # how builds reach an s3:// model source

    @classmethod
    def of(cls, spec: QuantizedModelSpec, config: OperatorConfig) -> StoreSetup:
        """A store the model cannot use falls back to its claim (the planner refuses builds
        then, and what already serves keeps its pods as they are)."""
        store = resolve_store(spec, config)
        if not isinstance(store, (ClaimStore, BucketStore)):
            store = claim_store(spec)
        source = source_access(spec, config, store)
        return cls(store, config.node_cache, config.store_image, source)


def locked(artifact_dir: str, command: list[str]) -> list[str]:
    """`command` run holding a shared lock on the cached artifact, so the node cache never
    evicts it while the server runs (qmo.store.cache)."""
    return ["python3", "-c", SERVE_WITH_LOCK, f"{artifact_dir}/qmo-artifact.json", *command]


@dataclass
class StoreAccess:
    """What a pod spec gains to reach the store."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # for the main container
    env: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    service_account: str | None = None

    def pod_fields(self) -> dict[str, Any]:
        """The pod spec's serviceAccountName (workload identity) and init containers."""
        fields: dict[str, Any] = {}
        if self.service_account:
            fields["serviceAccountName"] = self.service_account
        if self.init_containers:
            fields["initContainers"] = self.init_containers
        return fields


def bucket_env(store: BucketStore) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": name, "value": value} for name, value in sorted(store.location.to_env().items())
    ]
    if store.credentials_secret is not None:
        env += [
            {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": store.credentials_secret, "key": key}},
            }
            for key in SECRET_KEYS
        ]
    return env


def source_fields(
    access: SourceAccess,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, volumes, mounts) of a build pod that reads an s3:// model source: the server as
    environment, its keys by reference to the Secret, its CA bundle from a ConfigMap."""
    env: list[dict[str, Any]] = [
        {"name": SOURCE_REGION_ENV, "value": access.region},
        {"name": SOURCE_PATH_STYLE_ENV, "value": "true" if access.path_style else "false"},
    ]
    if access.endpoint:
        env.append({"name": SOURCE_ENDPOINT_ENV, "value": access.endpoint})
    if access.credentials_secret is not None:
        env += [
            {
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": access.credentials_secret, "key": key}},
            }
            for name, key in ((SOURCE_ACCESS_KEY_ENV, ACCESS_KEY_ENV),
                              (SOURCE_SECRET_KEY_ENV, SECRET_KEY_ENV))
        ]  # fmt: skip
    if access.ca_bundle is not None:
        env.append({"name": SOURCE_CA_BUNDLE_ENV, "value": SOURCE_CA_BUNDLE_FILE})
    volumes, mounts = _ca_volume(SOURCE_CA_VOLUME, access.ca_bundle, SOURCE_CA_BUNDLE_DIR)
    return env, volumes, mounts


def _ca_volume(
    name: str, bundle: tuple[str, str] | None, directory: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): a CA bundle's ConfigMap key as `directory`/ca.crt, read-only."""
    if bundle is None:
        return [], []
    config_map, key = bundle
    volume = {
        "name": name,
        "configMap": {"name": config_map, "items": [{"key": key, "path": "ca.crt"}]},
    }
    return [volume], [{"name": name, "mountPath": directory, "readOnly": True}]


def ca_fields(store: BucketStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return _ca_volume(CA_VOLUME, store.ca_bundle, CA_BUNDLE_DIR)


def claim_volume(store: ClaimStore, *, read_only: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    volume = {
        "name": STORE_VOLUME,
        "persistentVolumeClaim": {"claimName": store.claim_name, "readOnly": read_only},
    }
    mount = {"name": STORE_VOLUME, "mountPath": STORE_MOUNT_PATH, "readOnly": read_only}
    return volume, mount


STORE_CONTAINER_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def store_container(
    name: str,
    image: str,
    args: list[str],
    store: EngineStore,
    mounts: list[dict[str, Any]],
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `qmo-store` container: on a bucket with its environment (keys by reference) and CA
    bundle; on a claim with what `mounts` gives it."""
    env: list[dict[str, Any]] = []
    ca_mounts: list[dict[str, Any]] = []
    if isinstance(store, BucketStore):
        env, (_, ca_mounts) = bucket_env(store), ca_fields(store)
    return {
        "name": name,
        "image": image,
        "command": ["qmo-store"],
        "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}, *env],
        "resources": resources or STORE_CONTAINER_RESOURCES,
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [*mounts, *ca_mounts],
    }


def scratch_store_access(
    store: EngineStore, paths: list[str], image: str, *, read_only: bool
) -> StoreAccess:
    """Build and eval pods: the claim at /store, or an emptyDir at /store holding `paths`
    copied from the bucket (and the bucket's environment, for what the program uploads)."""
    if isinstance(store, ClaimStore):
        volume, mount = claim_volume(store, read_only=read_only)
        return StoreAccess([volume], [mount])
    volumes, ca_mounts = ca_fields(store)
    scratch = {"name": STORE_VOLUME, "emptyDir": {}}
    mount = {"name": STORE_VOLUME, "mountPath": STORE_MOUNT_PATH}
    access = StoreAccess(
        [scratch, *volumes],
        [mount, *ca_mounts],
        bucket_env(store),
        service_account=store.service_account,
    )
    if paths:
        args = ["get", "--into", STORE_MOUNT_PATH, *(f"--path={p}" for p in sorted(set(paths)))]
        access.init_containers.append(store_container(GET_CONTAINER, image, args, store, [mount]))
    return access


def cache_volume(cache: NodeCache) -> dict[str, Any]:
    """The node cache: a hostPath directory every qmo pod on the node shares, or the pod's
    own emptyDir with the cache's size as its limit."""
    if cache.mode == "node":
        return {
            "name": CACHE_VOLUME,
            "hostPath": {"path": cache.host_path, "type": "DirectoryOrCreate"},
        }
    return {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": cache.size}}


# How long a serving pod's fetch may take before the kubelet restarts it: an hour.
FETCH_PROBE_PERIOD_SECONDS = 5
FETCH_PROBE_FAILURES = 720


def _as_sidecar(manifest: str) -> dict[str, Any]:
    """What makes the fetch step a native sidecar: it runs for the pod's whole life holding
    the artifact in the node cache (`qmo-store fetch --hold`), and the server starts once the
    artifact is there (the startup probe). Its requests count for the pod's life, so they are
    small; the fetch may use more CPU while it runs, and memory up to the limit."""
    exists = "import os, sys; sys.exit(0 if os.path.exists(sys.argv[1]) else 1)"
    return {
        "restartPolicy": "Always",
        "startupProbe": {
            "exec": {"command": ["python3", "-c", exists, manifest]},
            "periodSeconds": FETCH_PROBE_PERIOD_SECONDS,
            "failureThreshold": FETCH_PROBE_FAILURES,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "1Gi"},
        },
    }


def serving_store_access(
    store: EngineStore, key: str, cache: NodeCache, image: str
) -> tuple[StoreAccess, str]:
    """(what the serving pod gains, the directory its artifact is in)."""
    if isinstance(store, ClaimStore):
        volume, mount = claim_volume(store, read_only=True)
        return StoreAccess([volume], [mount]), f"{STORE_MOUNT_PATH}/artifacts/{key}"
    volumes, _ = ca_fields(store)
    writable = {"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT_PATH}
    fetch = store_container(
        FETCH_CONTAINER,
        image,
        [
            "fetch",
            "--key",
            key,
            "--cache",
            CACHE_MOUNT_PATH,
            "--max-bytes",
            str(int(quantity_value(cache.size))),
            "--hold",
        ],
        store,
        [writable],
    )
    fetch.update(_as_sidecar(f"{CACHE_MOUNT_PATH}/{key}/{MANIFEST}"))
    access = StoreAccess(
        [cache_volume(cache), *volumes],
        # The server reads the cache and never writes it (only the fetch step does).
        [{"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT_PATH, "readOnly": True}],
        init_containers=[fetch],
        service_account=store.service_account,
    )
    return access, f"{CACHE_MOUNT_PATH}/{key}"
