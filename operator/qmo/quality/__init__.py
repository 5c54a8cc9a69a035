"""The quality gate: pure verdicts on QualityReports (verdict.py) and the evaluator that runs
in eval Jobs (evaluator.py, `qmo-eval`)."""
