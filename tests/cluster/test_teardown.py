"""Pytest's teardown stops the control plane on a failed test and on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.cluster import LocalCluster
from tests.support.kube import REPO

PROBE = Path(__file__).with_name("probe_interrupted_session.py")


def leftover_processes(workdir: str) -> list[int]:
    probe = LocalCluster("probe", workdir, "", "", "")
    return probe._leftover_pids()


def run_probe(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    record = tmp_path / "record.json"
    env = {**os.environ, "QMO_PROBE_RECORD": str(record), "QMO_PROBE_MODE": mode}
    env.pop("QMO_TEST_KUBECONFIG", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(PROBE)],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return child, record


def wait_for_record(child: subprocess.Popen[bytes]) -> None:
    """Block on the child's output until it says its cluster is up and recorded."""
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == b"RECORDED":
            return
    pytest.fail(f"probe exited before its cluster was up (exit code {child.wait()})")


@pytest.mark.skipif("QMO_TEST_KUBECONFIG" in os.environ, reason="needs the local cluster")
def test_a_failing_test_still_stops_the_cluster(tmp_path: Path) -> None:
    child, record = run_probe(tmp_path, "fail")
    child.communicate(timeout=180)
    assert child.returncode == 1
    workdir = json.loads(record.read_text())["workdir"]
    assert leftover_processes(workdir) == []
    assert not Path(workdir).exists()


@pytest.mark.skipif("QMO_TEST_KUBECONFIG" in os.environ, reason="needs the local cluster")
def test_ctrl_c_stops_the_cluster(tmp_path: Path) -> None:
    child, record = run_probe(tmp_path, "block")
    wait_for_record(child)
    workdir = json.loads(record.read_text())["workdir"]
    assert leftover_processes(workdir), "the probe's cluster should be running"
    child.send_signal(signal.SIGINT)
    # Read to the end rather than communicate(): that closes stdin, and an EOF reaching the
    # probe before the signal would end it cleanly (exit 0) instead of interrupted.
    assert child.stdout is not None
    child.stdout.read()
    assert child.wait(timeout=120) != 0
    assert leftover_processes(workdir) == []
    assert not Path(workdir).exists()
