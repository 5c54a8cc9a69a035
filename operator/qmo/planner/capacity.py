"""How much an autoscaled model's default route sends to each GPU class. Pure.

When the default precision serves on several classes, the default rule of the HTTPRoute goes
to each variant's Service with a weight in proportion to its capacity: ready replicas times
tokens/s per replica. Tokens/s per replica is what the variant's QualityReport measured (the
speed probe's output tokens/s at its highest concurrency), when every variant has one;
otherwise an estimate for all of them, from the class's memory bandwidth and the bytes per
weight of the precision (decoding reads every weight once per token), which only compares
variants of one model. A class at its bound stops adding replicas, so its share falls as the
others grow: the load spills over, and comes back as replicas do. A variant judged regressed
gets no weight while another can take its traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmo.planner.memory import WEIGHT_BYTES
from qmo.planner.types import PlannedVariant

# Memory bandwidth per GPU, GB/s (the vendors' published figures; SXM parts where both exist).
BANDWIDTH_GBPS = {
    "b200": 8000.0,
    "h200": 4800.0,
    "h100": 3350.0,
    "gh200": 4000.0,
    "a100-80gb": 2039.0,
    "a100-40gb": 1555.0,
    "a30": 933.0,
    "a10": 600.0,
    "l40s": 864.0,
    "l40": 864.0,
    "l4": 300.0,
}
DEFAULT_BANDWIDTH_GBPS = 1000.0
MAX_WEIGHT = 1000  # the largest share; the Gateway API allows up to 1,000,000


@dataclass(frozen=True)
class Capacity:
    """Tokens/s of one replica: measured by a QualityReport, or an estimate in relative units."""

    tokens_per_second: float
    measured: bool


def estimated(variant: PlannedVariant) -> Capacity:
    bandwidth = BANDWIDTH_GBPS.get(variant.gpu_class.name, DEFAULT_BANDWIDTH_GBPS)
    gpus = variant.tensor_parallel or 1
    return Capacity(bandwidth * gpus / WEIGHT_BYTES.get(variant.precision, 2.0), measured=False)


def per_replica(variants: list[PlannedVariant]) -> dict[str, Capacity]:
    """Each variant's capacity per replica, all measured or all estimated."""
    measured = {
        v.name: v.seen.report.tokens_per_second if v.seen.report else None for v in variants
    }
    if variants and all(t is not None and t > 0 for t in measured.values()):
        return {name: Capacity(float(t or 0), measured=True) for name, t in measured.items()}
    return {v.name: estimated(v) for v in variants}


def route_weights(
    variants: list[PlannedVariant], capacities: dict[str, Capacity]
) -> dict[str, int]:
    """Backend weights of the default rule, by variant name (0: no traffic), from each
    variant's capacity per replica (`per_replica`)."""
    good = [v for v in variants if not v.decision.regressed] or variants
    raw = {
        v.name: (v.deployment.ready_replicas if v.deployment else 0)
        * capacities[v.name].tokens_per_second
        for v in good
    }
    top = max(raw.values(), default=0.0)
    if top <= 0:
        # Nothing ready anywhere: equal weights, so the gateway answers 503 rather than 500.
        return {v.name: 1 for v in variants}
    return {
        v.name: (max(1, round(MAX_WEIGHT * raw[v.name] / top)) if raw.get(v.name) else 0)
        for v in variants
    }
