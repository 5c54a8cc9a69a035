"""Scrapes of the operator's /metrics turned into what Prometheus would have stored, so the
shipped alert expressions can be evaluated on them by promtool's own PromQL engine.

`expressions_over(rules, before, after)` writes a `promtool test rules` file whose input
series hold the `before` scrape for a while and then the `after` scrape, and asks, for each
alert, whether its expression returns anything just before and just after the change.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.promtool import RULES_FILE, alerts, load_rules, promtool

Samples = dict[str, float]  # 'name{label="value",...}' -> value
# One-minute samples: an hour of the first scrape (so that what it holds is older than any
# alert's window by the time it is judged), then half an hour of the second.
BEFORE_STEPS, AFTER_STEPS = 60, 30


def samples(text: str, keep: Callable[[dict[str, str]], bool] = lambda _: True) -> Samples:
    """The samples of one scrape whose labels `keep` accepts."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not keep(sample.labels):
                continue
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _values(before: float | None, after: float | None) -> str:
    """promtool's series notation: `_` where the series does not exist yet (or any more)."""

    def point(value: float | None) -> str:
        return "_" if value is None else repr(float(value))

    return " ".join([point(before)] * BEFORE_STEPS + [point(after)] * AFTER_STEPS)


def expressions_over(
    before: Samples,
    after: Samples,
    expected: dict[str, tuple[bool, bool]],
    workdir: Path,
    rules_file: Path = RULES_FILE,
) -> subprocess.CompletedProcess[str]:
    """Run promtool: for each alert in `expected`, (returns something before the change,
    returns something after it). The expression itself is evaluated, without its `for:`."""
    exprs = {name: rule["expr"] for name, rule in alerts(load_rules(rules_file)).items()}
    tests: list[dict[str, Any]] = []
    series = [
        {"series": name, "values": _values(before.get(name), after.get(name))}
        for name in sorted(set(before) | set(after))
    ]
    checks = []
    for alert, (was, now) in expected.items():
        fires = f"(count({exprs[alert]}) > bool 0) or vector(0)"
        for minute, value in ((BEFORE_STEPS - 1, was), (BEFORE_STEPS + 1, now)):
            checks.append(
                {
                    "expr": fires,
                    "eval_time": f"{minute}m",
                    "exp_samples": [{"labels": "{}", "value": 1 if value else 0}],
                }
            )
    tests.append({"interval": "1m", "input_series": series, "promql_expr_test": checks})
    test_file = workdir / "scraped.test.yaml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": tests}),
        encoding="utf-8",
    )
    return promtool("test", "rules", str(test_file), check=False)
