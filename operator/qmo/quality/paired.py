"""How sure a regression is: the paired statistics of one benchmark's per-item outcomes. Pure,
standard library only (qmo-eval computes them in the eval pod; the operator turns them into an
interval at the model's confidence).

The candidate and the baseline answer the same items in the same order, so each item gives a
pair. The regression is the report's (baseline - candidate) / baseline x 100 for higher-is-
better metrics (candidate - baseline for lower-is-better ones), and its uncertainty comes from
the pairs, not from two independent samples: items both endpoints get right (or wrong) carry
no doubt, so a paired standard error is much smaller than an unpaired one.

- **Mean metrics** (accuracy, exact match, any per-item score averaged over items): the
  regression is a ratio of two means of the same items, and its standard error follows in
  closed form from the paired differences (the delta method: the variance of
  d_i - r * b_i over the items, for differences d and regression r). `paired-normal`.
- **Perplexity** (exp of summed negative log-likelihood over summed tokens, per document): a
  ratio of sums inside an exponential; its standard error is the spread of the regression over
  `BOOTSTRAP_RESAMPLES` paired resamples of the documents (the same documents for both
  endpoints in each resample), with a fixed seed. `paired-bootstrap`.

The interval at confidence c is the normal interval regression +- z * SE with z the two-sided
quantile of c; `samples_to_resolve` inverts it (SE shrinks as 1/sqrt(items)).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from qmo.api.qualityreport import PairingMethod as Method

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20261202


class PairingError(ValueError):
    """The outcomes cannot be paired (different lengths, no items, a non-finite value)."""


@dataclass(frozen=True)
class Estimate:
    """A benchmark's regression from paired outcomes, and its standard error, in percent."""

    items: int
    regression_percent: float
    standard_error_percent: float
    method: Method


def _check(baseline: Sequence[float], candidate: Sequence[float]) -> int:
    if len(baseline) != len(candidate):
        raise PairingError(
            f"{len(baseline)} baseline outcomes and {len(candidate)} candidate outcomes: "
            "the items must be the same"
        )
    if len(baseline) < 2:
        raise PairingError("at least 2 paired items are needed for a standard error")
    if not all(math.isfinite(v) for v in (*baseline, *candidate)):
        raise PairingError("every per-item outcome must be a finite number")
    return len(baseline)


def mean_metric(
    baseline: Sequence[float], candidate: Sequence[float], *, higher_is_better: bool = True
) -> Estimate:
    """Per-item scores (1/0 for right/wrong, or any score) whose mean is the metric."""
    n = _check(baseline, candidate)
    b_mean = sum(baseline) / n
    if b_mean <= 0:
        raise PairingError("the baseline's mean score must be above 0 to anchor a percentage")
    sign = 1.0 if higher_is_better else -1.0
    differences = [sign * (b - c) for b, c in zip(baseline, candidate, strict=True)]
    ratio = sum(differences) / n / b_mean
    # Linearised ratio of means: Var(r) ~ Var(d_i - r b_i) / (n b_mean^2).
    linear = [d - ratio * b for d, b in zip(differences, baseline, strict=True)]
    centre = sum(linear) / n
    variance = sum((x - centre) ** 2 for x in linear) / (n - 1)
    error = math.sqrt(variance / n) / b_mean
    return Estimate(n, ratio * 100, error * 100, Method.PAIRED_NORMAL)


@dataclass(frozen=True)
class Documents:
    """Per document: summed negative log-likelihood and scored tokens, for both endpoints."""

    baseline_nll: Sequence[float]
    baseline_tokens: Sequence[float]
    candidate_nll: Sequence[float]
    candidate_tokens: Sequence[float]

    def regression(self, indices: Sequence[int]) -> float:
        """(ppl_c - ppl_b) / ppl_b in percent, over the documents at `indices`."""
        base = sum(self.baseline_nll[i] for i in indices) / sum(
            self.baseline_tokens[i] for i in indices
        )
        cand = sum(self.candidate_nll[i] for i in indices) / sum(
            self.candidate_tokens[i] for i in indices
        )
        return math.expm1(cand - base) * 100


def perplexity(
    documents: Documents,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """Perplexity's regression and its paired-bootstrap standard error."""
    n = _check(documents.baseline_nll, documents.candidate_nll)
    counts = (*documents.baseline_tokens, *documents.candidate_tokens)
    if len(counts) != 2 * n or any(not t > 0 for t in counts):
        raise PairingError("every document needs a positive count of scored tokens")
    every = range(n)
    point = documents.regression(every)
    draw = random.Random(seed)
    spread = [documents.regression(draw.choices(every, k=n)) for _ in range(resamples)]
    centre = sum(spread) / resamples
    error = math.sqrt(sum((x - centre) ** 2 for x in spread) / (resamples - 1))
    return Estimate(n, point, error, Method.PAIRED_BOOTSTRAP)


def z_value(confidence: float) -> float:
    """The two-sided normal quantile: 1.2816 for 0.8, 1.96 for 0.95."""
    return NormalDist().inv_cdf((1 + confidence) / 2)


def interval(regression: float, error: float, confidence: float) -> tuple[float, float]:
    half = z_value(confidence) * error
    return (regression - half, regression + half)


def samples_to_resolve(
    items: int, regression: float, error: float, threshold: float, confidence: float
) -> int | None:
    """About how many items would put the interval wholly on one side of the threshold, were
    the regression what was measured; None when it sits on the threshold (no number would)."""
    distance = abs(regression - threshold)
    if distance == 0 or error == 0:
        return None
    needed = items * (z_value(confidence) * error / distance) ** 2
    return max(items + 1, math.ceil(needed)) if math.isfinite(needed) else None
