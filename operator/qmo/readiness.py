"""/readyz, apart from /healthz (liveness): a process is live while it answers at all, and
ready once it can do its job. A leader is ready when every informer has listed (before that a
reconcile would act on a partial view); a standby is ready as it is, a warm spare that takes
over when the Lease frees. kopf serves only /healthz, on the health port; this small server
answers /readyz on its own port, for the whole life of the process, leader or standby.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from qmo import probes

# What readiness waits for, registered by the controller when it starts: the names of the
# informers that have not listed yet. None: no controller runs here (a standby).
_lock = threading.Lock()
_unsynced: Callable[[], list[str]] | None = None


def register(unsynced: Callable[[], list[str]] | None) -> None:
    global _unsynced
    with _lock:
        _unsynced = unsynced


def state() -> tuple[bool, dict[str, object]]:
    """(ready, what it says): a standby is ready; a leader once nothing is unsynced."""
    with _lock:
        unsynced = _unsynced
    if unsynced is None:
        return True, {"ready": True, "reconciling": False}
    waiting = unsynced()
    return not waiting, {"ready": not waiting, "reconciling": True, "unsynced": waiting}


async def serve(port: int | None) -> asyncio.Server | None:
    """Answer GET /readyz on `port` (200 or 503, with a small JSON body); None without one."""

    def ready() -> tuple[int, object]:
        ok, said = state()
        return (200 if ok else 503), said

    return await probes.serve(port, {b"/readyz": ready})
