"""Stable, DNS-safe names of the objects qmo creates, within Kubernetes' 63-character limit.

Every name that starts with the model's name starts with `dns_label(model)`: the model's own
name when it is a valid Service name, else a valid one made from it (see qmo.dnsnames).
"""

from __future__ import annotations

from qmo.dnsnames import bounded, digest, dns_label, is_dns1123_label
from qmo.planner.cachekey import short_key

__all__ = [
    "artifact_record",
    "benchmarks_config_map",
    "bounded",
    "build_job",
    "candidate_deployment",
    "candidate_service",
    "dataset_volume",
    "eval_job",
    "main_service",
    "variant_deployment",
    "variant_service",
]


def variant_deployment(model: str, variant: str) -> str:
    return bounded(dns_label(model), variant)


def variant_service(model: str, variant: str) -> str:
    return bounded(dns_label(model), variant)


def candidate_deployment(model: str, variant: str) -> str:
    return bounded(dns_label(model), variant, "candidate")


def candidate_service(model: str, variant: str) -> str:
    return bounded(dns_label(model), variant, "candidate")


def eval_job(
    model: str, variant: str, cache_key: str, quality_key: str = "", attempt: str = ""
) -> str:
    """One eval Job per revision, evaluation spec and attempt: editing what is evaluated
    (benchmarks, speed) or asking for more samples names a new Job, so a finished Job of the
    old ask never blocks the next."""
    return bounded(
        "qmo-eval", dns_label(model), variant, short_key(cache_key), quality_key, attempt
    )


def eval_network_policy(model: str) -> str:
    return bounded("qmo-eval", dns_label(model))


def main_service(model: str) -> str:
    return dns_label(model)


def http_route(model: str) -> str:
    """An HTTPRoute name is a DNS subdomain, as the model's own name is."""
    return model


def benchmarks_config_map(model: str) -> str:
    return bounded("qmo-eval", dns_label(model))


def dataset_volume(config_map: str) -> str:
    """The eval pod's volume of a ConfigMap: a DNS-1123 label, which a ConfigMap's name (a DNS
    subdomain such as gsm8k.v2) need not be. A name that is not one gets its dots replaced and
    a hash of the ConfigMap's name, which keeps gsm8k.v2 and gsm8k-v2 apart; a valid one is
    kept as it was, so the eval Jobs of existing models keep their spec."""
    name = bounded("dataset", config_map)
    if is_dns1123_label(name):
        return name
    return bounded("dataset", config_map.replace(".", "-"), digest(config_map))


def build_job(variant: str, cache_key: str) -> str:
    """Named by content: every model that needs this artifact converges on one Job."""
    return bounded("qmo-build", variant, short_key(cache_key))


def artifact_record(cache_key: str) -> str:
    return bounded("qmo-artifact", short_key(cache_key))
