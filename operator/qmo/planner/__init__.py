"""Pure planning: QuantizedModel spec + observed cluster -> variants, cache keys, status.

Imports neither kopf nor kubernetes (checked by import-linter); unit-tested as functions.
"""

from qmo.planner.plan import (
    Action,
    BuildObservation,
    BuildState,
    DeploymentObservation,
    Observed,
    Phase,
    Plan,
    PlannedVariant,
    plan_model,
)

__all__ = [
    "Action",
    "BuildObservation",
    "BuildState",
    "DeploymentObservation",
    "Observed",
    "Phase",
    "Plan",
    "PlannedVariant",
    "plan_model",
]
