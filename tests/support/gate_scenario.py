"""Gated models on the real control plane, as the cluster tests drive them: a gated spec,
QualityReports written as an external evaluation system would, and waits on what the gate
then does. Used by the quality-gate, crash, routing, observability and serving-safety tests.
"""

from __future__ import annotations

from typing import Any

from tests.support.kube import GROUP, VERSION, ClusterHandle, is_ready, variants, wait_for
from tests.support.scenario import a_model, create, patch_spec, wait_ready

BENCHMARKS = [
    {"name": "arithmetic", "metric": "exact-match", "dataset": {"path": "benchmarks/a.jsonl"}},
    {"name": "wikitext", "metric": "perplexity", "higherIsBetter": False,
     "dataset": {"path": "benchmarks/w.jsonl"}},
]  # fmt: skip


def gated(name: str, gate: str, on_regression: str, **spec: Any) -> dict[str, Any]:
    """A gated model small enough (TP 1) to fit beside the other tests on the shared fleet."""
    quality = {"gate": gate, "onRegression": on_regression, "benchmarks": BENCHMARKS}
    engine = {"maxBatchSize": 8, "maxSeqLen": 4096}
    return a_model(name, quality=quality, engine=engine, **spec)


def report(
    cluster: ClusterHandle,
    namespace: str,
    model: str,
    variant: str,
    key: str,
    *,
    arithmetic: float = 0.80,
    wikitext: float = 10.0,
    name: str | None = None,
) -> str:
    """A QualityReport against a baseline of 0.80 accuracy and perplexity 10.0."""
    name = name or f"{model}-{variant}-{key[:8]}"
    cluster.custom().create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "qualityreports",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "QualityReport",
            "metadata": {"name": name},
            "spec": {
                "modelRef": {"name": model},
                "variant": variant,
                "cacheKey": key,
                "source": "tests",
                "results": [
                    {
                        "benchmark": "arithmetic",
                        "baselineScore": 0.80,
                        "candidateScore": arithmetic,
                    },
                    {
                        "benchmark": "wikitext",
                        "baselineScore": 10.0,
                        "candidateScore": wikitext,
                        "higherIsBetter": False,
                    },
                ],
            },
        },
    )
    return name


def report_status(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.custom().get_namespaced_custom_object(
        GROUP, VERSION, namespace, "qualityreports", name
    )
    return found.get("status") or {}


def wait_report_judged(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    judged: dict[str, Any] = wait_for(
        cluster.custom().list_namespaced_custom_object,
        lambda r: r["metadata"]["name"] == name and (r.get("status") or {}).get("state"),
        group=GROUP,
        version=VERSION,
        namespace=namespace,
        plural="qualityreports",
        describe=f"report {name} to be judged",
    )
    return dict(judged["status"])


def wait_event(cluster: ClusterHandle, namespace: str, model: str, reason: str) -> Any:
    """Events are posted right after the status is written: wait for them, do not race."""
    return wait_for(
        cluster.core().list_namespaced_event,
        lambda e: e.reason == reason and e.involved_object.name == model,
        namespace=namespace,
        describe=f"a {reason} Event on {model}",
    )


def key_of(model: dict[str, Any], variant: str) -> str:
    return str(variants(model)[variant]["cacheKey"])


def v2_after_a_good_v1(
    cluster: ClusterHandle, namespace: str, model: str, on_regression: str = "rollback"
) -> tuple[str, str]:
    """A gated bf16 + fp8 model on H100 whose v1 passed and whose v2 serves: (v1, v2) keys."""
    create(
        cluster,
        namespace,
        gated(model, "after-rollout", on_regression, precisions=["bf16", "fp8"],
              gpu={"classes": ["h100"]}),
    )  # fmt: skip
    v1_key = key_of(wait_ready(cluster, namespace, model), "h100-fp8")
    report(cluster, namespace, model, "h100-fp8", v1_key)
    cluster.wait_for_model(
        namespace, model, lambda m: variants(m)["h100-fp8"].get("lastGoodRevision") == v1_key
    )
    v2 = roll_out_v2(cluster, namespace, model)
    return v1_key, key_of(v2, "h100-fp8")


def roll_out_v2(cluster: ClusterHandle, namespace: str, model: str) -> dict[str, Any]:
    """Move the model to revision v2; return it once that spec is observed and Ready."""
    patch_spec(cluster, namespace, model, {"model": {"revision": "v2"}})
    found: dict[str, Any] = cluster.wait_for_model(
        namespace,
        model,
        lambda m: m["status"]["observedGeneration"] == m["metadata"]["generation"] and is_ready(m),
        describe="v2 to roll out",
    )
    return found
