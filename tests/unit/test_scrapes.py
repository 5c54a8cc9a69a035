"""The scrape-to-promtool bridge the cluster test relies on can fail: an alert expression
that stays quiet is told apart from one that fires."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.promtool import promtool_path
from tests.support.scrapes import expressions_over, samples

pytestmark = pytest.mark.skipif(promtool_path() is None, reason="promtool not built")

FAILED = 'qmo_builds_finished_total{gpu_class="h100",outcome="failed",precision="fp8"}'
BEFORE = f"# TYPE qmo_builds_finished_total counter\n{FAILED} 0\nqmo_leader 1\n"
AFTER = f"# TYPE qmo_builds_finished_total counter\n{FAILED} 1\nqmo_leader 1\n"


def test_a_failure_between_two_scrapes_fires_the_alert_expression(tmp_path: Path) -> None:
    result = expressions_over(
        samples(BEFORE), samples(AFTER), {"QmoBuildsFailing": (False, True)}, tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    result = expressions_over(
        samples(BEFORE), samples(AFTER), {"QmoBuildsFailing": (False, False)}, tmp_path
    )
    assert result.returncode != 0


def test_a_series_born_after_the_first_scrape_is_missing_before_it(tmp_path: Path) -> None:
    result = expressions_over(
        samples("qmo_leader 1\n"), samples(AFTER), {"QmoBuildsFailing": (False, True)}, tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
