"""Named points where a crash test may kill the operator, as etcd and TiKV test theirs.

`QMO_FAILPOINT=execute.after:Deployment@2` makes the process SIGKILL itself the second time it
passes that point. Unset (always, outside tests), `reached` is one comparison. Crash safety
is then shown by dying at each point and converging after a restart, not argued.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "QMO_FAILPOINT"
_SPEC = os.environ.get(ENV, "")
_NAME, _, _NTH = _SPEC.partition("@")
_AT = int(_NTH or 1) if _SPEC else 0
_passed = 0
_lock = threading.Lock()


def reached(point: str) -> None:
    """Die here if this is the armed point's Nth passing."""
    global _passed
    if not _SPEC or point != _NAME:
        return
    with _lock:
        _passed += 1
        if _passed == _AT:
            os.kill(os.getpid(), signal.SIGKILL)
