"""What the controller turns into metrics: finished builds, error reasons, time to Ready, the
per-variant series and their removal with the model."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from qmo import metrics
from qmo.api.quantizedmodel import QuantizedModelStatus
from qmo.controller.queue import WorkQueue
from qmo.controller.reconcile import Retry
from qmo.controller.telemetry import (
    ReadyTimer,
    error_reason,
    finished_build,
    variant_info,
)
from qmo.kube import ApiException

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def job(*conditions: tuple[str, str], component: str = "build", start: str | None = None) -> Any:
    status: dict[str, Any] = {
        "conditions": [
            {"type": kind, "status": "True", "lastTransitionTime": at} for kind, at in conditions
        ]
    }
    if start:
        status["startTime"] = start
    return {
        "metadata": {
            "name": "qmo-build-h100-fp8-abc",
            "namespace": "models",
            "labels": {
                "app.kubernetes.io/component": component,
                "qmo.dev/precision": "fp8",
                "qmo.dev/gpu-class": "h100",
            },
        },
        "status": status,
    }


def sample(series: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(series, labels)


# --- builds --------------------------------------------------------------------------------


def test_a_build_that_succeeds_is_seen_once_with_its_duration() -> None:
    running = job(start="2026-11-29T12:00:00Z")
    done = job(("Complete", "2026-11-29T12:07:30Z"), start="2026-11-29T12:00:00Z")

    seen = finished_build(running, done)

    assert seen is not None
    assert (seen.precision, seen.gpu_class, seen.outcome, seen.seconds) == (
        "fp8",
        "h100",
        "succeeded",
        450.0,
    )
    assert finished_build(done, done) is None  # a later update of a finished Job: not again


def test_a_failed_build_counts_as_failed() -> None:
    seen = finished_build(
        job(start="2026-11-29T12:00:00Z"),
        job(("Failed", "2026-11-29T12:01:00Z"), start="2026-11-29T12:00:00Z"),
    )
    assert seen is not None
    assert (seen.outcome, seen.seconds) == ("failed", 60.0)


def test_a_job_first_listed_finished_or_not_a_build_is_not_counted() -> None:
    done = job(("Complete", "2026-11-29T12:07:30Z"))
    assert finished_build(None, done) is None  # listed after a restart
    assert finished_build(job(), job(("Complete", "x"), component="evaluation")) is None
    assert finished_build(job(), None) is None  # deleted


def test_a_job_without_a_start_time_is_counted_without_a_duration() -> None:
    seen = finished_build(job(), job(("Complete", "2026-11-29T12:07:30Z")))
    assert seen is not None
    assert seen.seconds is None


# --- reconcile errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (Retry("quota", "ChildRejected"), "ChildRejected"),
        (ApiException(status=409), "Conflict"),
        (ApiException(status=403), "Forbidden"),
        (ApiException(status=503), "ApiServerError"),
        (ApiException(status=418), "ApiError"),
        (TimeoutError(), "ApiUnavailable"),
        (KeyError("x"), "Unexpected"),
    ],
)
def test_every_error_gets_a_bounded_reason(error: BaseException, reason: str) -> None:
    assert error_reason(error) == reason


# --- time to Ready -------------------------------------------------------------------------


def meta(generation: int, uid: str = "u1") -> dict[str, Any]:
    return {
        "namespace": "models",
        "name": "llama",
        "uid": uid,
        "generation": generation,
        "creationTimestamp": "2026-11-29T12:00:00Z",
    }


def test_the_first_generation_is_timed_from_creation_once() -> None:
    timer = ReadyTimer()
    assert timer.observe(meta(1), False, False, T0 + timedelta(seconds=5)) is None
    assert timer.observe(meta(1), False, True, T0 + timedelta(seconds=42)) == 42.0
    assert timer.observe(meta(1), True, True, T0 + timedelta(seconds=60)) is None


def test_a_spec_change_is_timed_from_when_it_was_seen() -> None:
    timer = ReadyTimer()
    timer.observe(meta(1), True, True, T0)  # Ready before this process looked: not timed
    assert timer.observe(meta(1), True, True, T0 + timedelta(minutes=1)) is None
    timer.observe(meta(2), False, False, T0 + timedelta(minutes=10))
    assert timer.observe(meta(2), False, True, T0 + timedelta(minutes=12)) == 120.0


def test_a_generation_already_pending_at_startup_is_not_timed() -> None:
    timer = ReadyTimer()
    timer.observe(meta(3), False, False, T0)  # when generation 3 began is unknown
    assert timer.observe(meta(3), False, True, T0 + timedelta(minutes=5)) is None


def test_a_model_recreated_under_the_same_name_starts_again() -> None:
    timer = ReadyTimer()
    timer.observe(meta(1), False, True, T0 + timedelta(seconds=10))
    later = {**meta(1, uid="u2"), "creationTimestamp": "2026-11-29T13:00:00Z"}
    assert timer.observe(later, False, True, T0 + timedelta(hours=1, seconds=7)) == 7.0


# --- per-variant series --------------------------------------------------------------------


def status_of(*variants: dict[str, Any]) -> QuantizedModelStatus:
    return QuantizedModelStatus.model_validate({"variants": list(variants)})


def a_variant(name: str, phase: str, revision: str = "ab" * 32) -> dict[str, Any]:
    precision = name.split("-", 1)[1]
    return {"name": name, "gpuClass": "h100", "precision": precision, "kvCacheDtype": "fp8",
            "phase": phase, "revision": revision}  # fmt: skip


def info(model: str, variant: str, phase: str, precision: str, revision: str) -> float | None:
    return sample(
        "qmo_variant_info", namespace="telemetry", model=model, variant=variant,
        precision=precision, kv_cache_dtype="fp8", gpu_class="h100", revision=revision,
        phase=phase,
    )  # fmt: skip


def test_the_info_series_follows_the_phase_and_keeps_one_series_per_variant() -> None:
    serving = status_of(a_variant("h100-fp8", "Serving"))
    metrics.observe_variant_info("telemetry", "m1", variant_info(serving), now=100.0)
    assert info("m1", "h100-fp8", "Serving", "fp8", "ab" * 6) == 1
    since = {"namespace": "telemetry", "model": "m1", "variant": "h100-fp8"}
    assert sample("qmo_variant_phase_since_timestamp_seconds", **since) == 100.0

    metrics.observe_variant_info("telemetry", "m1", variant_info(serving), now=200.0)
    assert sample("qmo_variant_phase_since_timestamp_seconds", **since) == 100.0  # same phase

    rolled = status_of(a_variant("h100-fp8", "RolledBack", revision="cd" * 32))
    metrics.observe_variant_info("telemetry", "m1", variant_info(rolled), now=300.0)
    assert info("m1", "h100-fp8", "Serving", "fp8", "ab" * 6) is None
    assert info("m1", "h100-fp8", "RolledBack", "fp8", "cd" * 6) == 1
    assert sample("qmo_variant_phase_since_timestamp_seconds", **since) == 300.0


def test_a_variant_that_is_gone_loses_its_series() -> None:
    two = status_of(a_variant("h100-int4-awq", "Serving"), a_variant("h100-int8", "Building"))
    metrics.observe_variant_info("telemetry", "m2", variant_info(two), now=1.0)
    one = status_of(a_variant("h100-int8", "Serving"))
    metrics.observe_variant_info("telemetry", "m2", variant_info(one), now=2.0)
    assert info("m2", "h100-int4-awq", "Serving", "int4-awq", "ab" * 6) is None
    assert info("m2", "h100-int8", "Serving", "int8", "ab" * 6) == 1


def test_every_series_of_a_deleted_model_goes_with_it() -> None:
    metrics.observe_variants("telemetry", "m3", ["Serving"])
    metrics.observe_variant_info(
        "telemetry", "m3", variant_info(status_of(a_variant("h100-fp8", "Serving"))), now=1.0
    )
    metrics.observe_quality("telemetry", "m3", 1.5, {"h100-fp8": {"gsm8k": 0.5}})
    metrics.count_verdict("telemetry", "m3", "h100-fp8", "Pass")
    metrics.count_rollback("telemetry", "m3", "h100-fp8", "rollback")
    ratio = {"namespace": "telemetry", "model": "m3", "variant": "h100-fp8", "benchmark": "gsm8k"}
    assert sample("qmo_quality_regression_ratio", **ratio) == pytest.approx(0.005)
    assert sample("qmo_quality_max_regression_ratio", namespace="telemetry", model="m3") == 0.015

    metrics.forget_model("telemetry", "m3")

    assert metrics.model_series("telemetry", "m3") == 0
    exposed = [
        s
        for family in REGISTRY.collect()
        for s in family.samples
        if s.labels.get("namespace") == "telemetry" and s.labels.get("model") == "m3"
    ]
    assert exposed == []


def test_a_benchmark_no_longer_reported_loses_its_regression_series() -> None:
    metrics.observe_quality("telemetry", "m4", 1.5, {"h100-fp8": {"gsm8k": 0.5, "mmlu": 2.0}})
    metrics.observe_quality("telemetry", "m4", 1.5, {"h100-fp8": {"gsm8k": 0.4}})
    labels = {"namespace": "telemetry", "model": "m4", "variant": "h100-fp8"}
    assert sample("qmo_quality_regression_ratio", **labels, benchmark="mmlu") is None
    assert sample("qmo_quality_regression_ratio", **labels, benchmark="gsm8k") == 0.004


# --- the work queue ------------------------------------------------------------------------


def test_the_work_queue_reports_controller_runtime_series() -> None:
    now = [0.0]
    name = {"name": "telemetry-test"}

    async def scenario() -> None:
        queue = WorkQueue(name="telemetry-test", clock=lambda: now[0])
        queue.add(("models", "a"))
        queue.add(("models", "a"))  # deduplicated: one add
        queue.add(("models", "b"))
        assert sample("workqueue_depth", **name) == 2
        now[0] = 2.0
        key = await asyncio.wait_for(queue.get(), timeout=5)
        now[0] = 5.0
        assert sample("workqueue_longest_running_processor_seconds", **name) == 3.0
        queue.done(key)
        queue.retry_after(key, 60)
        queue.close()

    asyncio.run(scenario())
    assert sample("workqueue_adds_total", **name) == 2
    assert sample("workqueue_retries_total", **name) == 1
    assert sample("workqueue_queue_duration_seconds_sum", **name) == 2.0
    assert sample("workqueue_work_duration_seconds_sum", **name) == 3.0
    assert sample("workqueue_depth", **name) == 1


def test_the_fleet_metrics_follow_the_gpu_classes_and_drop_a_class_that_left() -> None:
    def sample(name: str, gpu_class: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"gpu_class": gpu_class})

    metrics.observe_gpu_classes({"h100": (2, 16), "l40s": (1, 4)})
    metrics.observe_gpu_classes({"h100": (3, 24)})

    assert sample("qmo_gpu_class_nodes", "h100") == 3
    assert sample("qmo_gpu_class_gpus", "h100") == 24
    assert sample("qmo_gpu_class_nodes", "l40s") is None
    assert sample("qmo_gpu_class_gpus", "l40s") is None


def test_unknown_gpu_nodes_are_counted_by_product_and_a_product_that_left_is_dropped() -> None:
    def sample(product: str) -> float | None:
        return REGISTRY.get_sample_value("qmo_unknown_gpu_nodes", {"product": product})

    metrics.observe_unknown_gpus({"NVIDIA-Mystery-9000": 2, "<no product label>": 1})
    metrics.observe_unknown_gpus({"NVIDIA-Mystery-9000": 3})

    assert sample("NVIDIA-Mystery-9000") == 3
    assert sample("<no product label>") is None


def test_autoscaled_variants_export_their_bound_and_lose_the_series_when_no_longer_scaled() -> None:
    labels = {"namespace": "ns-scale", "model": "chat", "variant": "h100-fp8"}
    metrics.observe_autoscaling("ns-scale", "chat", {"h100-fp8": (2, 2, True, 821)})
    assert REGISTRY.get_sample_value("qmo_variant_autoscaling_max_replicas", labels) == 2
    assert REGISTRY.get_sample_value("qmo_variant_autoscaling_replicas", labels) == 2
    assert REGISTRY.get_sample_value("qmo_variant_capacity_exhausted", labels) == 1
    assert REGISTRY.get_sample_value("qmo_variant_route_weight", labels) == 821

    metrics.observe_autoscaling("ns-scale", "chat", {"h100-fp8": (4, 1, False, None)})
    assert REGISTRY.get_sample_value("qmo_variant_capacity_exhausted", labels) == 0
    assert REGISTRY.get_sample_value("qmo_variant_route_weight", labels) is None

    metrics.observe_autoscaling("ns-scale", "chat", {})
    assert REGISTRY.get_sample_value("qmo_variant_autoscaling_max_replicas", labels) is None
