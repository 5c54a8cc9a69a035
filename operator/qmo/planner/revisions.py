"""The last good revision of a variant: what it is, where it is remembered, and what a
regression rolls back to. One module, so "why was this rolled back, and to what?" is
answered here. Pure.

A revision is a cache key. It becomes the variant's last good revision when it serves with
every replica ready and, if gated, its report passed (or it is the BF16 baseline). The model's
status remembers it; where status has none (a lost status, a new operator), the newest
revision whose newest report passed stands in.
"""

from __future__ import annotations

from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import QuantizedModelStatus, VariantStatus
from qmo.planner.types import Observed, PlannedVariant
from qmo.vocabulary import Action, BuildState, QualityState

# Quality in status that lets a serving revision count as good.
GOOD_QUALITY = {Verdict.PASS.value, QualityState.BASELINE.value, QualityState.REFERENCE.value}


def remembered(previous: QuantizedModelStatus | None) -> dict[str, str]:
    """Last good revisions by variant, as the model's status records them."""
    if previous is None:
        return {}
    return {v.name: v.last_good_revision for v in previous.variants if v.last_good_revision}


def served_before(previous: QuantizedModelStatus | None) -> dict[str, tuple[str, str]]:
    """(GPU class, precision) of each served variant the status lists with a last good
    revision (a temporary BF16 reference served evaluations only)."""
    if previous is None:
        return {}
    return {
        v.name: (v.gpu_class, v.precision)
        for v in previous.variants
        if v.last_good_revision and v.quality.verdict != QualityState.REFERENCE
    }


def known_good(remembered_in_status: dict[str, str], passing: dict[str, str]) -> dict[str, str]:
    """Status wins; the newest passing report stands in for a variant status does not know."""
    return {**passing, **remembered_in_status}


def rollback_target(variant: PlannedVariant, observed: Observed) -> str | None:
    """The revision a regression of `variant` rolls back to: its last good one, if that is
    not the regressed revision itself and its artifact still exists."""
    last_good = observed.last_good.get(variant.name)
    if last_good is None or last_good == variant.cache_key:
        return None
    built = observed.builds.get(last_good)
    return last_good if built is not None and built.state == BuildState.SUCCEEDED else None


def takes_traffic(variant: PlannedVariant) -> bool:
    """Its stable Deployment has a ready replica, at whatever revision (the last one serves
    while a new revision builds or rolls out), and it is not being withdrawn."""
    deployment = variant.deployment
    if deployment is None or deployment.ready_replicas == 0:
        return False
    return variant.action != Action.WITHDRAW


def variant_serves(variant: PlannedVariant, replicas: int) -> bool:
    """Its stable Deployment runs the revision it should, with every replica ready."""
    deployment = variant.deployment
    return (
        variant.serve_key is not None
        and deployment is not None
        and deployment.revision == variant.serve_key
        and deployment.ready_replicas >= replicas
        and deployment.updated_replicas >= replicas
    )


def last_good_after(
    variant: PlannedVariant,
    previous: VariantStatus | None,
    good_quality: bool,
    *,
    gated: bool,
    replicas: int,
) -> str | None:
    """The last good revision once this reconcile is done: the current revision if it now
    serves and its quality is good (GOOD_QUALITY, or an Inconclusive counted as passed), else
    what was remembered."""
    last_good = previous.last_good_revision if previous else None
    at_current = variant.serve_key == variant.cache_key and variant_serves(variant, replicas)
    if at_current and (not gated or good_quality):
        return variant.deployment.revision if variant.deployment else None
    return last_good
