"""A small client for OpenAI-compatible servers (trtllm-serve), on the standard library.

Called by harness.py (completions) and evaluation.py (the served model's name). Only what
qmo-eval needs: POST /v1/completions, POST /v1/chat/completions and GET /v1/models, with a
timeout per request and a bounded retry of transient failures (connection errors, 429, 5xx).
Responses are reduced to `Completion`, which is all the scoring needs.

An API key, when one is set (QMO_EVAL_API_KEY), goes into the Authorization header and
nowhere else: never into errors or logs.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# How much of a server's error body an EndpointError keeps.
ERROR_BODY_LIMIT = 300


class EndpointError(RuntimeError):
    """A request to an endpoint failed; `status` is the HTTP status when there was one."""

    def __init__(self, url: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.status = status


@dataclass(frozen=True)
class Completion:
    """What scoring reads from one choice of a completion or chat completion."""

    text: str
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float]] | None = None
    prompt_tokens: int | None = None

    def first_top_logprobs(self) -> dict[str, float] | None:
        return self.top_logprobs[0] if self.top_logprobs else None


@dataclass
class OpenAIClient:
    """One endpoint (base URL without /v1) and the model name it serves."""

    base_url: str
    model: str = ""
    timeout: float = 60.0
    seed: int | None = 0
    retries: int = 2
    api_key: str | None = field(default=None, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    def models(self) -> list[str]:
        body = self._request("GET", "/v1/models", None)
        data = body.get("data")
        if not isinstance(data, list):
            raise EndpointError(self._url("/v1/models"), "the response has no model list")
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        logprobs: int | None = None,
        echo: bool = False,
    ) -> Completion:
        payload: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        if self.seed is not None:
            payload["seed"] = self.seed
        if logprobs:
            payload["logprobs"] = logprobs
        if echo:
            payload["echo"] = True
        body = self._request("POST", "/v1/completions", payload)
        choice = self._first_choice(body, "/v1/completions")
        usage, raw = _dict(body.get("usage")), _dict(choice.get("logprobs"))
        return Completion(
            text=str(choice.get("text") or ""),
            token_logprobs=_token_logprobs(raw.get("token_logprobs")),
            top_logprobs=_top_logprobs(raw.get("top_logprobs")),
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        )

    def chat(self, prompt: str, *, max_tokens: int, top_logprobs: int | None = None) -> Completion:
        return self.converse(
            [{"role": "user", "content": prompt}], max_tokens=max_tokens, top_logprobs=top_logprobs
        )

    def converse(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        top_logprobs: int | None = None,
    ) -> Completion:
        """A chat completion of a whole conversation (system, user and assistant turns)."""
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        if self.seed is not None:
            payload["seed"] = self.seed
        if top_logprobs:
            payload["logprobs"] = True
            payload["top_logprobs"] = top_logprobs
        body = self._request("POST", "/v1/chat/completions", payload)
        choice = self._first_choice(body, "/v1/chat/completions")
        message, raw = _dict(choice.get("message")), _dict(choice.get("logprobs"))
        content = raw.get("content")
        return Completion(
            text=str(message.get("content") or ""),
            top_logprobs=_chat_top_logprobs(content if isinstance(content, list) else None),
        )

    def _first_choice(self, body: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise EndpointError(self._url(path), "the response has no choices")
        first: Mapping[str, Any] = choices[0]
        return first

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _request(self, method: str, path: str, payload: Mapping[str, Any] | None) -> Any:
        url = self._url(path)
        headers = {"Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                break
            except urllib.error.HTTPError as err:
                error = EndpointError(url, f"HTTP {err.code}: {_error_text(err)}", err.code)
                retryable = err.code in RETRYABLE_STATUS
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                reason = getattr(err, "reason", err)
                error = EndpointError(url, f"request failed: {reason}")
                retryable = True
            if not retryable or attempt == self.retries:
                raise error
            self.sleep(min(2.0**attempt, 10.0))
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise EndpointError(url, f"the response is not JSON: {err}") from err


def _error_text(err: urllib.error.HTTPError) -> str:
    """The server's own error message when it sent one (OpenAI or FastAPI shape), shortened."""
    try:
        raw = err.read().decode(errors="replace")
    except OSError:
        return str(err.reason)
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        return raw.strip()[:ERROR_BODY_LIMIT] or str(err.reason)
    message: Any = body
    if isinstance(body, dict):
        inner = body.get("error")
        message = body.get("message") or body.get("detail") or inner or body
        if isinstance(inner, dict):
            message = inner.get("message") or inner
    return str(message)[:ERROR_BODY_LIMIT]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _token_logprobs(raw: Any) -> list[float | None] | None:
    if not isinstance(raw, list):
        return None
    return [_float_or_none(v) for v in raw]


def _top_logprobs(raw: Any) -> list[dict[str, float]] | None:
    """Completions' top_logprobs: one {token: logprob} per position (null entries kept empty)."""
    if not isinstance(raw, list):
        return None
    positions: list[dict[str, float]] = []
    for entry in raw:
        position: dict[str, float] = {}
        if isinstance(entry, dict):
            for token, value in entry.items():
                number = _float_or_none(value)
                if number is not None:
                    position[str(token)] = number
        positions.append(position)
    return positions


def _chat_top_logprobs(content: list[Any] | None) -> list[dict[str, float]] | None:
    """Chat logprobs.content[i].top_logprobs [{token, logprob}] as one dict per position."""
    if content is None:
        return None
    positions: list[dict[str, float]] = []
    for entry in content:
        position: dict[str, float] = {}
        tops = entry.get("top_logprobs") if isinstance(entry, dict) else None
        for top in tops if isinstance(tops, list) else []:
            if isinstance(top, dict):
                number = _float_or_none(top.get("logprob"))
                if number is not None:
                    position[str(top.get("token", ""))] = number
        positions.append(position)
    return positions
