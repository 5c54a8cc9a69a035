"""Run only by test_teardown.py in a child pytest: it records the session cluster and then
blocks until the parent interrupts it (or fails on purpose), so the parent can check that
pytest's teardown stopped every process."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from tests.support.kube import ClusterHandle

# The SIGINT stands for a Ctrl-C in a terminal. A shell starts background jobs with SIGINT
# ignored, and Python then leaves it ignored: run from one (as a CI runner may), the probe
# would never see the signal. Put back Python's usual handler.
signal.signal(signal.SIGINT, signal.default_int_handler)


def test_record_the_cluster_then_wait_for_the_interrupt(cluster: ClusterHandle) -> None:
    assert cluster.local is not None
    Path(os.environ["QMO_PROBE_RECORD"]).write_text(json.dumps({"workdir": cluster.local.workdir}))
    if os.environ.get("QMO_PROBE_MODE") == "fail":
        raise AssertionError("failing on purpose")
    print("\nRECORDED", flush=True)
    sys.stdin.read()  # blocks until the parent sends SIGINT
