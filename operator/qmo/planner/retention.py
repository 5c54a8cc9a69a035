"""What serves keeps serving until its replacement does (docs/reliability.md). Pure.

A variant the spec no longer asks for, but that served a good revision (its status keeps a
last good revision), stays in the plan as `KeptUntilReplaced` while its GPU class is still
selected and any variant planned on that class does not yet serve a revision that passed
(or serves ungated). Then it is no longer planned, and its Deployment and Service go.
Typical cause: a new model revision after a fallback (int4 regressed, int8 serves; the new
revision plans int4 again, and int8 serves until int4 passes, or falls back to it again).
"""

from __future__ import annotations

from qmo.api.quantizedmodel import Precision, QuantizedModelSpec
from qmo.gpu import GpuClass
from qmo.planner import gate
from qmo.planner.decision import KeptUntilReplaced
from qmo.planner.observed import Observed, Seen
from qmo.planner.revisions import variant_serves
from qmo.planner.types import PlannedVariant, VariantTarget
from qmo.vocabulary import BuildState


def settled(spec: QuantizedModelSpec, variant: PlannedVariant) -> bool:
    """It serves its current revision with every replica ready, and passed if gated."""
    if variant.cache_key is None or variant.serve_key != variant.cache_key:
        return False
    if not variant_serves(variant, spec.serving.wanted_replicas):
        return False
    report = variant.report
    return not gate.gated(spec, variant.target) or (report is not None and report.passed)


def kept_until_replaced(
    spec: QuantizedModelSpec,
    classes: list[GpuClass],
    planned: list[PlannedVariant],
    observed: Observed,
) -> list[PlannedVariant]:
    """The variants that served and must go on serving until their replacements settle."""
    names = {v.name for v in planned}
    by_class = {gpu.name: gpu for gpu in classes}
    kept = []
    for name, (class_name, precision) in sorted(observed.served.items()):
        gpu = by_class.get(class_name)
        key = observed.last_good.get(name)
        if name in names or gpu is None or key is None:
            continue
        replacements = [v for v in planned if v.gpu_class.name == class_name and not v.reference]
        seen = observed.of(name, key)
        built = seen.build is not None and seen.build.state == BuildState.SUCCEEDED
        if not built or seen.deployment is None or seen.deployment.revision != key:
            continue  # nothing of it is left to keep
        if replacements and all(settled(spec, v) for v in replacements):
            continue
        kept_precision = Precision(precision)
        target = VariantTarget(name, gpu, kept_precision, kept_precision, kv_cache_dtype="")
        decision = KeptUntilReplaced(key, tuple(v.name for v in replacements))
        kept.append(PlannedVariant(target, decision, Seen(seen.build, seen.deployment)))
    return kept
