"""One vocabulary: docs/reasons.md, the metrics and the code name the same words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qmo import metrics
from qmo.vocabulary import ConditionType, Phase, Reason

DOC = Path(__file__).resolve().parents[2] / "docs" / "reasons.md"


def documented(section: str) -> list[str]:
    """The first column of the table under `## section`."""
    text = DOC.read_text(encoding="utf-8").split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Za-z]+)` \|", text, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("section", "enum"),
    [
        ("Conditions of a QuantizedModel", ConditionType),
        ("Phases of a variant", Phase),
        ("Reasons", Reason),
    ],
    ids=["condition types", "phases", "reasons"],
)
def test_the_docs_list_exactly_the_words_the_code_uses(section: str, enum: type) -> None:
    words = documented(section)
    assert len(words) == len(set(words)), "a word is documented twice"
    assert sorted(words) == sorted(member.value for member in enum)  # type: ignore[attr-defined]


def test_the_variants_metric_covers_every_phase() -> None:
    assert set(metrics.PHASES) == {phase.value for phase in Phase}
    assert "Regressed" in metrics.PHASES


def test_a_deleted_models_rollback_series_go_with_it() -> None:
    from prometheus_client import REGISTRY

    def series(model: str) -> list[object]:
        return [
            s
            for metric in REGISTRY.collect()
            if metric.name == "qmo_rollbacks"
            for s in metric.samples
            if s.labels.get("model") == model
        ]

    metrics.count_rollback("ns", "gone", "h100-fp8", "rollback")
    metrics.count_rollback("ns", "kept", "h100-fp8", "fallback")
    assert series("gone")
    metrics.forget_model("ns", "gone")
    assert series("gone") == []
    assert series("kept"), "other models keep theirs"
