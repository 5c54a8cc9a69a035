"""The qmo API: pydantic models of the QuantizedModel and QualityReport resources.

The single source of the CRD YAML (see `qmo.api.crd`). Imports neither kopf nor kubernetes.
"""

from qmo.api.base import API_VERSION, GROUP, VERSION, Condition, ConditionStatus, RuleViolation
from qmo.api.qualityreport import (
    BenchmarkResult,
    QualityReport,
    QualityReportSpec,
    QualityReportStatus,
    ReportState,
    Verdict,
)
from qmo.api.quantizedmodel import (
    EngineBackend,
    GateTiming,
    KvCacheDtype,
    ModelFormat,
    OnRegression,
    Precision,
    QuantizedModel,
    QuantizedModelSpec,
    QuantizedModelStatus,
    VariantStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "BenchmarkResult",
    "Condition",
    "ConditionStatus",
    "EngineBackend",
    "GateTiming",
    "KvCacheDtype",
    "ModelFormat",
    "OnRegression",
    "Precision",
    "QualityReport",
    "QualityReportSpec",
    "QualityReportStatus",
    "QuantizedModel",
    "QuantizedModelSpec",
    "QuantizedModelStatus",
    "ReportState",
    "RuleViolation",
    "VariantStatus",
    "Verdict",
]
