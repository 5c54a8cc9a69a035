"""The quality gate's decisions for one variant: promote, hold as a candidate, roll back,
fall back down the precision ladder, or withdraw. Pure, like the rest of the planner.

Stateless by design: every decision follows from the spec, the judged QualityReports and the
last good revision recorded in status, so a restarted operator reaches the same decision and
a rolled-back revision is not promoted again until the spec changes or a passing report for
it arrives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from qmo.api.qualityreport import Verdict
from qmo.api.quantizedmodel import GateTiming, OnRegression, Precision, QuantizedModelSpec
from qmo.planner.capabilities import fallback_precision
from qmo.planner.plan import Action, BuildState, Observed, Phase, PlannedVariant


def _good_revision_available(variant: PlannedVariant, observed: Observed) -> str | None:
    """The last good revision, if it is not the current one and its artifact still exists."""
    last_good = observed.last_good.get(variant.name)
    if last_good is None or last_good == variant.cache_key:
        return None
    built = observed.builds.get(last_good)
    return last_good if built is not None and built.state == BuildState.SUCCEEDED else None


def apply_gate(
    spec: QuantizedModelSpec,
    variant: PlannedVariant,
    observed: Observed,
    replan: Callable[[Precision], PlannedVariant],
) -> PlannedVariant:
    """Adjust a planned variant for its quality verdict; `replan` plans another precision."""
    quality = spec.quality
    key = variant.cache_key
    ungated = quality.gate == GateTiming.OFF or variant.precision == Precision.BF16
    if ungated or key is None or variant.phase == Phase.UNSUPPORTED:
        return variant  # the BF16 baseline is what the others are judged against
    report = observed.reports.get((variant.name, key))
    variant = dataclasses.replace(variant, report=report)
    good = _good_revision_available(variant, observed)

    if report is not None and report.verdict == Verdict.REGRESSED:
        if quality.on_regression == OnRegression.IGNORE:
            return variant
        if good is not None:
            return dataclasses.replace(
                variant,
                action=Action.DEPLOY,
                serve_key=good,
                candidate=False,
                phase=Phase.ROLLED_BACK,
                reason="RolledBack",
                message=f"revision {key[:16]} {report.message}; serving the last good "
                f"revision {good[:16]}",
            )
        if quality.on_regression == OnRegression.FALLBACK:
            lower = fallback_precision(variant.precision, variant.gpu_class, spec.engine.backend)
            if lower is not None:
                fallen = replan(lower)
                return dataclasses.replace(
                    fallen,
                    superseded=((variant.name, key), *fallen.superseded),
                    fell_back_from=fallen.fell_back_from or variant.name,
                    fell_back_because=fallen.fell_back_because
                    or f"{variant.name} (revision {key[:16]}) {report.message}",
                )
        return dataclasses.replace(
            variant,
            action=Action.WITHDRAW,
            serve_key=None,
            phase=Phase.REGRESSED,
            reason="Withdrawn",
            message=f"revision {key[:16]} {report.message}; there is no good revision to "
            "return to, so the variant stops serving",
        )

    passed = report is not None and report.verdict == Verdict.PASS
    if quality.gate == GateTiming.BEFORE_TRAFFIC and not passed and variant.action == Action.DEPLOY:
        keeps = f"; revision {good[:16]} keeps serving" if good else ""
        return dataclasses.replace(
            variant,
            candidate=True,
            serve_key=good,
            phase=Phase.EVALUATING,
            reason="AwaitingReport",
            message=f"revision {key[:16]} runs as a candidate, outside the Services, until "
            f"a QualityReport passes{keeps}",
        )
    return variant
