"""The errors a build can end with, each carrying its exit code and CamelCase reason.

    BuildError                  FAILED (retriable: the Job's backoffLimit applies)
    +-- SourceUnavailable       the checkpoint could not be fetched (network, store)
    +-- IncompleteCheckpoint    config.json or a weight shard is missing
    +-- CalibrationUnavailable  neither the hub nor a local dataset is reachable
    +-- EngineBuildFailed       trtllm-build (or a conversion step) exited non-zero
    +-- InvalidRequest          INVALID_SPEC (permanent: the request itself is wrong)
    +-- GpuRefused              GPU_MISMATCH (permanent: wrong GPU for this build)

`qmo.builder.cli` turns each into an exit code and a termination message; anything else
that escapes a build is reported as BuildFailed.
"""

from __future__ import annotations

from qmo.api.buildcontract import ExitCode


class BuildError(Exception):
    """A build failed for a reason the operator can show the user."""

    reason = "BuildFailed"
    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class SourceUnavailable(BuildError):
    reason = "SourceUnavailable"


class IncompleteCheckpoint(BuildError):
    reason = "IncompleteCheckpoint"


class CalibrationUnavailable(BuildError):
    reason = "CalibrationDataUnavailable"


class EngineBuildFailed(BuildError):
    reason = "EngineBuildFailed"


class InvalidRequest(BuildError):
    reason = "InvalidSpec"
    exit_code = ExitCode.INVALID_SPEC


class GpuRefused(BuildError):
    reason = "GpuMismatch"
    exit_code = ExitCode.GPU_MISMATCH
