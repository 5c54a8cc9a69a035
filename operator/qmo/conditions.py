"""Condition types, reasons and the one function that sets a condition.

Follows the Kubernetes API conventions (metav1.Condition): lastTransitionTime changes only when
the status changes, and every condition records the generation it was computed from.
"""

from __future__ import annotations

from datetime import datetime

from qmo.api.base import Condition, ConditionStatus
from qmo.vocabulary import ConditionType

CONDITION_TYPES = tuple(ConditionType)  # the order status lists them in


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """A new list with `type_` set; keeps lastTransitionTime when the status is unchanged."""
    previous = next((c for c in conditions if c.type == type_), None)
    transitioned = previous is None or previous.status != status
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=now
        if transitioned or previous is None
        else previous.last_transition_time,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, updated], key=lambda c: _order(c.type))


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def _order(type_: str) -> int:
    return CONDITION_TYPES.index(type_) if type_ in CONDITION_TYPES else len(CONDITION_TYPES)
