"""The QualityReport of one evaluated revision: its name, its labels, and the object the operator
creates from an eval Job's termination message. Pure.

qmo-eval names and labels the reports it writes by hand or for external pipelines the same way
(`qmo.evaluator.report`), so a report about a revision has one name whoever wrote it.
"""

from __future__ import annotations

import re

from qmo.api.base import API_VERSION
from qmo.api.qualityreport import KIND, QualityReportSpec
from qmo.manifests import labels, names
from qmo.manifests.labels import Owner
from qmo.planner.cachekey import short_key
from qmo.vocabulary import Component
from qmo.wire import Obj

NAME_KEY_LENGTH = 12


def report_name(model: str, variant: str, cache_key: str, attempt: str = "") -> str:
    """`<model>-<variant>-<key[:12]>[-<attempt>]`, cut with a hash past 63 characters. A key
    that is not hex (an external system's revision id) is made name-safe: lower case, no
    trailing '-'. A re-evaluation on more samples (`attempt`) makes a report of its own."""
    key = re.sub(r"[^a-z0-9-]+", "-", cache_key[:NAME_KEY_LENGTH].lower()).strip("-")
    return names.bounded(model, variant, key, attempt)


def report_labels(model: str, variant: str, cache_key: str) -> dict[str, str]:
    """Labels to select reports by; values a label cannot hold are left out."""
    candidates = {
        "app.kubernetes.io/name": "qmo",
        labels.COMPONENT: Component.EVALUATION.value,
        labels.MODEL: model,
        labels.VARIANT: variant,
        labels.CACHE_KEY: short_key(cache_key),
    }
    return {k: v for k, v in candidates.items() if _label_value(v)}


def quality_report(owner: Owner, spec: QualityReportSpec, attempt: str = "") -> Obj:
    """The report the operator creates from an eval Job's scores, owned by the model (it goes
    with the model). `spec` names the Job's own revision, never one the pod chose."""
    model, variant, key = spec.model_ref.name, spec.variant, spec.cache_key
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": report_name(model, variant, key, attempt),
            "namespace": owner.namespace,
            "labels": report_labels(model, variant, key),
            "ownerReferences": [owner.reference()],
        },
        "spec": spec.to_wire(),
    }


def _label_value(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", value) is not None
