"""The work queue: deduplicated keys, one worker per key, delayed retries."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from qmo.controller.queue import Key, WorkQueue

A: Key = ("models", "llama")
B: Key = ("models", "mistral")
PATIENCE = 5.0  # seconds a get may take before the test fails; never spent when it passes


def _run(scenario: Callable[[WorkQueue], Awaitable[None]]) -> None:
    async def main() -> None:
        queue = WorkQueue()
        try:
            await scenario(queue)
        finally:
            queue.close()

    asyncio.run(main())


async def _get(queue: WorkQueue) -> Key:
    return await asyncio.wait_for(queue.get(), timeout=PATIENCE)


async def _yield_to_the_loop(times: int = 5) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def test_a_key_added_twice_is_queued_once() -> None:
    async def scenario(queue: WorkQueue) -> None:
        queue.add(A)
        queue.add(A)
        queue.add(B)
        assert len(queue) == 2
        assert [await _get(queue), await _get(queue)] == [A, B]
        assert len(queue) == 0

    _run(scenario)


def test_a_key_added_while_processing_is_handed_out_again_after_done() -> None:
    async def scenario(queue: WorkQueue) -> None:
        queue.add(A)
        assert await _get(queue) == A
        queue.add(A)  # an event arrives while A is reconciled
        queue.add(A)
        assert len(queue) == 0  # held back, not queued beside the one in progress
        queue.done(A)
        assert len(queue) == 1
        assert await _get(queue) == A
        queue.done(A)
        assert len(queue) == 0  # the two adds while processing made one more pass, not two

    _run(scenario)


def test_a_key_is_never_handed_to_two_workers_at_once() -> None:
    async def scenario(queue: WorkQueue) -> None:
        queue.add(A)
        first = await _get(queue)
        second_worker = asyncio.create_task(queue.get())
        queue.add(A)
        await _yield_to_the_loop()
        assert not second_worker.done()  # A is still being processed by the first worker
        queue.done(first)
        assert await asyncio.wait_for(second_worker, timeout=PATIENCE) == A

    _run(scenario)


def test_different_keys_are_processed_side_by_side() -> None:
    async def scenario(queue: WorkQueue) -> None:
        queue.add(A)
        queue.add(B)
        assert await _get(queue) == A
        assert await _get(queue) == B  # without A being done

    _run(scenario)


def test_a_key_done_without_new_events_is_not_requeued() -> None:
    async def scenario(queue: WorkQueue) -> None:
        queue.add(A)
        queue.done(await _get(queue))
        assert len(queue) == 0
        queue.add(A)  # and can be added again afterwards
        assert await _get(queue) == A

    _run(scenario)


def test_add_after_adds_the_key_later_not_now() -> None:
    async def scenario(queue: WorkQueue) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        queue.add_after(A, 0.05)
        assert len(queue) == 0
        assert await _get(queue) == A
        assert loop.time() - started >= 0.04  # the loop may fire a timer a hair early

    _run(scenario)


def test_a_new_add_after_replaces_the_pending_one() -> None:
    async def scenario(queue: WorkQueue) -> None:
        queue.add_after(A, 3600)
        queue.add_after(A, 0.01)
        assert await _get(queue) == A  # the hour-long retry is gone, or this would time out

    _run(scenario)


def test_a_retry_that_fires_while_the_key_is_processed_waits_for_done() -> None:
    async def scenario(queue: WorkQueue) -> None:
        queue.add(A)
        assert await _get(queue) == A
        fired = asyncio.Event()
        queue.add_after(A, 0.01)
        asyncio.get_running_loop().call_later(0.02, fired.set)
        await asyncio.wait_for(fired.wait(), timeout=PATIENCE)
        assert len(queue) == 0  # the timer has fired, but A is still in progress
        queue.done(A)
        assert await _get(queue) == A

    _run(scenario)


def test_an_immediate_add_and_a_later_retry_do_not_duplicate_the_key() -> None:
    async def scenario(queue: WorkQueue) -> None:
        queue.add_after(A, 0.01)
        queue.add(A)
        fired = asyncio.Event()
        asyncio.get_running_loop().call_later(0.02, fired.set)
        await asyncio.wait_for(fired.wait(), timeout=PATIENCE)
        assert len(queue) == 1  # the retry found A already queued
        assert await _get(queue) == A

    _run(scenario)
