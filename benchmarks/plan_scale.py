"""How long one reconcile's pure work takes as the fleet and the model grow.

Times, per QuantizedModel, what a worker does besides API calls: GPU inventory from N nodes,
the plan, the status, the Events and every manifest. Prints one line per size.

    .venv/bin/python -m benchmarks.plan_scale [--repeat 20]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from datetime import UTC, datetime

from qmo.api.quantizedmodel import QuantizedModelSpec
from qmo.fleet import Fleet, build_nodes
from qmo.gpu import inventory_from_nodes
from qmo.manifests import names
from qmo.manifests.build import build_job
from qmo.manifests.labels import Owner
from qmo.manifests.serving import build_deployment, build_variant_service
from qmo.planner.decisions import decisions
from qmo.planner.plan import plan_model
from qmo.planner.status import Names, build_status
from qmo.planner.types import Observed

PRODUCTS = [
    ("a100", "NVIDIA-A100-SXM4-80GB", "ampere", "8.0", 81920),
    ("h100", "NVIDIA-H100-80GB-HBM3", "hopper", "9.0", 81559),
    ("l40s", "NVIDIA-L40S", "ada-lovelace", "8.9", 46068),
    ("h200", "NVIDIA-H200", "hopper", "9.0", 143771),
    ("b200", "NVIDIA-B200", "blackwell", "10.0", 183359),
    ("a10g", "NVIDIA-A10G", "ampere", "8.6", 23028),
]


def fleet(nodes: int, classes: int) -> Fleet:
    per_class = max(1, nodes // classes)
    return Fleet.model_validate(
        {
            "nodes": [
                {"name": name, "count": per_class, "product": product, "family": family,
                 "computeCapability": cc, "memoryMiB": memory, "gpus": 8}
                for name, product, family, cc, memory in PRODUCTS[:classes]
            ]
        }
    )  # fmt: skip


def spec(precisions: list[str]) -> QuantizedModelSpec:
    return QuantizedModelSpec.model_validate(
        {
            "model": {
                "source": "hf://meta-llama/Llama-3.1-70B-Instruct",
                "revision": "v1",
                "size": {"parametersBillions": 70.6, "numLayers": 80,
                         "numKeyValueHeads": 8, "headDim": 128},
            },
            "precisions": precisions,
            "quality": {"gate": "off"},
        }
    )  # fmt: skip


def one_reconcile(nodes: list[dict[str, object]], model: QuantizedModelSpec) -> int:
    inventory = inventory_from_nodes(nodes)  # type: ignore[arg-type]
    plan = plan_model(model, Observed(inventory))
    owner = Owner("bench", "default", "uid")
    objects = 0
    for variant in plan.variants:
        if variant.cache_key is None:
            continue
        build_job(model, variant, namespace="default", image="builder:1")
        build_deployment(model, variant, owner, key=variant.cache_key)
        build_variant_service(model, variant, owner)
        objects += 3
    variant_names = {
        v.name: Names(
            names.variant_deployment("bench", v.name), names.variant_service("bench", v.name), None
        )
        for v in plan.variants
    }
    status = build_status(
        model, plan, inventory, variant_names, None,
        generation=1, main_service="bench", now=datetime.now(UTC),
    )  # fmt: skip
    decisions(plan, status, spec_changed=False)
    return objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"{'nodes':>6} {'classes':>7} {'precisions':>10} {'objects':>7} "
          f"{'median ms':>10} {'p90 ms':>8}")  # fmt: skip
    for nodes, classes, precisions in [
        (5, 3, ["auto"]),
        (100, 3, ["auto"]),
        (500, 6, ["auto"]),
        (500, 6, ["bf16", "fp8", "int8", "int4-awq"]),
        (2000, 6, ["bf16", "fp8", "int8", "int4-awq", "int4-gptq"]),
    ]:
        node_objects = build_nodes(fleet(nodes, classes))
        for node in node_objects:
            node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        model = spec(precisions)
        samples = []
        objects = 0
        for _ in range(args.repeat):
            started = time.perf_counter()
            objects = one_reconcile(node_objects, model)  # type: ignore[arg-type]
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        print(
            f"{len(node_objects):>6} {classes:>7} {len(precisions):>10} {objects:>7} "
            f"{statistics.median(samples):>10.2f} {samples[int(len(samples) * 0.9) - 1]:>8.2f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
