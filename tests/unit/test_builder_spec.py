"""qmo-builder reads its BuildRequest from the environment or a file, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmo.api.buildcontract import BUILD_SPEC_ENV, ExitCode
from qmo.builder.errors import InvalidRequest
from qmo.builder.spec import load_request, parse_request, partial_cache_key
from tests.support.build_requests import a_request


def test_the_request_is_read_from_the_environment() -> None:
    request = load_request({BUILD_SPEC_ENV: a_request().precision("int4-awq", "fp8").json()})
    assert request.precision == "int4-awq"
    assert request.kv_cache_dtype == "fp8"
    assert request.limits.max_seq_len == 8192


def test_a_spec_file_wins_over_the_environment(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(a_request().precision("bf16").json())
    env = {BUILD_SPEC_ENV: a_request().precision("fp8", "fp8").json()}
    assert load_request(env, spec).precision == "bf16"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "set QMO_BUILD_SPEC or pass --spec", id="empty"),
        pytest.param("{not json", "is not JSON: ", id="not-json"),
        pytest.param("[1, 2]", "must hold a JSON object, not list", id="a-list"),
        pytest.param('{"cacheKey": "0123456789"}', "source: Field required", id="missing-fields"),
    ],
)
def test_a_bad_spec_is_an_invalid_request_that_says_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        load_request({BUILD_SPEC_ENV: text})
    assert expected in raised.value.message
    assert raised.value.exit_code == ExitCode.INVALID_SPEC


def test_an_unknown_precision_names_the_field() -> None:
    data = a_request().json().replace('"precision": "fp8"', '"precision": "int3"')
    with pytest.raises(InvalidRequest, match=r"precision: Input should be"):
        parse_request(data)


def test_an_unreadable_spec_file_is_an_invalid_request(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="cannot read build spec"):
        load_request({}, tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param('{"cacheKey": "abc12345", "precision": "int3"}', "abc12345", id="readable"),
        pytest.param("{broken", "unknown", id="not-json"),
        pytest.param('{"precision": "fp8"}', "unknown", id="no-key"),
    ],
)
def test_the_cache_key_of_an_invalid_request_is_recovered_when_readable(
    text: str, key: str
) -> None:
    assert partial_cache_key({BUILD_SPEC_ENV: text}, None) == key
