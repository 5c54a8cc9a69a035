"""/readyz apart from /healthz: a standby is ready as it is, a leader once its caches synced."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from e2e.operator_process import free_port
from qmo import readiness


def test_a_standby_is_ready_and_a_leader_once_nothing_is_unsynced() -> None:
    readiness.register(None)
    assert readiness.state()[0] is True
    waiting = ["jobs", "pods"]
    readiness.register(lambda: list(waiting))
    ready, said = readiness.state()
    assert (ready, said["unsynced"]) == (False, ["jobs", "pods"])
    waiting.clear()
    assert readiness.state()[0] is True
    readiness.register(None)


def test_readyz_answers_200_or_503_and_nothing_else_on_its_port() -> None:
    port = free_port()

    async def ask(path: str) -> tuple[int, dict[str, object] | None]:
        def get() -> tuple[int, dict[str, object] | None]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, json.load(r)
            except urllib.error.HTTPError as err:
                body = err.read()
                return err.code, json.loads(body) if body else None

        return await asyncio.to_thread(get)

    async def scenario() -> list[tuple[int, dict[str, object] | None]]:
        server = await readiness.serve(port)
        assert server is not None
        try:
            readiness.register(lambda: ["nodes"])
            syncing = await ask("/readyz")
            readiness.register(lambda: [])
            synced = await ask("/readyz")
            other = await ask("/healthz")
            return [syncing, synced, other]
        finally:
            readiness.register(None)
            server.close()

    syncing, synced, other = asyncio.run(scenario())
    assert syncing == (503, {"ready": False, "reconciling": True, "unsynced": ["nodes"]})
    assert synced[0] == 200
    assert other[0] == 404
