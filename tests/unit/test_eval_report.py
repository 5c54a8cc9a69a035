"""The QualityReport qmo-eval builds (qmo.evaluator.report): name, labels, spec, validation."""

from __future__ import annotations

import io

import pytest
import yaml
from pydantic import ValidationError

from qmo.api.qualityreport import QualityReport
from qmo.api.quantizedmodel import QualitySpec
from qmo.evaluator.report import build_report, report_name, result
from qmo.evaluator.report_writer import PrintWriter, Written
from qmo.quality.verdict import judge

KEY = "ab12cd34ef56" + "7" * 52


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("quality-fp8-run-3", "llama-h100-fp8-quality-fp8"),
        ("Run_2026.11.30", "llama-h100-fp8-run-2026-11"),
    ],
)
def test_a_key_that_is_not_hex_still_gives_a_valid_name(key: str, name: str) -> None:
    assert report_name("llama", "h100-fp8", key) == name


def test_report_name_is_model_variant_and_the_first_12_digits_of_the_key() -> None:
    assert report_name("llama", "h100-fp8", KEY) == "llama-h100-fp8-ab12cd34ef56"


def test_a_long_report_name_is_cut_with_a_hash_and_still_differs_per_revision() -> None:
    model, variant = "a-very-long-model-name-for-a-team", "a100-80gb-int4-awq"
    first = report_name(model, variant, KEY)
    second = report_name(model, variant, "f" * 64)

    assert len(first) == len(second) == 63
    assert first.startswith(f"{model}-{variant}-")
    assert first != second


def test_the_report_is_what_the_operator_judges() -> None:
    report = build_report(
        model="llama",
        variant="h100-fp8",
        cache_key=KEY,
        namespace="team-a",
        baseline_variant="h100-bf16",
        results=[
            result("arithmetic", 0.8, 0.7880001234567, higher_is_better=True, samples=100),
            result("wikitext-ppl", 10.0, 10.1, higher_is_better=False, samples=None),
        ],
    )
    wire = report.to_wire()

    assert wire["metadata"]["labels"] == {
        "app.kubernetes.io/name": "qmo",
        "app.kubernetes.io/component": "evaluation",
        "qmo.dev/model": "llama",
        "qmo.dev/variant": "h100-fp8",
        "qmo.dev/cache-key": KEY[:16],
    }
    assert wire["spec"]["results"][0]["candidateScore"] == 0.788  # 6 decimals
    assert "samples" not in wire["spec"]["results"][1]
    # Round trip through the API model, then the operator's own verdict reads it.
    parsed = QualityReport.model_validate(wire)
    judgement = judge(parsed.spec, QualitySpec(max_regression_percent=1.5))
    assert judgement.verdict == "Pass"
    assert judgement.worst_benchmark == "arithmetic"


def test_a_model_name_that_no_label_can_hold_is_left_out_of_the_labels() -> None:
    model = "m" * 70
    report = build_report(
        model=model,
        variant="h100-fp8",
        cache_key=KEY,
        results=[result("b", 1.0, 1.0, higher_is_better=True, samples=1)],
    )
    assert "qmo.dev/model" not in report.metadata["labels"]
    assert report.spec.model_ref.name == model
    assert "namespace" not in report.metadata


def test_a_report_the_api_would_refuse_is_refused_here() -> None:
    with pytest.raises(ValidationError):
        build_report(model="llama", variant="h100-fp8", cache_key=KEY, results=[])


def test_the_print_writer_writes_yaml_and_sends_nothing() -> None:
    report = build_report(
        model="llama",
        variant="h100-fp8",
        cache_key=KEY,
        results=[result("b", 1.0, 0.5, higher_is_better=True, samples=2)],
    )
    out = io.StringIO()

    assert PrintWriter(out).write(report) == Written.PRINTED
    assert yaml.safe_load(out.getvalue()) == report.to_wire()
