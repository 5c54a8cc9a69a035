"""Eval Jobs hold no rights: qmo-eval hands its scores over in the termination message, the
operator reads them back and writes the report itself.

The round trip (qmo-eval's writer -> the pod's message -> the operator's parser -> the report
qmo creates), the size of the message, the messages the operator refuses, and the eval Job's
pod, which gets no ServiceAccount of qmo's and no token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qmo.api.evalcontract import (
    TERMINATION_MESSAGE_LIMIT,
    TERMINATION_MESSAGE_PATH,
    EvalResult,
    MessageError,
    parse_message,
)
from qmo.api.qualityreport import QualityReport, SpeedReport, SpeedSample
from qmo.evaluator import cli
from qmo.evaluator.cli import ExitCode, build_parser
from qmo.evaluator.evaluation import RunOptions
from qmo.evaluator.report import build_report, result
from qmo.evaluator.report_writer import ReportTooLong, TerminationWriter, Written
from qmo.manifests.evaluation import BASELINE_ANNOTATION, EVAL_CONTAINER, eval_job
from qmo.manifests.quality_report import quality_report
from qmo.planner.types import Evaluation
from tests.support.builders import a_model, an_owner

KEY = "5e" * 32
BENCHMARKS = [
    {"name": "arithmetic", "metric": "exact-match", "dataset": {"path": "benchmarks/a.jsonl"}},
    {"name": "gsm8k", "lmEval": {"task": "gsm8k", "metric": "exact_match,strict-match"}},
    {"name": "tickets", "lmEval": {"task": "support_tickets", "metric": "acc,none",
                                   "include": {"configMap": {"name": "ticket-task"}}}},
]  # fmt: skip


def a_speed(*levels: int) -> SpeedReport:
    def sample(concurrency: int, tokens: float) -> SpeedSample:
        return SpeedSample(
            concurrency=concurrency, requests=32, ttft_p50_seconds=0.123457,
            ttft_p95_seconds=0.234568, itl_p50_seconds=0.012346, itl_p95_seconds=0.023457,
            output_tokens_per_second=tokens,
        )  # fmt: skip

    return SpeedReport(
        candidate=[sample(c, 1834.567) for c in levels],
        baseline=[sample(c, 1234.567) for c in levels],
    )


def a_report(benchmarks: int = 3, name_length: int = 12, speed: bool = True) -> QualityReport:
    results = [
        result(
            f"b{i:02d}-{'x' * 63}"[:name_length],
            0.761905,
            0.752381,
            higher_is_better=i % 2 == 0,
            samples=1319,
        )
        for i in range(benchmarks)
    ]
    return build_report(
        model="llama",
        variant="h100-fp8",
        cache_key=KEY,
        namespace="team-a",
        baseline_variant="h100-bf16",
        results=results,
        speed=a_speed(1, 8) if speed else None,
    )


def test_the_operator_reads_back_every_score_qmo_eval_wrote(tmp_path: Path) -> None:
    report = a_report()
    path = tmp_path / "termination-log"

    assert TerminationWriter(path).write(report) == Written.HANDED_OVER
    spec = parse_message(path.read_text()).report_spec(
        model="llama", variant="h100-fp8", cache_key=KEY, baseline_variant="h100-bf16"
    )

    assert spec == report.spec
    assert spec.source == "qmo-eval"


def test_the_message_names_no_model_variant_or_revision(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    TerminationWriter(path).write(a_report())
    message = json.loads(path.read_text())

    assert set(message) == {"results", "speed"}
    assert KEY not in path.read_text()
    assert message["results"][0] == ["b00-xxxxxxxx", 0.761905, 0.752381, True, 1319]


@pytest.mark.parametrize(
    ("benchmarks", "name_length", "speed"),
    [(3, 12, True), (10, 20, True), (32, 20, True), (32, 63, True)],
    ids=["3 benchmarks", "10 benchmarks", "32 benchmarks", "32 benchmarks, 63-character names"],
)
def test_any_report_an_eval_job_can_make_fits_in_a_termination_message(
    benchmarks: int, name_length: int, speed: bool
) -> None:
    report = a_report(benchmarks, name_length, speed)
    as_spec = json.dumps(report.spec.to_wire(), separators=(",", ":"))
    message = EvalResult.of(report.spec.results, report.spec.speed).to_message()

    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    if benchmarks == 32:  # the whole spec would not have fitted: that is why rows travel
        assert len(as_spec.encode()) > TERMINATION_MESSAGE_LIMIT


def test_a_report_that_would_not_fit_fails_the_run_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = [result(f"b{i:02d}-{'x' * 59}", 1e15 / 7, 1e15 / 9, higher_is_better=False,
                   samples=10**9) for i in range(64)]  # fmt: skip
    report = build_report(model="llama", variant="h100-fp8", cache_key=KEY, results=huge)
    path = tmp_path / "termination-log"

    with pytest.raises(ReportTooLong, match="over Kubernetes' 4096"):
        TerminationWriter(path).write(report)
    assert not path.exists()

    monkeypatch.setattr(cli, "evaluate", lambda *_: report)
    options = RunOptions(
        model="llama", namespace="team-a", variant="h100-fp8", cache_key=KEY,
        candidate_url="http://c", baseline_url="http://b", baseline_variant="h100-bf16",
        benchmarks=tmp_path / "benchmarks.json",
    )  # fmt: skip
    assert cli.run(options, TerminationWriter(path)) == ExitCode.BAD_INPUT
    assert not path.exists()


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        ("Traceback (most recent call last):\n  File ...", "no eval result"),
        ('{"results": []}', "results"),
        ('{"results": [["a", "0.5", 0.5, true, 3]]}', "results.0.1"),
        ('{"results": [["a", 0.5, 0.5, 1, 3]]}', "results.0.3"),
        ('{"results": [["a", NaN, 0.5, true, 3]]}', "not a finite number"),
        ('{"results": [["a", 1e999, 0.5, true, 3]]}', "not a finite number"),
        ('{"results": [["' + "x" * 64 + '", 0.5, 0.5, true, 3]]}', "results.0.0"),
        ('{"speed": {"candidate": []}}', "results"),
        ('["a", 0.5]', "no eval result"),
    ],
    ids=[
        "empty",
        "blank",
        "a log tail",
        "no results",
        "a score as a string",
        "a direction as a number",
        "NaN",
        "infinity",
        "a benchmark name too long for a report",
        "speed without results",
        "not an object",
    ],
)
def test_a_malformed_message_is_an_error_that_says_what_is_wrong(message: str, reason: str) -> None:
    with pytest.raises(MessageError, match=reason.replace(".", r"\.")):
        parse_message(message)


def test_scores_that_make_no_valid_report_are_an_error_not_a_report() -> None:
    twice = '{"results": [["a", 0.5, 0.5, true, 3], ["a", 0.4, 0.4, true, 3]]}'
    with pytest.raises(MessageError, match="do not make a valid report"):
        parse_message(twice).report_spec(
            model="llama", variant="h100-fp8", cache_key=KEY, baseline_variant=None
        )


def test_a_newer_qmo_eval_may_add_fields_the_operator_ignores() -> None:
    parsed = parse_message('{"results": [["a", 0.5, 0.5, true, null]], "lmEvalVersion": "0.5"}')
    assert parsed.results == [("a", 0.5, 0.5, True, None)]


def test_the_report_qmo_creates_is_named_as_qmo_eval_names_it_and_owned_by_the_model() -> None:
    owner = an_owner("llama", "team-a")
    by_hand = a_report()
    spec = EvalResult.of(by_hand.spec.results, by_hand.spec.speed).report_spec(
        model="llama", variant="h100-fp8", cache_key=KEY, baseline_variant="h100-bf16"
    )

    created = quality_report(owner, spec)

    assert created["metadata"]["name"] == by_hand.metadata["name"] == f"llama-h100-fp8-{KEY[:12]}"
    assert created["metadata"]["namespace"] == "team-a"
    assert created["metadata"]["labels"] == by_hand.metadata["labels"]
    assert created["metadata"]["ownerReferences"] == [owner.reference()]
    assert created["spec"] == by_hand.spec.to_wire()
    assert "status" not in created
    assert QualityReport.from_wire(created).spec == by_hand.spec


# --- the eval Job -------------------------------------------------------------------------


def an_eval_job() -> dict[str, Any]:
    spec = a_model().with_quality(benchmarks=BENCHMARKS, minSpeedup=1.2).spec()
    evaluation = Evaluation("h100-fp8", KEY, on_candidate_track=True, baseline="h100-bf16")
    return eval_job(spec, evaluation, an_owner("llama", "team-a"), image="qmo-eval:test")


def test_the_eval_pod_has_no_service_account_of_qmos_and_no_token() -> None:
    pod = an_eval_job()["spec"]["template"]["spec"]

    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    assert "serviceAccount" not in pod
    assert not [v for v in pod["volumes"] if "projected" in v or "secret" in v]
    for container in pod["containers"]:
        assert not [e for e in container.get("env", []) if "valueFrom" in e]
        assert "envFrom" not in container


def test_the_eval_container_writes_its_scores_where_kubernetes_reads_the_message() -> None:
    job = an_eval_job()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])

    assert container["name"] == EVAL_CONTAINER
    assert container["terminationMessagePath"] == TERMINATION_MESSAGE_PATH
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert args.termination_log == Path(TERMINATION_MESSAGE_PATH)
    assert not args.dry_run
    assert job["metadata"]["annotations"][BASELINE_ANNOTATION] == "h100-bf16"
    assert args.baseline_variant == "h100-bf16"


def test_bad_input_fails_the_eval_job_at_once_instead_of_running_it_again() -> None:
    (rule,) = an_eval_job()["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"] == {
        "containerName": EVAL_CONTAINER,
        "operator": "In",
        "values": [ExitCode.BAD_INPUT],
    }
