"""qmo-eval's OpenAI client against a real local HTTP server: errors, retries, timeouts."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from qmo.evaluator.openai_client import EndpointError, OpenAIClient
from tests.support.openai_server import FakeModel, serving


@pytest.fixture
def model() -> FakeModel:
    return FakeModel("served-model", answers={"Capital of France?": "Paris"})


@pytest.fixture
def url(model: FakeModel) -> Iterator[str]:
    with serving(model) as base:
        yield base


def client(
    url: str,
    waits: list[float] | None = None,
    *,
    retries: int = 2,
    timeout: float = 5.0,
    api_key: str | None = None,
) -> OpenAIClient:
    """A client whose backoff waits are recorded instead of slept."""
    return OpenAIClient(
        url,
        model="served-model",
        timeout=timeout,
        retries=retries,
        api_key=api_key,
        sleep=(waits if waits is not None else []).append,
    )


def test_models_lists_what_the_server_serves(url: str) -> None:
    assert client(url).models() == ["served-model"]


def test_a_refused_request_carries_the_server_message_and_is_not_retried(
    model: FakeModel, url: str
) -> None:
    model.error_status = 400
    waits: list[float] = []

    with pytest.raises(EndpointError, match="HTTP 400: injected 400") as err:
        client(url, waits).complete("Capital of France?", max_tokens=8)

    assert err.value.status == 400
    assert len(model.requests) == 1
    assert waits == []


def test_transient_failures_are_retried_with_backoff(model: FakeModel, url: str) -> None:
    model.fail_first = [503, 429]
    waits: list[float] = []

    completion = client(url, waits).complete("Capital of France?", max_tokens=8)

    assert completion.text == "Paris"
    assert len(model.requests) == 3
    assert waits == [1.0, 2.0]


def test_retries_are_bounded(model: FakeModel, url: str) -> None:
    model.error_status = 503
    with pytest.raises(EndpointError, match="HTTP 503"):
        client(url, retries=1).complete("q", max_tokens=8)
    assert len(model.requests) == 2


def test_the_api_key_is_sent_but_never_shown_in_errors(model: FakeModel, url: str) -> None:
    model.error_status = 400
    secret = "sk-do-not-print-me"

    with pytest.raises(EndpointError) as err:
        client(url, api_key=secret).complete("q", max_tokens=8)

    assert model.headers[0]["Authorization"] == f"Bearer {secret}"
    assert secret not in str(err.value)
    assert secret not in repr(client(url, api_key=secret))


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # connections queue up; nothing ever answers
        port = listener.getsockname()[1]
        waits: list[float] = []
        with pytest.raises(EndpointError, match="timed out"):
            client(f"http://127.0.0.1:{port}", waits, timeout=0.05, retries=1).models()
    assert waits == [1.0]


def test_echoed_prompt_logprobs_and_usage_are_read(model: FakeModel, url: str) -> None:
    completion = client(url).complete("a b c", max_tokens=1, logprobs=1, echo=True)

    assert completion.token_logprobs == [None, -1.0, -1.0, -0.5]
    assert completion.prompt_tokens == 3
    assert model.requests[0]["echo"] is True


def test_chat_top_logprobs_become_one_mapping_per_position(model: FakeModel, url: str) -> None:
    model.top_logprobs["Pick one"] = {" A": -1.5, " B": -0.25}

    completion = client(url).chat("Pick one\nA. x\nB. y", max_tokens=2, top_logprobs=2)

    assert completion.first_top_logprobs() == {" A": -1.5, " B": -0.25}
    sent = model.requests[0]
    assert (sent["logprobs"], sent["top_logprobs"], sent["temperature"]) == (True, 2, 0)
