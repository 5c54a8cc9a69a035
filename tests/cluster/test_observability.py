"""The operator's metrics follow a real build failure and a real rollback on the local control
plane: the series move, `promtool check metrics` accepts what /metrics serves, and the alert
expressions shipped in the chart go from quiet to firing when evaluated by promtool on what
Prometheus would have scraped."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from e2e.operator_process import OperatorProcess
from tests.support.gate_scenario import report, v2_after_a_good_v1, wait_event
from tests.support.kube import ClusterHandle, variants
from tests.support.promtool import promtool_path
from tests.support.scenario import a_model, create, patch_spec, wait_ready
from tests.support.scrapes import expressions_over, samples
from tests.support.waits import wait_until

pytestmark = pytest.mark.usefixtures("engine_store")


def lint(text: str) -> subprocess.CompletedProcess[str]:
    path = promtool_path()
    assert path is not None, "promtool is built by `make binaries`"
    return subprocess.run(
        [path, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def value(text: str, metric: str, **labels: str) -> float | None:
    """The one sample of `metric` whose labels include `labels`, or None."""
    wanted = set(labels.items())
    found = [v for series, v in samples(text).items() if series.split("{")[0] == metric
             and wanted <= _labels(series)]  # fmt: skip
    assert len(found) <= 1, f"{metric} {labels}: {len(found)} series"
    return found[0] if found else None


def _labels(series: str) -> set[tuple[str, str]]:
    inner = series.split("{", 1)[1].rstrip("}")
    pairs = [p.split("=", 1) for p in inner.split('",') if p]
    return {(k, v.strip('"')) for k, v in pairs}


def serving_then_rolled_back(cluster: ClusterHandle, namespace: str) -> dict[str, Any]:
    v1_key, v2_key = v2_after_a_good_v1(cluster, namespace, "rolled")
    report(cluster, namespace, "rolled", "h100-fp8", v2_key, arithmetic=0.7832)
    rolled: dict[str, Any] = cluster.wait_for_model(
        namespace,
        "rolled",
        lambda m: (
            variants(m)["h100-fp8"]["phase"] == "RolledBack"
            and variants(m)["h100-fp8"]["revision"] == v1_key
        ),
        describe="h100-fp8 to roll back to v1",
    )
    wait_event(cluster, namespace, "rolled", "RolledBack")
    return rolled


def test_series_and_alerts_follow_a_failed_build_and_a_rollback(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    mine = {"namespace": namespace}
    before = operator.metrics_text()
    failed_before = value(before, "qmo_builds_finished_total", outcome="failed",
                          precision="fp8", gpu_class="h100") or 0.0  # fmt: skip

    create(cluster, namespace, a_model("fragile", gpu={"classes": ["h100"]}))
    wait_ready(cluster, namespace, "fragile")
    patch_spec(cluster, namespace, "fragile", {"model": {"revision": "e2e-fail-v2"}})
    cluster.wait_for_model(
        namespace,
        "fragile",
        lambda m: variants(m)["h100-fp8"]["phase"] == "BuildFailed",
        describe="the build to fail",
    )
    rolled = serving_then_rolled_back(cluster, namespace)
    revision = variants(rolled)["h100-fp8"]["revision"][:12]
    rolled_back = {**mine, "model": "rolled", "variant": "h100-fp8", "phase": "RolledBack",
                   "revision": revision, "precision": "fp8"}  # fmt: skip
    # Series are set right after the status is written, in the same reconcile: wait for them.
    wait_until(
        lambda: value(operator.metrics_text(), "qmo_variant_info", **rolled_back) == 1,
        timeout=120,  # generous: a loaded CI machine
        what="the rollback's series",
    )
    after = operator.metrics_text()

    checked = lint(after)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The failed build, by precision and class, with its duration.
    assert value(after, "qmo_builds_finished_total", outcome="failed", precision="fp8",
                 gpu_class="h100") == failed_before + 1  # fmt: skip
    assert (value(after, "qmo_build_duration_seconds_count", outcome="failed",
                  precision="fp8", gpu_class="h100") or 0) >= 1  # fmt: skip
    assert value(after, "qmo_variant_info", **mine, model="fragile", variant="h100-fp8",
                 phase="BuildFailed") == 1  # fmt: skip
    since = value(after, "qmo_variant_phase_since_timestamp_seconds", **mine, model="fragile",
                  variant="h100-fp8")  # fmt: skip
    assert (since or 0) > 0

    # The rollback: counted once, the variant's phase and revision, the regression measured.
    assert value(after, "qmo_rollbacks_total", **mine, model="rolled", variant="h100-fp8",
                 action="rollback") == 1  # fmt: skip
    regression = value(after, "qmo_quality_regression_ratio", **mine, model="rolled",
                       variant="h100-fp8", benchmark="arithmetic")  # fmt: skip
    assert regression == pytest.approx(0.021)
    assert value(after, "qmo_quality_max_regression_ratio", **mine, model="rolled") == 0.015
    assert (value(after, "qmo_quality_verdicts_total", **mine, model="rolled",
                  variant="h100-fp8", verdict="Regressed") or 0) >= 1  # fmt: skip
    assert (value(after, "workqueue_adds_total", name="quantizedmodel") or 0) > (
        value(before, "workqueue_adds_total", name="quantizedmodel") or 0
    )
    assert (value(after, "qmo_time_to_ready_seconds_count") or 0) >= 2

    # The shipped alert expressions, on what Prometheus would have stored: quiet before this
    # test's failures, firing after. Other tests' models are left out of the input.
    def ours(labels: dict[str, str]) -> bool:
        return labels.get("namespace", namespace) == namespace

    evaluated = expressions_over(
        samples(before, ours),
        samples(after, ours),
        {
            "QmoBuildsFailing": (False, True),
            "QmoVariantBuildFailed": (False, True),
            "QmoVariantRegressed": (False, True),
            "QmoRollbacks": (False, True),
            "QmoNotLeading": (False, False),
        },
        tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr


def test_a_deleted_models_series_are_gone_from_metrics(
    cluster: ClusterHandle, namespace: str, operator: OperatorProcess
) -> None:
    create(cluster, namespace, a_model("brief", gpu={"classes": ["h100"]}))
    wait_ready(cluster, namespace, "brief")

    def series_of_brief() -> list[str]:
        return [
            series
            for series in samples(operator.metrics_text())
            if {("namespace", namespace), ("model", "brief")} <= _labels(series)
        ]

    assert len(series_of_brief()) >= 10  # per-phase counts, info, phase-since, threshold

    cluster.custom().delete_namespaced_custom_object(
        "qmo.dev", "v1alpha1", namespace, "quantizedmodels", "brief"
    )
    wait_until(lambda: not series_of_brief(), timeout=120, what="brief's series to go")
