"""qmo's alert rules (charts/qmo/alerts/qmo.rules.yaml): promtool accepts them as a plain rule
file and as the chart's PrometheusRule, their promtool unit tests pass, they read only series
qmo exports, and every alert tells on-call what to do and where its runbook is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import helm_path, template
from tests.support.kube import REPO
from tests.support.promtool import (
    RULES_FILE,
    alerts,
    check_rules,
    exported_series,
    load_rules,
    metric_names,
    promtool,
    promtool_path,
)

ALERT_TESTS = REPO / "tests" / "promtool" / "qmo-alerts.test.yaml"
RUNBOOKS = REPO / "docs" / "observability.md"
RUNBOOK_URL = "https://github.com/qmo-dev/qmo/blob/main/docs/observability.md#"
SEVERITIES = {"critical", "warning", "info"}

needs_promtool = pytest.mark.skipif(
    promtool_path() is None, reason="promtool not built: run `make binaries`"
)
needs_helm = pytest.mark.skipif(helm_path() is None, reason="helm not built: run `make binaries`")


@needs_promtool
def test_promtool_accepts_the_rule_file_as_it_is() -> None:
    result = check_rules(RULES_FILE)
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@needs_promtool
@needs_helm
def test_the_prometheus_rule_is_the_rule_file_plus_the_additional_labels(tmp_path: Path) -> None:
    rule = template(
        {
            "prometheusRule.enabled": "true",
            "prometheusRule.labels.release": "prometheus",
            "prometheusRule.additionalRuleLabels.team": "ml-platform",
            "prometheusRule.additionalRuleLabels.severity": "page",  # an alert's own label wins
        }
    ).one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"]["groups"] == _with_labels(load_rules(), {"team": "ml-platform"})
    rendered = tmp_path / "rendered.rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    check_rules(rendered)


def _with_labels(groups: list[dict[str, Any]], extra: dict[str, str]) -> list[dict[str, Any]]:
    for group in groups:
        for rule in group["rules"]:
            rule["labels"] = {**extra, **rule.get("labels", {})}
    return groups


@needs_promtool
def test_each_alert_fires_and_stays_quiet_as_its_promtool_tests_say() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_both_firing_and_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test["alert_rule_test"]
    ]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert firing == set(alerts()), "alerts never shown firing or unknown"
    assert quiet == set(alerts()), "alerts never shown quiet or unknown"


def test_the_alerts_read_only_series_qmo_exports() -> None:
    exported = exported_series() | {"up"}
    read = {name for rule in alerts().values() for name in metric_names(rule["expr"])}
    assert read, "no metric found in the alert expressions"
    assert read <= exported, f"not exported by qmo: {sorted(read - exported)}"


@pytest.mark.parametrize(("name", "rule"), alerts().items(), ids=list(alerts()))
def test_every_alert_tells_on_call_what_to_do(name: str, rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert len(annotations["description"].split()) >= 20, "a description says what to do"
    assert annotations["runbook_url"] == RUNBOOK_URL + name.lower()


def test_every_alert_has_a_runbook_section_in_docs() -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    anchors = {_github_anchor(h) for h in re.findall(r"^#{2,4} (.+?)\s*$", text, re.M)}
    missing = {name for name in alerts() if name.lower() not in anchors}
    assert not missing, f"no section in docs/observability.md for {sorted(missing)}"


def _github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation gone, spaces
    to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
