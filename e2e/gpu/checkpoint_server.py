"""A small OpenAI-compatible server over transformers, for scoring an exported checkpoint through
`qmo-eval`'s own HTTP path on a GPU machine where trtllm-serve cannot be installed. It stands in
for trtllm-serve and is named as such in every result it produces.

GET /v1/models, and POST /v1/completions with what qmo-eval sends: `prompt`, `max_tokens`
(greedy: temperature 0), `logprobs` (top-k per generated position) and `echo` (the prompt's own
token logprobs first, the very first null, as vLLM-style servers give them), with
`usage.prompt_tokens`. One request at a time reaches the model (a lock): it is small.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CheckpointModel:
    """A loaded causal LM and its tokenizer, answering completions greedily."""

    def __init__(self, name: str, model: Any, tokenizer: Any, device: str) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.lock = threading.Lock()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        import torch

        prompt = str(body["prompt"])
        max_tokens = max(1, int(body.get("max_tokens") or 16))
        top = int(body.get("logprobs") or 0)
        echo = bool(body.get("echo"))
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with self.lock, torch.no_grad():
            tokens = torch.tensor([ids], device=self.device)
            logits = self.model(tokens).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            prompt_logprobs: list[float | None] = [None] + [
                float(logp[i - 1, ids[i]]) for i in range(1, len(ids))
            ]
            generated, gen_logprobs, gen_tops = [], [], []
            for _ in range(max_tokens):
                step = logp[-1]
                best = int(torch.argmax(step))
                generated.append(best)
                gen_logprobs.append(float(step[best]))
                if top:
                    values, indices = torch.topk(step, top)
                    gen_tops.append(
                        {
                            self.tokenizer.decode([int(i)]): float(v)
                            for v, i in zip(values, indices, strict=True)
                        }
                    )
                if len(generated) == max_tokens:
                    break
                tokens = torch.cat([tokens, torch.tensor([[best]], device=self.device)], dim=1)
                logp = torch.log_softmax(self.model(tokens).logits[0].float(), dim=-1)
        text = "".join(" " + self.tokenizer.decode([t]) for t in generated)
        choice: dict[str, Any] = {"index": 0, "text": (prompt + text) if echo else text}
        if top or echo:
            words = [self.tokenizer.decode([t]) for t in (ids if echo else []) + generated]
            logprobs: dict[str, Any] = {
                "tokens": words,
                "token_logprobs": (prompt_logprobs if echo else []) + gen_logprobs,
            }
            if top:
                logprobs["top_logprobs"] = ([None] * len(ids) if echo else []) + gen_tops
            choice["logprobs"] = logprobs
        choice["finish_reason"] = "length"
        return {
            "object": "text_completion",
            "model": self.name,
            "choices": [choice],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": len(generated)},
        }


def _handler(model: CheckpointModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model.name}]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/completions":
                self._send(404, {"error": "only /v1/completions"})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                self._send(200, model.complete(body))
            except Exception as err:  # a bad request is the client's to see
                self._send(400, {"error": f"{type(err).__name__}: {err}"})

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def serving(model: CheckpointModel) -> Iterator[str]:
    """Serve `model` on 127.0.0.1 (a free port); yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(model))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
