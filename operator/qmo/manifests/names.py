"""Stable, DNS-safe names of the objects qmo creates, within Kubernetes' 63-character limit."""

from __future__ import annotations

import hashlib

from qmo.planner.cachekey import short_key

MAX_NAME = 63


def bounded(*parts: str) -> str:
    """Join parts with '-'; past 63 characters, cut and add a hash of the full name."""
    full = "-".join(p for p in parts if p)
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: MAX_NAME - 9].rstrip('-')}-{digest}"


def variant_deployment(model: str, variant: str) -> str:
    return bounded(model, variant)


def variant_service(model: str, variant: str) -> str:
    return bounded(model, variant)


def candidate_deployment(model: str, variant: str) -> str:
    return bounded(model, variant, "candidate")


def candidate_service(model: str, variant: str) -> str:
    return bounded(model, variant, "candidate")


def eval_job(model: str, variant: str, cache_key: str) -> str:
    return bounded("qmo-eval", model, variant, short_key(cache_key))


def main_service(model: str) -> str:
    return bounded(model)


def build_job(variant: str, cache_key: str) -> str:
    """Named by content: every model that needs this artifact converges on one Job."""
    return bounded("qmo-build", variant, short_key(cache_key))


def artifact_record(cache_key: str) -> str:
    return bounded("qmo-artifact", short_key(cache_key))
