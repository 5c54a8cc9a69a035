"""The report behind `qmo-eval import-lm-eval`: two lm-evaluation-harness results files
(baseline, candidate) read from disk and built into one QualityReport.

Called by `cli.import_lm_eval`, which writes the report and turns errors into exit codes.
lm_eval_import.py does the pure part (which tasks, which metric, which direction); report.py
builds the report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qmo.api.qualityreport import QualityReport
from qmo.evaluator import lm_eval_import
from qmo.evaluator.benchmarks import InputError
from qmo.evaluator.report import build_report


def report_from_files(
    baseline_results: Path,
    candidate_results: Path,
    tasks: Sequence[str],
    *,
    model: str,
    variant: str,
    cache_key: str,
    namespace: str | None,
    baseline_variant: str | None,
) -> QualityReport:
    """The report of the selected tasks (TASK[:METRIC][=BENCHMARK]; none: every top-level task
    in both files). Raises InputError for a file that cannot be read or a report the API would
    refuse, and lm_eval_import.LmEvalError for what the files hold."""
    try:
        baseline = lm_eval_import.read_results(_read_json(baseline_results), str(baseline_results))
        candidate = lm_eval_import.read_results(
            _read_json(candidate_results), str(candidate_results)
        )
        selections = [lm_eval_import.parse_selection(t) for t in tasks]
        return build_report(
            model=model,
            variant=variant,
            cache_key=cache_key,
            namespace=namespace,
            baseline_variant=baseline_variant,
            results=lm_eval_import.import_results(baseline, candidate, selections),
            source=lm_eval_import.SOURCE,
        )
    except ValidationError as err:
        raise InputError(f"the report is invalid: {err}") from err


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError(f"{path}: no such file") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read JSON: {err}") from err
