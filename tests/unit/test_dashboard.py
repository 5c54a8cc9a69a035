"""The Grafana dashboard (charts/qmo/dashboards/qmo.json): sound panel structure, every query
valid PromQL to promtool once Grafana's variables are filled in, every series it reads
exported by qmo, and every per-model metric on some panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from qmo import metrics
from tests.support.chart import CHART
from tests.support.promtool import (
    check_rules,
    exported_series,
    metric_names,
    promtool_path,
    series_of,
)

DASHBOARD_FILE = CHART / "dashboards" / "qmo.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
# What Grafana puts in place of its variables, for promtool's parser.
INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
REGEX_VARIABLE = re.compile(r'=~\s*"\$\{?(job|namespace|model)\}?"')
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    """The panels that query, rows left out."""
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> dict[str, str]:
    """Each target's expression with Grafana's variables filled in, by panel id and refId."""
    found = {}
    for panel in panels():
        for target in panel["targets"]:
            found[f"panel_{panel['id']}_{target['refId']}"] = to_promql(target["expr"])
    return found


def variable_selectors() -> dict[str, str]:
    """The series selector of each label_values() template variable, by variable name."""
    found = {}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"])
            assert match, f"not a label_values() query: {variable['query']}"
            found[f"variable_{variable['name']}"] = to_promql(match["selector"])
    return found


def to_promql(expr: str) -> str:
    for variable, value in INTERVALS.items():
        expr = expr.replace(variable, value)
    expr = REGEX_VARIABLE.sub('=~".*"', expr)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def test_the_dashboard_is_what_the_chart_and_the_docs_name() -> None:
    loaded = dashboard()
    assert loaded["uid"] == "qmo-operator"
    assert 39 <= loaded["schemaVersion"] < 42
    variables = {v["name"]: v for v in loaded["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    # Two qmo releases in one Prometheus stay apart: every query selects the chosen job.
    assert variables["job"]["query"] == "label_values(qmo_build_info, job)"
    assert variables["namespace"]["query"] == ('label_values(qmo_variants{job=~"$job"}, namespace)')
    assert variables["model"]["query"] == (
        'label_values(qmo_variants{job=~"$job", namespace=~"$namespace"}, model)'
    )
    for name in ("job", "namespace", "model"):
        assert variables[name]["multi"], name
        assert variables[name]["includeAll"], name
        assert variables[name]["datasource"] == DATASOURCE, name


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("panel", panels(), ids=lambda p: str(p["title"]))
def test_every_panel_queries_the_chosen_datasource_and_says_what_it_shows(
    panel: dict[str, Any],
) -> None:
    assert panel["title"].strip()
    assert len(panel["description"].split()) >= 5
    assert panel["datasource"] == DATASOURCE
    assert panel["targets"]
    for target in panel["targets"]:
        assert target.get("datasource", DATASOURCE) == DATASOURCE
        assert target["expr"].strip()
    ref_ids = [target["refId"] for target in panel["targets"]]
    assert len(ref_ids) == len(set(ref_ids))


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] > 0, panel["title"]
        assert grid["h"] > 0, panel["title"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_rate_windows_follow_the_scrape_interval() -> None:
    """A fixed window such as [5m] breaks when Prometheus scrapes less often than assumed."""
    for panel in panels():
        for target in panel["targets"]:
            for window in re.findall(r"\[([^\]]*)\]", target["expr"]):
                assert window in {"$__rate_interval", "$__range"}, (panel["title"], window)


@pytest.mark.skipif(promtool_path() is None, reason="promtool not built: run `make binaries`")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    found = queries() | variable_selectors()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": name, "expr": expr} for name, expr in found.items()
    ]}]}  # fmt: skip
    rule_file = tmp_path / "dashboard.rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules))
    result = check_rules(rule_file)
    assert f"SUCCESS: {len(found)} rules found" in result.stdout


def test_every_series_the_dashboard_reads_is_one_qmo_exports() -> None:
    exprs = [*queries().values(), *variable_selectors().values()]
    read = {name for expr in exprs for name in metric_names(expr)}
    exported = exported_series()
    assert len(read) >= 20
    assert read <= exported, f"not exported by qmo: {sorted(read - exported)}"


def test_every_metric_that_names_a_model_has_a_panel() -> None:
    per_model = {
        value._name: _series(value)
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase) and {"namespace", "model"} & set(value._labelnames)
    }
    read = {name for expr in queries().values() for name in metric_names(expr)}
    missing = [family for family, series in per_model.items() if not series & read]
    assert len(per_model) >= 6
    assert not missing, f"no panel reads {missing}"


def _series(metric: MetricWrapperBase) -> set[str]:
    """prometheus_client's own record of a metric's name and type (a counter's name without
    _total), as the series names Prometheus stores."""
    assert metric._type is not None
    return series_of(metric._name, metric._type)


def test_every_query_of_a_qmo_series_selects_the_chosen_job() -> None:
    for name, expr in {**panel_queries_raw(), **variable_queries_raw()}.items():
        for series in re.findall(r"\b(?:qmo|workqueue)_\w+(?:\{[^}]*\})?", expr):
            assert 'job=~"$job"' in series, (name, series)


def panel_queries_raw() -> dict[str, str]:
    return {
        f"panel_{p['id']}_{t['refId']}": t["expr"]
        for p in dashboard()["panels"]
        for t in p.get("targets", [])
        if "expr" in t
    }


def variable_queries_raw() -> dict[str, str]:
    return {
        v["name"]: v["query"]
        for v in dashboard()["templating"]["list"]
        if v["type"] == "query" and v["name"] != "job"
    }
