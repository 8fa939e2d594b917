"""Bounded concurrency for independent Azure calls, with continuations instead of nested waits.

Each task is one call (or one paged list). A task's continuation may start further tasks, so a
dependency chain (list versions → read secrets; upload → trust on every gateway) proceeds as soon
as its input is ready, while the pool's size caps the calls in flight. Nothing ever blocks a pool
thread waiting for another task, so a small pool cannot deadlock.

When more tasks are ready than there are threads, the one with the highest priority starts first
(in the order started among equals): the engine gives a higher priority to the calls with the
longer chain of calls behind them (a secret read, which an upload and then every gateway's put
wait for, goes before a gateway's CA list), the rule that makes the fewest rounds of round trips.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")


class TaskGroup:
    def __init__(self, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # a task was queued, or the group closed
        self._idle = threading.Condition(self._lock)  # every task has finished
        self._queue: list[tuple[int, int, Callable[[], None]]] = []  # (-priority, order, run): a heap
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._pending = 0  # tasks queued or running
        self._closed = False
        self._unexpected: list[BaseException] = []

    def start(
        self,
        call: Callable[[], T],
        then: Callable[[T], None],
        on_error: Callable[[Exception], None],
        *,
        priority: int = 0,
    ) -> None:
        """Run `call` on the pool, then `then(result)` — or `on_error(exception)` if it raised."""

        def run() -> None:
            try:
                try:
                    result = call()
                except Exception as error:
                    on_error(error)
                else:
                    then(result)
            except BaseException as unexpected:  # a bug in a continuation: surface it from wait()
                with self._lock:
                    self._unexpected.append(unexpected)
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

        with self._lock:
            if self._closed:
                raise RuntimeError("the task group is closed")
            self._pending += 1
            heapq.heappush(self._queue, (-priority, next(self._order), run))
            # A thread per task queued or running, up to the limit: none sits idle while work waits.
            if len(self._threads) < min(self._max_workers, self._pending):
                thread = threading.Thread(target=self._serve, name=f"trustsync_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._work.notify()

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._work.wait()
                if not self._queue:
                    return  # closed, and nothing left to run
                _, _, run = heapq.heappop(self._queue)
            run()

    def wait(self) -> None:
        """Return when every task, and every task they started, has finished."""
        with self._lock:
            self._idle.wait_for(lambda: self._pending == 0)
            if self._unexpected:
                raise self._unexpected[0]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._work.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def __enter__(self) -> TaskGroup:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
