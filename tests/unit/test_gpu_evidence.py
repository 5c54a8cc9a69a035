"""The GPU run's committed per-item outcomes (e2e/gpu/results/h200-uncertainty/) judged again by
today's verdict code: the evidence docs/quality.md quotes still holds, and each of the three
verdicts comes from real scores (issue 23)."""

from __future__ import annotations

from pathlib import Path

from e2e.gpu import uncertainty_h200

RESULTS = Path(__file__).parents[2] / "e2e" / "gpu" / "results" / "h200-uncertainty"


def rows_of(scale: int) -> dict[str, dict[str, object]]:
    return rows_of_dir(RESULTS / f"scale-{scale}")


def rows_of_dir(directory: Path) -> dict[str, dict[str, object]]:
    found = uncertainty_h200.load_items(directory)
    baseline = found.pop("bf16")
    return {n: uncertainty_h200.judged_row(n, items, baseline) for n, items in found.items()}


def test_the_sweep_holds_pass_inconclusive_and_regressed_from_real_scores() -> None:
    rows = rows_of(32)
    verdicts = {name: row["verdict"] for name, row in rows.items()}
    assert {verdicts["fp8"], verdicts["int8"], verdicts["int4-awq"]} == {"Pass"}
    assert verdicts["int8-no-smoothquant.modelopt"] == "Inconclusive"
    assert verdicts["w8a7.modelopt"] == "Regressed"
    # Near-zero regressions are never rolled back on 200-item samples; the point estimate
    # alone rolls back the borderline W8A8 far more often than the interval does.
    for name in ("fp8", "int8", "int4-awq"):
        assert rows[name]["samples_200"]["Regressed"] == 0  # type: ignore[index]
    w8a8 = rows["int8-no-smoothquant"]["samples_200"]
    assert w8a8["point_regressed"] > 5 * max(1, w8a8["Regressed"])  # type: ignore[index]


def test_the_served_artifact_scored_through_qmo_eval_is_regressed() -> None:
    rows = rows_of(128)
    assert rows["int8-no-smoothquant"]["verdict"] == "Regressed"
    assert rows["int8"]["verdict"] == "Pass"
    assert (RESULTS / "scale-128" / "served-report.yaml").is_file()
    _, served = uncertainty_h200.judgements(RESULTS / "scale-128")
    assert served["judgement"]["verdict"] == "Regressed"
    assert all(d["method"] == "paired-normal" or d["method"] == "paired-bootstrap"
               for d in served["judgement"]["deltas"])  # fmt: skip


def test_nvfp4_beside_fp8_passes_the_gate_with_a_wider_loss() -> None:
    rows = rows_of_dir(RESULTS / "nvfp4")
    assert {rows[n]["verdict"] for n in ("fp8", "nvfp4.modelopt", "nvfp4-awq-lite.modelopt")} == {
        "Pass"
    }
    loss = {n: {d["benchmark"]: d["deltaPercent"] for d in rows[n]["deltas"]} for n in rows}
    assert loss["nvfp4.modelopt"]["markov_ppl"] > loss["fp8"]["markov_ppl"]
    assert loss["nvfp4-awq-lite.modelopt"]["markov_ppl"] < loss["nvfp4.modelopt"]["markov_ppl"]
