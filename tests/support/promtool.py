"""PromQL in tests: the pinned promtool (built by `make binaries`, found as helm is in
tests/support/chart.py), the series qmo exports, and the metric names an expression reads."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from e2e.cluster.binaries import ensure_binaries
from tests.support.kube import REPO

RULES_FILE = REPO / "charts" / "qmo" / "alerts" / "qmo.rules.yaml"

# The series names Prometheus stores for each family type prometheus_client reports.
_SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}
# Words of PromQL that look like metric names but are not.
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}  # fmt: skip
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTORS_AND_RANGES = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not followed by "(" (a function) and not inside a number or a duration.
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\b(?!\s*\()")


def promtool_path() -> str | None:
    """The pinned promtool, or None where the binaries are not built (pure tier without setup)."""
    try:
        return ensure_binaries(build=False).path("promtool")
    except FileNotFoundError:
        return None


def promtool(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    path = promtool_path()
    assert path is not None, "promtool is not built: run `make binaries`"
    result = subprocess.run([path, *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"promtool {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules`, with duplicate rules an error too."""
    return promtool("check", "rules", "--lint=all", "--lint-fatal", str(path))


def load_rules(path: Path = RULES_FILE) -> list[dict[str, Any]]:
    """The rule groups of a Prometheus rule file."""
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return groups


def alerts(groups: list[dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Every alerting rule, by alert name."""
    rules = [rule for group in groups or load_rules() for rule in group["rules"]]
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


def exported_series() -> set[str]:
    """Every series name qmo's /metrics can serve (each family's names as Prometheus stores
    them), including the process and Python collectors' series."""
    import qmo.leader
    import qmo.metrics  # noqa: F401  (importing registers the metrics)

    return {name for family in REGISTRY.collect() for name in series_of(family.name, family.type)}


def series_of(family: str, kind: str) -> set[str]:
    """The series names Prometheus stores for a metric family of this type."""
    return {family + suffix for suffix in _SERIES_SUFFIXES[kind]}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label names, functions and keywords
    left out)."""
    bare = _STRINGS.sub('""', expr)
    bare = _SELECTORS_AND_RANGES.sub(" ", bare)
    bare = _LABEL_LISTS.sub(" ", bare)
    return {name for name in _IDENTIFIER.findall(bare) if name not in _KEYWORDS}
