"""A real, tiny OpenAI-compatible HTTP server on 127.0.0.1 for the qmo-eval tests.

It answers GET /v1/models, POST /v1/completions and POST /v1/chat/completions just enough
for qmo-eval: a completion is looked up by the prompt's first line in `answers`; perplexity
requests (echo + logprobs) get one logprob per whitespace-separated word, with the first
word's logprob null, as vLLM-style servers echo prompt logprobs. Every request body is kept in
`requests` so tests can check what was sent. No part of qmo's client is mocked: the tests talk
HTTP to this server over a socket.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PromptLogprobs(Enum):
    ECHOED = "echoed"  # prompt tokens' logprobs come back with echo (vLLM style)
    GENERATED_ONLY = "generated-only"  # only the generated token's logprob (no prompt logprobs)
    NONE = "none"  # logprobs: null


@dataclass
class FakeModel:
    """How one fake server answers."""

    name: str
    answers: dict[str, str] = field(default_factory=dict)  # first prompt line -> completion
    default_answer: str = "I do not know"
    word_logprob: float = -1.0
    prompt_logprobs: PromptLogprobs = PromptLogprobs.ECHOED
    # First-position top logprobs, by first prompt line (multiple-choice with logprobs).
    top_logprobs: dict[str, dict[str, float]] = field(default_factory=dict)
    # Statuses to answer with before answering normally (transient failures).
    fail_first: list[int] = field(default_factory=list)
    error_status: int | None = None  # answer every POST with this status
    # Streamed completions (the speed probe): seconds before the first token and between
    # tokens; a streamed answer is max_tokens tokens long.
    first_token_seconds: float = 0.0
    token_seconds: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, prompt: str) -> str:
        return self.answers.get(prompt.split("\n")[0], self.default_answer)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = str(body["prompt"])
        text = self.answer(prompt)
        words = prompt.split()
        logprobs: dict[str, Any] | None = None
        if body.get("logprobs"):
            logprobs = self._logprobs(prompt, words, bool(body.get("echo")))
        return {
            "id": "cmpl-test",
            "object": "text_completion",
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "text": (prompt + text) if body.get("echo") else text,
                    "logprobs": logprobs,
                    "finish_reason": "length",
                }
            ],
            "usage": {
                "prompt_tokens": len(words),
                "completion_tokens": 1,
                "total_tokens": len(words) + 1,
            },
        }

    def _logprobs(self, prompt: str, words: list[str], echo: bool) -> dict[str, Any] | None:
        if self.prompt_logprobs == PromptLogprobs.NONE:
            return None
        generated_top = self.top_logprobs.get(prompt.split("\n")[0], {"x": -0.5})
        if echo and self.prompt_logprobs == PromptLogprobs.ECHOED:
            token_logprobs = [None] + [self.word_logprob] * (len(words) - 1) + [-0.5]
            tops: list[dict[str, float] | None] = [None] + [{"w": self.word_logprob}] * (
                len(words) - 1
            )
            return {
                "tokens": [*words, "x"],
                "token_logprobs": token_logprobs,
                "top_logprobs": [*tops, generated_top],
                "text_offset": list(range(len(words) + 1)),
            }
        return {
            "tokens": ["x"],
            "token_logprobs": [-0.5],
            "top_logprobs": [generated_top],
            "text_offset": [0],
        }

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = str(body["messages"][-1]["content"])
        logprobs = None
        if body.get("logprobs") and self.prompt_logprobs != PromptLogprobs.NONE:
            top = self.top_logprobs.get(prompt.split("\n")[0], {"x": -0.5})
            logprobs = {
                "content": [
                    {
                        "token": "x",
                        "logprob": -0.5,
                        "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top.items()],
                    }
                ]
            }
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.answer(prompt)},
                    "logprobs": logprobs,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # the test output stays quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _stream(self, model: FakeModel, tokens: int) -> None:
        """Server-sent events, one token per chunk, paced like a model server."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        time.sleep(model.first_token_seconds)
        for i in range(tokens):
            if i:
                time.sleep(model.token_seconds)
            choice = {"index": 0, "text": f" t{i}", "finish_reason": None}
            chunk = {"object": "text_completion", "model": model.name, "choices": [choice]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.server.model.name}]})
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        model = self.server.model
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with model.lock:
            model.requests.append({"path": self.path, **body})
            model.headers.append(dict(self.headers))
            failing = model.fail_first.pop(0) if model.fail_first else model.error_status
        if failing is not None:
            self._send(failing, {"object": "error", "message": f"injected {failing}", "code": 1})
        elif self.path == "/v1/completions" and body.get("stream"):
            self._stream(model, int(body.get("max_tokens") or 16))
        elif self.path == "/v1/completions":
            self._send(200, model.completion(body))
        elif self.path == "/v1/chat/completions":
            self._send(200, model.chat(body))
        else:
            self._send(404, {"detail": "Not Found"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model: FakeModel) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.model = model


@contextmanager
def serving(model: FakeModel) -> Iterator[str]:
    """The model served on a free port of 127.0.0.1; yields its base URL."""
    server = _Server(model)
    # A short poll interval: shutdown() returns within it instead of the default 0.5 s.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, name=f"fake-{model.name}"
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    """A URL on which nothing listens (the port was free a moment ago)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
