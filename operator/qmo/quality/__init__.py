"""What the operator needs to judge QualityReports: verdicts (verdict.py) and which report
counts for which revision (reports.py). Pure. The program eval Jobs run is qmo.evaluator."""
