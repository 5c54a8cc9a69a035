"""Where a finished QualityReport goes: the eval Job's termination message, the cluster, or
stdout for --dry-run / -o yaml.

Called by cli.py. Eval Jobs use the termination writer: the report's scores go to the
container's termination-log file (`qmo.api.evalcontract`), the operator reads them from the
pod's status and creates the QualityReport itself, so the eval pod needs no credentials and
holds none (its ServiceAccount token is not mounted).

The cluster writer is for running qmo-eval by hand or in an external pipeline, with the
caller's own credentials; it is the only code of qmo-eval that talks to the Kubernetes API. It
creates the report. When the report already exists (a rerun for the same revision) it is left
alone if its spec is the same, and otherwise server-side applied with the field manager
"qmo-eval" where the identity may patch; where it may not, the existing report is kept and the
run says so: the operator has already judged that revision. Status is never written: the
operator owns it.
"""

from __future__ import annotations

import json
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TextIO

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from qmo.api.base import GROUP, VERSION
from qmo.api.evalcontract import EvalResult, MessageError
from qmo.api.qualityreport import PLURAL, QualityReport
from qmo.evaluator.report import to_yaml

FIELD_MANAGER = "qmo-eval"
APPLY_PATCH = "application/apply-patch+yaml"
REQUEST_TIMEOUT_SECONDS = 30
log = logging.getLogger("qmo.eval")


class Written(StrEnum):
    CREATED = "created"
    UPDATED = "updated"  # existed with other scores; applied over them
    UNCHANGED = "unchanged"  # existed with the same spec
    KEPT = "kept"  # existed with other scores; this identity may not update it
    PRINTED = "printed"
    HANDED_OVER = "handed to the operator in the termination message"


class WriteError(RuntimeError):
    """The report could not be written."""


class ReportTooLong(WriteError):
    """The report does not fit in a termination message: the same on every rerun."""


class ReportWriter(Protocol):
    def write(self, report: QualityReport) -> Written: ...


class PrintWriter:
    """--dry-run and -o yaml: the report as YAML on a stream, nothing sent anywhere."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def write(self, report: QualityReport) -> Written:
        (self.stream or sys.stdout).write(to_yaml(report))
        return Written.PRINTED


class TerminationWriter:
    """Eval Jobs: the report's scores, as compact JSON, in the container's termination-log
    file. Who is judged is not written: the operator takes it from its own Job."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, report: QualityReport) -> Written:
        spec = report.spec
        try:
            message = EvalResult.of(spec.results, spec.speed).to_message()
        except MessageError as err:
            raise ReportTooLong(str(err)) from err
        try:
            self.path.write_text(message, encoding="utf-8")
        except OSError as err:
            raise WriteError(f"cannot write the termination message to {self.path}: {err}") from err
        return Written.HANDED_OVER


def connect() -> client.CustomObjectsApi:
    """The in-cluster ServiceAccount, else KUBECONFIG / ~/.kube/config."""
    # The kubernetes client's config loaders carry no annotations.
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as err:
            raise WriteError(f"no Kubernetes credentials: not in a pod and {err}") from err
    return client.CustomObjectsApi(client.ApiClient())


class KubeWriter:
    """Creates the report, else applies it over an existing one with other scores."""

    def __init__(self, api: client.CustomObjectsApi | None = None) -> None:
        self._api = api

    @property
    def api(self) -> client.CustomObjectsApi:
        if self._api is None:
            self._api = connect()
        return self._api

    def write(self, report: QualityReport) -> Written:
        body = report.to_wire()
        namespace = str(report.metadata.get("namespace") or "")
        name = str(report.metadata["name"])
        if not namespace:
            raise WriteError(f"QualityReport {name} has no namespace")
        where = f"QualityReport {namespace}/{name}"
        try:
            self.api.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                body,
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
            return Written.CREATED
        except ApiException as err:
            if err.status != 409:
                raise WriteError(f"cannot create {where}: {_reason(err)}") from err
        existing = self._get(namespace, name, where)
        if existing.get("spec") == body["spec"]:
            return Written.UNCHANGED
        try:
            self.api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY_PATCH,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
            return Written.UPDATED
        except ApiException as err:
            if err.status == 403:
                log.warning(
                    "%s exists with other scores and this identity may not update it; "
                    "kept the existing report, which the operator has judged.",
                    where,
                )
                return Written.KEPT
            raise WriteError(f"cannot apply {where}: {_reason(err)}") from err

    def _get(self, namespace: str, name: str, where: str) -> dict[str, Any]:
        try:
            existing = self.api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except ApiException as err:
            raise WriteError(f"{where} exists but cannot be read: {_reason(err)}") from err
        return dict(existing) if isinstance(existing, dict) else {}


def _reason(err: ApiException) -> str:
    """The API server's message (a Status object) rather than the whole HTTP response."""
    try:
        status = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    return f"HTTP {err.status}: {message or err.reason}"
