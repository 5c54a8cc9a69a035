"""The operator as a subprocess (`qmo run`) against a cluster, as in production (demo and tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STARTED_LINE = "Activity 'start' succeeded"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OperatorProcess:
    """One `qmo run` process; it can be killed and started again (a crash and a restart)."""

    def __init__(
        self,
        kubeconfig: str,
        log_path: Path,
        *extra_args: str,
        resync_seconds: float = 5.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_args = extra_args
        self.resync_seconds = resync_seconds
        self.env = env or {}
        self.process: subprocess.Popen[str] | None = None
        self.metrics_port = 0

    def start(self) -> None:
        """Start, and return once kopf has run the operator's startup handler."""
        self.metrics_port = free_port()
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONUNBUFFERED": "1", **self.env}
        args = [
            sys.executable, "-m", "qmo.cli", "run",
            "--metrics-port", str(self.metrics_port), "--health-port", str(free_port()),
            "--resync-seconds", str(self.resync_seconds), *self.extra_args,
        ]  # fmt: skip
        process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.process = process
        started = threading.Event()

        def pump() -> None:
            assert process.stdout is not None
            with self.log_path.open("a") as log:
                for line in process.stdout:
                    log.write(line)
                    log.flush()
                    if STARTED_LINE in line:
                        started.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 60
        # A process armed to crash may die before it says it started; that is not a failure.
        while not started.wait(timeout=0.2):
            if process.poll() is not None and self.env:
                return
            if time.monotonic() > deadline or process.poll() is not None:
                self.stop()
                raise AssertionError(f"the operator did not start; see {self.log_path}")

    def wait_dead(self, timeout: float) -> int:
        """Wait for the process to end by itself (a failpoint); returns its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash or an evicted pod would end it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def metrics_text(self) -> str:
        """The operator's /metrics page."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
        return text

    def metric(self, name: str, **labels: str) -> float:
        """One sample from the operator's /metrics (0 when absent)."""
        text = self.metrics_text()
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] != name:
                continue
            found = series[len(name) :].strip("{}")
            if all(part in found.split(",") for part in wanted.split(",") if part):
                total += float(value)
        return total


@contextmanager
def running_operator(
    kubeconfig: str, log_path: Path, *extra_args: str, resync_seconds: float = 5.0
) -> Iterator[OperatorProcess]:
    """Start `qmo run`, wait until its handlers are registered, stop it afterwards."""
    operator = OperatorProcess(kubeconfig, log_path, *extra_args, resync_seconds=resync_seconds)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()
