"""Which engine store a model's artifacts live on: its claim, or a bucket.

PURE. Also how build pods reach an s3:// model source (`source_access`), which defaults to
the store's server. A model's `engine.store` is merged over the operator's defaults (the chart's
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


@dataclass(frozen=True)
class SourceAccess:
    """How build pods reach an s3:// model source: `model.s3` over the engine store's
    connection when the store is a bucket, else over the operator's engineStore.s3."""

    endpoint: str | None = None
    region: str = "us-east-1"
    path_style: bool = False
    credentials_secret: str | None = None
    ca_bundle: tuple[str, str] | None = None  # (ConfigMap, key)


def source_access(
    spec: QuantizedModelSpec, config: OperatorConfig, store: EngineStore
) -> SourceAccess | None:
    """None unless model.source or model.reference.source is s3://; `store` is the model's,
    as resolved."""
    model = spec.model
    sources = [model.source, *([model.reference.source] if model.reference else [])]
    if not any(s.startswith("s3://") for s in sources):
        return None
    if isinstance(store, BucketStore):
        base = SourceAccess(
            store.location.endpoint,
            store.location.region,
            store.location.path_style,
            store.credentials_secret,
            store.ca_bundle,
        )
    else:
        default = config.s3
        ca = (default.ca_bundle_configmap, "ca.crt") if default.ca_bundle_configmap else None
        base = SourceAccess(
            default.endpoint, default.region, default.path_style, default.credentials_secret, ca
        )
    own = model.s3
    if own is None:
        return base
    return SourceAccess(
        endpoint=own.endpoint or base.endpoint,
        region=own.region or base.region,
        path_style=_pick(own.path_style, base.path_style),
        credentials_secret=own.credentials_secret_name or base.credentials_secret,
        ca_bundle=(own.ca_bundle.name, own.ca_bundle.key) if own.ca_bundle else base.ca_bundle,
    )


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


# Where pods find the CA bundles (ConfigMap keys mounted read-only): the store's, a source's.
CA_BUNDLE_DIR = "/etc/qmo/store-ca"
CA_BUNDLE_FILE = f"{CA_BUNDLE_DIR}/ca.crt"
SOURCE_CA_BUNDLE_DIR = "/etc/qmo/source-ca"
SOURCE_CA_BUNDLE_FILE = f"{SOURCE_CA_BUNDLE_DIR}/ca.crt"


def _ca_bundle(spec: QuantizedModelSpec, config: OperatorConfig) -> tuple[str, str] | None:
    own = spec.engine.store.s3
    if own is not None and own.ca_bundle is not None:
        return own.ca_bundle.name, own.ca_bundle.key
    if config.s3.ca_bundle_configmap:
        return config.s3.ca_bundle_configmap, "ca.crt"
    return None


def _pick(own: T | None, default: T) -> T:
    return default if own is None else own
