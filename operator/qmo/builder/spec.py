"""Reads the BuildRequest that the operator hands a build Job.

The request comes as JSON in the environment variable QMO_BUILD_SPEC, or from a file given
with `--spec FILE` (for local runs and tests); the file wins when both are present. Every
problem becomes an InvalidRequest, which exits with ExitCode.INVALID_SPEC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from qmo.api.buildcontract import BUILD_SPEC_ENV, BuildRequest
from qmo.builder.errors import InvalidRequest


def load_request(env: Mapping[str, str], spec_file: Path | None = None) -> BuildRequest:
    """The request from `spec_file`, else from the environment."""
    if spec_file is not None:
        try:
            text = spec_file.read_text(encoding="utf-8")
        except OSError as err:
            raise InvalidRequest(f"cannot read build spec {spec_file}: {err.strerror}") from err
        origin = str(spec_file)
    else:
        text = env.get(BUILD_SPEC_ENV, "")
        if not text.strip():
            raise InvalidRequest(f"no build spec: set {BUILD_SPEC_ENV} or pass --spec FILE")
        origin = BUILD_SPEC_ENV
    return parse_request(text, origin=origin)


def parse_request(text: str, *, origin: str = BUILD_SPEC_ENV) -> BuildRequest:
    """Parse and validate one request; messages name the field that is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidRequest(
            f"{origin} is not JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from err
    if not isinstance(data, dict):
        raise InvalidRequest(f"{origin} must hold a JSON object, not {type(data).__name__}")
    try:
        return BuildRequest.model_validate(data)
    except ValidationError as err:
        raise InvalidRequest(f"{origin} is not a valid BuildRequest: {_summary(err)}") from err


def partial_cache_key(env: Mapping[str, str], spec_file: Path | None) -> str:
    """The cache key of a request that failed validation, if it can be read at all.

    Lets the termination message of an invalid request still name the build it belongs to.
    """
    try:
        text = spec_file.read_text(encoding="utf-8") if spec_file else env.get(BUILD_SPEC_ENV, "")
        data = json.loads(text)
    except (OSError, json.JSONDecodeError):
        return "unknown"
    key = data.get("cacheKey", data.get("cache_key")) if isinstance(data, dict) else None
    return key if isinstance(key, str) and key else "unknown"


def _summary(err: ValidationError) -> str:
    parts = []
    for problem in err.errors()[:5]:
        where = ".".join(str(p) for p in problem["loc"]) or "(root)"
        parts.append(f"{where}: {problem['msg']}")
    more = err.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
