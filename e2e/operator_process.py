"""The operator as a subprocess (`qmo run`) against a cluster, as in production (demo and tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STARTED_LINE = "Activity 'start' succeeded"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_operator(
    kubeconfig: str, log_path: Path, *extra_args: str, resync_seconds: float = 5.0
) -> Iterator[subprocess.Popen[str]]:
    """Start `qmo run`, wait until its handlers are registered, stop it afterwards."""
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}
    args = [
        sys.executable, "-m", "qmo.cli", "run",
        "--metrics-port", str(free_port()), "--health-port", str(free_port()),
        "--resync-seconds", str(resync_seconds), *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    started = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        with log_path.open("a") as log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if STARTED_LINE in line:
                    started.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not started.wait(timeout=60):
            raise AssertionError(f"the operator did not start; see {log_path}")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
