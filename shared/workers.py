"""Bounded concurrency for independent Azure calls, with continuations instead of nested waits.

Each task is one call (or one paged list). A task's continuation may start further tasks, so a
dependency chain (list versions → read secrets; upload → trust on every gateway) proceeds as soon
as its input is ready, while the pool's size caps the calls in flight. Nothing ever blocks a pool
thread waiting for another task, so a small pool cannot deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")


class TaskGroup:
    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="trustsync")
        self._pending = 0
        self._idle = threading.Condition()
        self._unexpected: list[BaseException] = []

    def start(
        self,
        call: Callable[[], T],
        then: Callable[[T], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        """Run `call` on the pool, then `then(result)` — or `on_error(exception)` if it raised."""
        with self._idle:
            self._pending += 1

        def run() -> None:
            try:
                try:
                    result = call()
                except Exception as error:
                    on_error(error)
                else:
                    then(result)
            except BaseException as unexpected:  # a bug in a continuation: surface it from wait()
                with self._idle:
                    self._unexpected.append(unexpected)
            finally:
                with self._idle:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

        self._pool.submit(run)

    def wait(self) -> None:
        """Return when every task, and every task they started, has finished."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)
            if self._unexpected:
                raise self._unexpected[0]

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> TaskGroup:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
