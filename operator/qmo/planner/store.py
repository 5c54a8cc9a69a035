"""Which engine store a model's artifacts live on: its claim, or a bucket.

PURE. A model's `engine.store` is merged over the operator's defaults (the chart's
engineStore): `type` picks the kind, and each unset field of `s3` takes the operator's value.
The resolved store is part of every variant's cache key (`identity`): an artifact on one store
is not on another, and the records that say "built" are per key. Its identity leaves the
endpoint out, so clusters that reach one bucket by different URLs share its artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.config import OperatorConfig
from qmo.store.location import S3Location
from qmo.vocabulary import Reason, Refusal


@dataclass(frozen=True)
class ClaimStore:
    """A ReadWriteMany PersistentVolumeClaim every pod mounts at /store."""

    claim_name: str
    create: bool = False
    size: str = "500Gi"
    storage_class_name: str | None = None

    @property
    def identity(self) -> str:
        return self.claim_name  # as cache keys always named it


@dataclass(frozen=True)
class BucketStore:
    """An S3-compatible bucket; serving pods read it through the node cache."""

    location: S3Location
    credentials_secret: str | None = None
    ca_bundle: tuple[str, str] | None = None  # (ConfigMap, key)
    service_account: str | None = None

    @property
    def identity(self) -> str:
        return self.location.uri()


EngineStore = ClaimStore | BucketStore
T = TypeVar("T")


def claim_store(spec: QuantizedModelSpec) -> ClaimStore:
    store = spec.engine.store
    return ClaimStore(store.claim_name, store.create, store.size, store.storage_class_name)


def resolve_store(spec: QuantizedModelSpec, config: OperatorConfig) -> EngineStore | Refusal:
    """The model's store, or why it has none it can use."""
    wanted = spec.engine.store
    kind = wanted.type or config.store_type
    if kind != "s3":
        return claim_store(spec)
    own = wanted.s3
    default = config.s3
    bucket = (own.bucket if own else None) or default.bucket
    if not bucket:
        return Refusal(
            Reason.ENGINE_STORE_INVALID,
            "engine.store.type is s3 but no bucket is set: set engine.store.s3.bucket, or the "
            "operator's engineStore.s3.bucket",
        )
    location = S3Location(
        bucket=bucket,
        prefix=_pick(own.prefix if own else None, default.prefix).strip("/"),
        endpoint=(own.endpoint if own else None) or default.endpoint,
        region=(own.region if own else None) or default.region,
        path_style=_pick(own.path_style if own else None, default.path_style),
        ca_bundle=CA_BUNDLE_FILE if _ca_bundle(spec, config) else None,
    )
    return BucketStore(
        location=location,
        credentials_secret=(own.credentials_secret_name if own else None)
        or default.credentials_secret,
        ca_bundle=_ca_bundle(spec, config),
        service_account=(own.service_account_name if own else None) or default.service_account,
    )


# Where pods find the CA bundle (a ConfigMap key mounted read-only).
CA_BUNDLE_DIR = "/etc/qmo/store-ca"
CA_BUNDLE_FILE = f"{CA_BUNDLE_DIR}/ca.crt"


def _ca_bundle(spec: QuantizedModelSpec, config: OperatorConfig) -> tuple[str, str] | None:
    own = spec.engine.store.s3
    if own is not None and own.ca_bundle is not None:
        return own.ca_bundle.name, own.ca_bundle.key
    if config.s3.ca_bundle_configmap:
        return config.s3.ca_bundle_configmap, "ca.crt"
    return None


def _pick(own: T | None, default: T) -> T:
    return default if own is None else own
