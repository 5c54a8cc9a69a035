"""`qmo plan`: the plan for a manifest, as text for reviewers of GitOps pull requests.

Pure: formats a Plan; reading nodes from a file or a cluster is the CLI's job.
"""

from __future__ import annotations

from typing import Any

from qmo.api.quantizedmodel import QuantizedModel, QuantizedModelSpec, ScalingEngine
from qmo.gpu import GpuInventory
from qmo.manifests import names
from qmo.planner.cachekey import short_key
from qmo.planner.events import describe_choice
from qmo.planner.scaling import scaling_range
from qmo.planner.types import Plan, PlannedVariant


def _row(variant: PlannedVariant) -> list[str]:
    return [
        variant.name,
        variant.precision.value,
        variant.kv_cache_dtype,
        str(variant.tensor_parallel or "-"),
        f"{variant.memory_per_gpu_gib}" if variant.memory_per_gpu_gib is not None else "-",
        variant.action.value,
        short_key(variant.cache_key) if variant.cache_key else "-",
    ]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def autoscaling_range(spec: QuantizedModelSpec, variant: PlannedVariant) -> str:
    """The range a variant's scaler gets: as planned from the cluster when it serves, else from
    its GPU class alone (before it serves, with nothing else on the class)."""
    if variant.scaling is not None:
        weight = variant.scaling.route_weight
        share = "" if weight is None else f", default-route weight {weight}"
        return f"{variant.scaling.engine.value}, {variant.scaling.why}{share}"
    alone = scaling_range(
        spec,
        ScalingEngine.HPA,
        gpus_per_replica=variant.tensor_parallel or 1,
        total_gpus=variant.gpu_class.total_gpus,
        gpus_held=0,
        running=0,
    )
    scaling = spec.serving.autoscaling
    assert scaling is not None
    return (
        f"{alone.why} on {variant.gpu_class.total_gpus} GPU(s) of {variant.gpu_class.name} "
        f"(before it serves; GPUs other variants hold lower it), on {scaling.metric.value} "
        f"at {scaling.per_replica_target:g} per replica, by {scaling.engine.value}"
    )


def render_plan(model: QuantizedModel, inventory: GpuInventory, plan: Plan) -> str:
    spec = model.spec
    meta = model.metadata
    name = f"{meta.get('namespace', 'default')}/{meta.get('name', '<unnamed>')}"
    lines = [
        f"QuantizedModel {name}: precisions {', '.join(p.value for p in spec.precisions)}, "
        f"kvCacheDtype {spec.kv_cache_dtype.value}, backend {spec.engine.backend.value}",
        "",
        "GPU classes:",
    ]
    if not inventory.classes:
        lines.append("  none")
    for gpu in inventory.classes:
        lines.append(
            f"  {gpu.name}: {gpu.product}, compute capability {gpu.compute_capability}, "
            f"{gpu.memory_mib} MiB, {len(gpu.nodes)} node(s), {gpu.total_gpus} GPU(s)"
        )
    for unknown in inventory.unknown:
        lines.append(f"  unknown: node {unknown.node} ({unknown.product}): {unknown.reason}")
    lines += ["", "Variants:"]
    if plan.variants:
        header = ["VARIANT", "PRECISION", "KV", "TP", "GIB/GPU", "ACTION", "CACHE KEY"]
        lines += ["  " + line for line in _table([header, *(_row(v) for v in plan.variants)])]
        lines += ["", "Why:"]
        for variant in plan.variants:
            lines.append(f"  {describe_choice(variant)}")
            lines.append(f"    -> {variant.action.value}: {variant.reason}: {variant.message}")
    else:
        lines.append("  none")
    if spec.serving.autoscaling is not None:
        lines += ["", "Autoscaling:"]
        lines += [
            f"  {v.name}: {autoscaling_range(spec, v)}" for v in plan.variants if not v.reference
        ]
    main = (
        "every variant (precisions: auto)"
        if plan.main_precision is None
        else f"{plan.main_precision.value} ({', '.join(plan.main_variants) or 'no variant'})"
    )
    lines += ["", f"Main Service {names.main_service(str(meta.get('name', '')))}: {main}"]
    if plan.notes:
        lines += ["", "Notes:"]
        lines += [f"  {note.reason}: {note.message}" for note in plan.notes]
    return "\n".join(lines) + "\n"


def plan_as_data(model: QuantizedModel, plan: Plan) -> dict[str, Any]:
    """The plan as data, for `qmo plan -o json|yaml`."""
    return {
        "model": model.metadata.get("name"),
        "mainService": {
            "name": names.main_service(str(model.metadata.get("name", ""))),
            "precision": plan.main_precision.value if plan.main_precision else "all",
            "variants": list(plan.main_variants),
        },
        "variants": [
            {
                "name": v.name,
                "gpuClass": v.gpu_class.name,
                "product": v.gpu_class.product,
                "computeCapability": str(v.gpu_class.compute_capability),
                "precision": v.precision.value,
                "requestedPrecision": v.requested_precision.value,
                "kvCacheDtype": v.kv_cache_dtype,
                "tensorParallel": v.tensor_parallel,
                "memoryPerGpuGiB": v.memory_per_gpu_gib,
                "cacheKey": v.cache_key,
                "action": v.action.value,
                "reason": v.reason,
                "message": v.message,
                "why": describe_choice(v),
                **(
                    {"autoscaling": autoscaling_range(model.spec, v)}
                    if model.spec.serving.autoscaling is not None and not v.reference
                    else {}
                ),
            }
            for v in plan.variants
        ],
        "notes": [{"reason": n.reason, "message": n.message} for n in plan.notes],
    }
