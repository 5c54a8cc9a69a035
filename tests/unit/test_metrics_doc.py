"""docs/observability.md lists every metric qmo exports, with its type and labels."""

from __future__ import annotations

import re

from prometheus_client.metrics import MetricWrapperBase

from qmo import leader, metrics
from tests.support.kube import REPO

DOC = REPO / "docs" / "observability.md"
ROW = re.compile(r"^\| `(?P<name>[a-z_]+)` \| (?P<type>\w+) \|(?P<labels>[a-z_, ]*)\|", re.M)


def exported() -> dict[str, tuple[str, set[str]]]:
    """Every metric object of qmo.metrics and qmo.leader: exposed name, type, label names."""
    found = {}
    for module in (metrics, leader):
        for value in vars(module).values():
            if not isinstance(value, MetricWrapperBase):
                continue
            kind = value._type  # prometheus_client's own record of the type
            name = value._name + {"counter": "_total", "info": "_info"}.get(kind, "")
            labels = set(value._labelnames)
            if kind == "info":  # an info's labels are its values: read them off the sample
                labels = {key for sample in value.collect()[0].samples for key in sample.labels}
            found[name] = ("gauge" if kind == "info" else kind, labels)
    return found


def documented() -> dict[str, tuple[str, set[str]]]:
    text = DOC.read_text(encoding="utf-8")
    return {
        m["name"]: (m["type"], {label.strip() for label in m["labels"].split(",") if label.strip()})
        for m in ROW.finditer(text)
    }


def test_every_exported_metric_is_documented_with_its_type_and_labels() -> None:
    assert documented() == exported()
