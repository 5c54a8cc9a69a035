"""Where an S3-compatible engine store is, as pods receive it: environment variables.

The operator writes these variables into the pods it creates (qmo.manifests.store); the
pods' programs read them back with `S3Location.from_env`. An s3:// model source is reached
through variables of its own (`QMO_SOURCE_S3_*`, read by `source_location`), since it may be
on another server, with other keys, than the store. Credentials are never among them:
they come from the standard AWS variables (filled from a Secret by reference) or from the
pod's workload identity (a projected web-identity token), which the client reads itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

BUCKET_ENV = "QMO_STORE_S3_BUCKET"
PREFIX_ENV = "QMO_STORE_S3_PREFIX"
ENDPOINT_ENV = "QMO_STORE_S3_ENDPOINT"
REGION_ENV = "QMO_STORE_S3_REGION"
PATH_STYLE_ENV = "QMO_STORE_S3_PATH_STYLE"
CA_BUNDLE_ENV = "QMO_STORE_S3_CA_BUNDLE"
# The standard names, so any S3 tool in the pod finds the same credentials.
ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN_ENV = "AWS_SESSION_TOKEN"
# An s3:// model source: the server, and its keys when they are not the store's.
SOURCE_ENDPOINT_ENV = "QMO_SOURCE_S3_ENDPOINT"
SOURCE_REGION_ENV = "QMO_SOURCE_S3_REGION"
SOURCE_PATH_STYLE_ENV = "QMO_SOURCE_S3_PATH_STYLE"
SOURCE_CA_BUNDLE_ENV = "QMO_SOURCE_S3_CA_BUNDLE"
SOURCE_ACCESS_KEY_ENV = "QMO_SOURCE_S3_ACCESS_KEY_ID"
SOURCE_SECRET_KEY_ENV = "QMO_SOURCE_S3_SECRET_ACCESS_KEY"
ARTIFACTS = "artifacts"
MANIFEST = "qmo-artifact.json"


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""
    endpoint: str | None = None  # unset: AWS's own endpoint for the region
    region: str = "us-east-1"
    path_style: bool = False
    ca_bundle: str | None = None  # a PEM file inside the pod

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Location | None:
        """The location the pod was given, or None for a pod on the PVC store."""
        bucket = env.get(BUCKET_ENV)
        if not bucket:
            return None
        return cls(
            bucket=bucket,
            prefix=env.get(PREFIX_ENV, "").strip("/"),
            endpoint=env.get(ENDPOINT_ENV) or None,
            region=env.get(REGION_ENV) or "us-east-1",
            path_style=env.get(PATH_STYLE_ENV, "").lower() == "true",
            ca_bundle=env.get(CA_BUNDLE_ENV) or None,
        )

    def to_env(self) -> dict[str, str]:
        """PURE: the variables `from_env` reads back."""
        env = {
            BUCKET_ENV: self.bucket,
            PREFIX_ENV: self.prefix,
            REGION_ENV: self.region,
            PATH_STYLE_ENV: "true" if self.path_style else "false",
        }
        if self.endpoint:
            env[ENDPOINT_ENV] = self.endpoint
        if self.ca_bundle:
            env[CA_BUNDLE_ENV] = self.ca_bundle
        return env

    def key(self, *parts: str) -> str:
        """An object key under the prefix: key('artifacts', k, 'qmo-artifact.json')."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def artifact_key(self, cache_key: str, relative: str = "") -> str:
        return self.key(ARTIFACTS, cache_key, relative)

    def uri(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"


def source_location(bucket: str, env: Mapping[str, str]) -> S3Location:
    """The bucket of an s3:// model source, on the server the pod was told of."""
    return S3Location(
        bucket=bucket,
        endpoint=env.get(SOURCE_ENDPOINT_ENV) or None,
        region=env.get(SOURCE_REGION_ENV) or "us-east-1",
        path_style=env.get(SOURCE_PATH_STYLE_ENV, "").lower() == "true",
        ca_bundle=env.get(SOURCE_CA_BUNDLE_ENV) or None,
    )


def source_credentials(env: Mapping[str, str]) -> dict[str, str]:
    """The keys for an s3:// source: its own when the pod has them, else the standard AWS
    variables (the store's keys), else none (the pod's workload identity)."""
    if env.get(SOURCE_ACCESS_KEY_ENV) and env.get(SOURCE_SECRET_KEY_ENV):
        return {
            ACCESS_KEY_ENV: env[SOURCE_ACCESS_KEY_ENV],
            SECRET_KEY_ENV: env[SOURCE_SECRET_KEY_ENV],
        }
    names = (ACCESS_KEY_ENV, SECRET_KEY_ENV, SESSION_TOKEN_ENV)
    return {name: env[name] for name in names if env.get(name)}
