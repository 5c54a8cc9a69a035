"""The serving-speed probe: streaming completions at concurrency 1 and at a loaded
concurrency, timed per token. Time to first token, inter-token latency (p50, p95) and output
tokens per second over everything in flight, for one endpoint.

A small streaming client rather than a load generator: NVIDIA's aiperf reports the same
figures but pins versions of kopf and kubernetes-asyncio that the operator's own pins refuse,
inference-perf needs Python 3.12 and guidellm pulls in torch; this is one module on the
standard library, and the numbers it reports are defined here.

Every request sends the same prompt of about `prompt_words` words and asks for `max_tokens`
tokens at temperature 0; a streamed chunk with text counts as one token (trtllm-serve streams
one token per chunk).
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from qmo.api.qualityreport import SpeedSample

Clock = Callable[[], float]


class ProbeError(RuntimeError):
    """The endpoint did not stream an answer."""


@dataclass(frozen=True)
class ProbeSettings:
    concurrency: int = 8
    requests: int = 32
    max_tokens: int = 128
    prompt_words: int = 256
    timeout: float = 120.0


@dataclass(frozen=True)
class Timing:
    """One streamed request: when it started and when each token arrived (clock seconds)."""

    started: float
    tokens: tuple[float, ...]

    @property
    def ttft(self) -> float:
        return self.tokens[0] - self.started

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.tokens, self.tokens[1:], strict=False)]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated between closest ranks."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(timings: Sequence[Timing], concurrency: int, wall_seconds: float) -> SpeedSample:
    """The figures of one concurrency level. Pure."""
    ttfts = [t.ttft for t in timings]
    gaps = [g for t in timings for g in t.gaps]
    tokens = sum(len(t.tokens) for t in timings)
    return SpeedSample(
        concurrency=concurrency,
        requests=len(timings),
        ttft_p50_seconds=round(percentile(ttfts, 50), 6),
        ttft_p95_seconds=round(percentile(ttfts, 95), 6),
        itl_p50_seconds=round(percentile(gaps, 50), 6),
        itl_p95_seconds=round(percentile(gaps, 95), 6),
        output_tokens_per_second=round(tokens / wall_seconds, 3) if wall_seconds > 0 else 0.0,
    )


def _prompt(words: int) -> str:
    text = " ".join(f"word{i % 97}" for i in range(words))
    return f"Continue this list without stopping: {text}"


def _chunks(response: object) -> Iterator[str]:
    """The text of each server-sent event of a streamed completion."""
    for raw in response:  # type: ignore[attr-defined]
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        for choice in event.get("choices") or []:
            text = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
            if text:
                yield text


def stream_once(
    url: str, model: str, settings: ProbeSettings, clock: Clock = time.perf_counter
) -> Timing:
    body = json.dumps(
        {
            "model": model,
            "prompt": _prompt(settings.prompt_words),
            "max_tokens": settings.max_tokens,
            "temperature": 0,
            "stream": True,
        }
    ).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/completions",
        data=body,
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    started = clock()
    tokens = []
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:
            for _ in _chunks(response):
                tokens.append(clock())
    except (OSError, ValueError) as err:
        raise ProbeError(f"{url}: streaming completion failed: {err}") from err
    if not tokens:
        raise ProbeError(f"{url}: the streamed completion had no text")
    return Timing(started, tuple(tokens))


def probe(
    url: str, model: str, settings: ProbeSettings, clock: Clock = time.perf_counter
) -> list[SpeedSample]:
    """Speed at concurrency 1 and at settings.concurrency (once, when that is 1)."""
    samples = []
    for concurrency in sorted({1, settings.concurrency}):
        count = max(settings.requests, concurrency)
        started = clock()
        with ThreadPoolExecutor(concurrency, thread_name_prefix="speed") as pool:
            timings = list(
                pool.map(lambda _: stream_once(url, model, settings, clock), range(count))
            )
        samples.append(summarize(timings, concurrency, clock() - started))
    return samples
