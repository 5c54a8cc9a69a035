"""From API objects to observations: build Jobs and their pods, artifact records, Deployments."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qmo.api.buildcontract import BuildResult
from qmo.controller.gather import (
    fetch_failure,
    observe_deployment,
    observe_job,
    observe_record,
    termination_result,
)
from qmo.controller.projections import project_pod
from qmo.manifests.build import artifact_record
from qmo.planner.types import BuildObservation, BuildState, DeploymentObservation
from qmo.vocabulary import BuildState as ResultState
from tests.support.builders import a_build_job, a_build_pod, a_deployment

KEY = "9" * 64
JOB = "qmo-build-h100-fp8-9999999999999999"

Obj = dict[str, Any]


def _result(state: ResultState = ResultState.SUCCEEDED, **fields: Any) -> BuildResult:
    return BuildResult(cache_key=KEY, state=state, **fields)


SUCCEEDED = _result(artifact_path="/store/artifacts/custom", reason="Built")
OOM = _result(ResultState.FAILED, reason="OutOfMemory", message="calibration ran out of memory")


# --- Build Jobs -------------------------------------------------------------------------------


def test_a_complete_job_succeeded_with_the_artifact_path_the_builder_reported() -> None:
    job = a_build_job(JOB, KEY).complete().job()
    seen = observe_job(job, [a_build_pod(SUCCEEDED)])
    assert seen == BuildObservation(
        KEY,
        BuildState.SUCCEEDED,
        job=JOB,
        reason="BuildSucceeded",
        message="the build finished",
        artifact_path="/store/artifacts/custom",
    )


def test_a_complete_job_without_a_message_is_at_the_default_path_of_its_key() -> None:
    seen = observe_job(a_build_job(JOB, KEY).complete().job(), [])
    assert (seen.state, seen.artifact_path) == (BuildState.SUCCEEDED, f"/store/artifacts/{KEY}")


@pytest.mark.parametrize(
    ("pods", "reason", "message"),
    [
        pytest.param(
            [a_build_pod(OOM)],
            "OutOfMemory",
            "calibration ran out of memory",
            id="the-builders-own-words",
        ),
        pytest.param(
            [a_build_pod(_result(ResultState.FAILED))],
            "BuildFailed",
            "the builder reported a failure",
            id="a-result-without-reason",
        ),
        pytest.param(
            [],
            "BuildFailed",
            f"build Job {JOB} failed: DeadlineExceeded: Job was active longer than specified",
            id="no-pod-names-the-job-condition",
        ),
        pytest.param(
            [a_build_pod("Traceback (most recent call last):\n  ...\nKilled")],
            "BuildFailed",
            f"build Job {JOB} failed: DeadlineExceeded: Job was active longer than specified",
            id="logs-instead-of-a-result",
        ),
        pytest.param(
            [a_build_pod(SUCCEEDED)],
            "BuildFailed",
            f"build Job {JOB} failed: DeadlineExceeded: Job was active longer than specified",
            id="a-succeeded-result-on-a-failed-job",
        ),
    ],
)
def test_a_failed_job_says_why_in_the_builders_words_when_there_are_any(
    pods: list[Obj], reason: str, message: str
) -> None:
    job = (
        a_build_job(JOB, KEY)
        .failed("DeadlineExceeded", "Job was active longer than specified")
        .job()
    )
    seen = observe_job(job, pods)
    assert (seen.cache_key, seen.state, seen.job) == (KEY, BuildState.FAILED, JOB)
    assert (seen.reason, seen.message) == (reason, message)
    assert seen.artifact_path is None


@pytest.mark.parametrize(
    ("job", "state"),
    [
        pytest.param(a_build_job(JOB, KEY).active(1).job(), BuildState.RUNNING, id="active-pod"),
        pytest.param(a_build_job(JOB, KEY).job(), BuildState.PENDING, id="no-pod-yet"),
    ],
)
def test_an_unfinished_job_is_running_once_it_has_an_active_pod(
    job: Obj, state: BuildState
) -> None:
    assert observe_job(job, []) == BuildObservation(KEY, state, job=JOB)


def test_a_condition_that_is_not_true_does_not_finish_the_job() -> None:
    job = a_build_job(JOB, KEY).active(1).job()
    job["status"]["conditions"] = [{"type": "Failed", "status": "False"}]
    assert observe_job(job, []).state == BuildState.RUNNING


# --- Termination messages ---------------------------------------------------------------------


def test_the_newest_terminated_build_container_wins() -> None:
    first_try = a_build_pod(OOM, finished_at="2026-01-01T10:00:00Z")
    retry = a_build_pod(SUCCEEDED, finished_at="2026-01-01T11:00:00Z")
    assert termination_result([retry, first_try]) == SUCCEEDED
    assert termination_result([first_try, retry]) == SUCCEEDED


@pytest.mark.parametrize(
    "pod",
    [
        pytest.param(a_build_pod("not json at all"), id="not-json"),
        pytest.param(a_build_pod(json.dumps({"state": "Succeeded"})), id="not-a-build-result"),
        pytest.param(a_build_pod(json.dumps(["a", "list"])), id="json-but-not-an-object"),
        pytest.param(a_build_pod(""), id="empty"),
        pytest.param(a_build_pod(None), id="no-message"),
        pytest.param(a_build_pod(SUCCEEDED, container="istio-proxy"), id="another-container"),
        pytest.param({"metadata": {"name": "pending"}, "status": {}}, id="never-started"),
    ],
)
def test_a_malformed_or_foreign_termination_message_is_ignored(pod: Obj) -> None:
    assert termination_result([pod]) is None


def test_a_malformed_newer_message_does_not_hide_a_valid_older_one() -> None:
    older = a_build_pod(OOM, finished_at="2026-01-01T10:00:00Z")
    newer = a_build_pod("Killed", finished_at="2026-01-01T11:00:00Z")
    assert termination_result([newer, older]) == OOM


# --- Artifact records -------------------------------------------------------------------------


def test_an_artifact_record_is_a_succeeded_build_that_this_model_did_not_run() -> None:
    result = _result(artifact_path=f"/store/artifacts/{KEY}")
    record = artifact_record("models", "h100-fp8", result, "fp8", "h100")
    assert observe_record(record) == BuildObservation(
        KEY,
        BuildState.SUCCEEDED,
        reason="ArtifactRecorded",
        message="the artifact is built and recorded",
        artifact_path=f"/store/artifacts/{KEY}",
        recorded=True,
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"artifact.json": "{not json"}, id="not-json"),
        pytest.param({"artifact.json": json.dumps({"cacheKey": KEY})}, id="not-a-result"),
        pytest.param({"other.json": SUCCEEDED.model_dump_json()}, id="wrong-key"),
    ],
)
def test_a_record_that_cannot_be_read_is_not_an_artifact(data: dict[str, str]) -> None:
    assert observe_record({"metadata": {"name": "qmo-artifact-x"}, "data": data}) is None


def test_a_record_without_data_is_not_an_artifact() -> None:
    assert observe_record({"metadata": {"name": "qmo-artifact-x"}}) is None


# --- Deployments ------------------------------------------------------------------------------


def test_a_current_deployment_reports_its_replicas_and_revision() -> None:
    deployment = a_deployment("h100-fp8", key=KEY, ready=2, updated=3, replicas=3)
    assert observe_deployment(deployment) == DeploymentObservation(
        name="llama-h100-fp8", replicas=3, ready_replicas=2, updated_replicas=3, revision=KEY
    )


@pytest.mark.parametrize(
    ("generation", "observed_generation"),
    [
        pytest.param(2, 1, id="controller-behind"),
        pytest.param(2, None, id="never-observed"),
    ],
)
def test_a_stale_deployment_status_counts_no_ready_replicas(
    generation: int, observed_generation: int | None
) -> None:
    deployment = a_deployment(
        "h100-fp8", generation=generation, observed_generation=observed_generation, ready=1
    )
    seen = observe_deployment(deployment)
    assert seen is not None
    assert (seen.ready_replicas, seen.updated_replicas) == (0, 0)
    assert seen.revision == "k" * 64


def test_a_deployment_without_a_variant_label_is_not_a_variant() -> None:
    assert observe_deployment(a_deployment(None)) is None


def test_a_deployment_with_no_status_yet_has_nothing_ready() -> None:
    deployment = a_deployment("h100-fp8", generation=1)
    del deployment["status"]
    seen = observe_deployment(deployment)
    assert seen is not None
    assert (seen.ready_replicas, seen.updated_replicas, seen.replicas) == (0, 0, 1)


# --- a serving pod's fetch step --------------------------------------------------------------

REFUSED = {"terminated": {"exitCode": 1, "message": json.dumps(
    {"reason": "StoreAccessDenied", "message": "the store refused the keys"})}}  # fmt: skip


def _pod_with_fetch(
    state: Obj, last: Obj | None, *, started: bool = False, ready: bool = False
) -> Obj:
    status: Obj = {"name": "fetch-artifact", "state": state, "started": started, "ready": ready}
    if last is not None:
        status["lastState"] = last
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "chat-h100-fp8-abc", "namespace": "team-a"},
        "status": {"phase": "Pending", "initContainerStatuses": [status]},
    }


@pytest.mark.parametrize(
    ("pod", "said"),
    [
        pytest.param(
            _pod_with_fetch({"waiting": {"reason": "CrashLoopBackOff"}}, REFUSED),
            "StoreAccessDenied: the store refused the keys",
            id="failed and waiting to restart",
        ),
        pytest.param(
            _pod_with_fetch({"running": {}}, REFUSED),
            "StoreAccessDenied: the store refused the keys",
            id="fetching again after a failure (not started yet)",
        ),
        pytest.param(
            _pod_with_fetch({"running": {}}, REFUSED, started=True),
            None,
            id="a sidecar that holds its artifact now",
        ),
        pytest.param(
            _pod_with_fetch({"terminated": {"exitCode": 0}}, REFUSED),
            None,
            id="an init container that completed since",
        ),
        pytest.param(
            _pod_with_fetch({"running": {}}, REFUSED, started=True, ready=True),
            None,
            id="a ready sidecar",
        ),
        pytest.param(_pod_with_fetch({"running": {}}, None), None, id="never failed"),
    ],
)
def test_what_a_serving_pods_fetch_step_says(pod: Obj, said: str | None) -> None:
    """As the operator sees it: through the informer's projection, then gather."""
    assert fetch_failure([project_pod(pod)]) == said
