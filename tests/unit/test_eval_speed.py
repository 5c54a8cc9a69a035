"""The serving-speed probe: figures from timings (pure), and a real streamed run against two
test servers on 127.0.0.1 paced like a fast and a slow model."""

from __future__ import annotations

import pytest

from qmo.evaluator.speed import ProbeError, ProbeSettings, Timing, percentile, probe, summarize
from tests.support.openai_server import FakeModel, closed_port_url, serving


def test_percentiles_interpolate_between_ranks() -> None:
    values = [0.1, 0.2, 0.3, 0.4, 1.0]
    assert percentile(values, 50) == 0.3
    assert percentile(values, 95) == pytest.approx(0.88)
    assert percentile([], 50) == 0.0


def test_a_level_is_summarized_from_its_timings() -> None:
    timings = [Timing(0.0, (0.5, 0.6, 0.7)), Timing(0.0, (1.0, 1.2))]
    sample = summarize(timings, concurrency=2, wall_seconds=2.0)
    assert sample.concurrency == 2
    assert sample.requests == 2
    assert sample.ttft_p50_seconds == 0.75
    assert sample.itl_p50_seconds == pytest.approx(0.1)
    assert sample.itl_p95_seconds == pytest.approx(0.19)
    assert sample.output_tokens_per_second == 2.5  # 5 tokens over 2 s


def test_a_faster_server_measures_faster() -> None:
    settings = ProbeSettings(concurrency=4, requests=8, max_tokens=10, prompt_words=8)
    # Delays long beside a loaded machine's overhead per token (see the lm-eval speed test).
    fast = FakeModel("fp8", first_token_seconds=0.01, token_seconds=0.005)
    slow = FakeModel("bf16", first_token_seconds=0.05, token_seconds=0.025)
    with serving(fast) as fast_url, serving(slow) as slow_url:
        quick = probe(fast_url, "fp8", settings)
        sluggish = probe(slow_url, "bf16", settings)
    assert [s.concurrency for s in quick] == [1, 4]
    assert quick[1].requests == 8
    assert quick[0].ttft_p50_seconds < sluggish[0].ttft_p50_seconds
    assert quick[1].output_tokens_per_second > 2 * sluggish[1].output_tokens_per_second
    sent = fast.requests[0]
    assert (sent["stream"], sent["max_tokens"], sent["temperature"]) == (True, 10, 0)


def test_an_endpoint_that_is_down_fails_the_probe() -> None:
    with pytest.raises(ProbeError, match="streaming completion failed"):
        probe(closed_port_url(), "m", ProbeSettings(concurrency=1, requests=1, timeout=2))
