"""Bounded concurrency for independent Azure calls, with continuations instead of nested waits.

Each task is one call (or one paged list), a coroutine on the invocation's event loop. A task's
continuation may start further tasks, so a dependency chain (list versions → read secrets;
upload → trust on every gateway) proceeds as soon as its input is ready, while the limit caps the
calls in flight. Nothing ever waits inside a task for another task, so a small limit cannot
deadlock.

When more tasks are ready than the limit allows, the one with the highest priority starts first
(in the order started among equals): the engine gives a higher priority to the calls with the
longer chain of calls behind them (a secret read, which an upload and then every gateway's put
wait for, goes before a gateway's CA list), the rule that makes the fewest rounds of round trips.

Coroutines rather than threads: a call spends its time waiting for the network, and on an event
loop that wait costs nothing, whereas a pool thread per call in flight made every call pay for
thread switches and contention on the interpreter lock (measured in `bench/README.md`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class TaskGroup:
    """Use as ``async with TaskGroup(limit) as tasks``: start tasks, ``await tasks.wait()``."""

    def __init__(self, max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self._limit = max_concurrency
        self._queue: list[tuple[int, int, Callable[[], Coroutine[Any, Any, None]]]] = []  # (-priority, order, run)
        self._order = itertools.count()
        self._running: set[asyncio.Task[None]] = set()
        self._pending = 0  # tasks queued or running
        self._idle = asyncio.Event()  # every task has finished
        self._idle.set()
        self._closed = False
        self._unexpected: list[BaseException] = []

    def start(
        self,
        call: Callable[[], Awaitable[T]],
        then: Callable[[T], None],
        on_error: Callable[[Exception], None],
        *,
        priority: int = 0,
    ) -> None:
        """Run `call`, then `then(result)` — or `on_error(exception)` if it raised."""

        async def run() -> None:
            try:
                try:
                    result = await call()
                except Exception as error:
                    on_error(error)
                else:
                    then(result)
            except Exception as unexpected:  # a bug in a continuation: surface it from wait()
                self._unexpected.append(unexpected)

        if self._closed:
            raise RuntimeError("the task group is closed")
        self._pending += 1
        self._idle.clear()
        heapq.heappush(self._queue, (-priority, next(self._order), run))
        self._fill()

    def _fill(self) -> None:
        while self._queue and len(self._running) < self._limit:
            _, _, run = heapq.heappop(self._queue)
            task = asyncio.get_running_loop().create_task(run())
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._pending -= 1
        if not task.cancelled() and (error := task.exception()) is not None:
            self._unexpected.append(error)  # BaseException from a task: not swallowed
        if not self._closed:
            self._fill()
        if self._pending == 0:
            self._idle.set()

    async def wait(self) -> None:
        """Return when every task, and every task they started, has finished."""
        await self._idle.wait()
        if self._unexpected:
            raise self._unexpected[0]

    async def __aenter__(self) -> TaskGroup:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        # Leaving early (an error, or the invocation cancelled): queued calls never start, running ones are cancelled.
        self._closed = True
        self._pending -= len(self._queue)
        self._queue.clear()
        running = list(self._running)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
