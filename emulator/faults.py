"""Fault injection: make the n-th call of an operation fail, stall or lose its connection.

``ANY_WRITE`` stands for every write (PUT/POST/DELETE/PATCH) of Key Vault and ARM, counted together:
``faults.add(ANY_WRITE, status=409, on_call=k + 1, times=10**6)`` lets the first k writes through
and fails every later one, as if the product crashed after its k-th write. A ``hook`` runs when its
fault fires, before the request is served (after it with ``after_write``): tests use it to change
the world at an exact point of a run (a concurrent writer, a version disabled mid-run) or to check
an invariant at every write. Every applicable fault fires; the first one that fails decides the answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .operations import OPERATIONS

ANY_WRITE: Final = "*write"  # pseudo-operation: any Key Vault or ARM write


@dataclass
class Fault:
    """Applies to calls ``on_call`` .. ``on_call + times - 1`` of ``operation``, counted from when it was added.

    ``status`` None with a ``delay`` only slows the call down; it is then served normally.
    ``after_write`` applies the request first (the write happens) and then fails the response:
    the classic lost-response case. Without it a faulted request changes nothing.
    """

    operation: str
    status: int | None = 503
    retry_after: float | None = None
    delay: float = 0.0
    drop_connection: bool = False
    on_call: int = 1
    times: int = 1
    after_write: bool = False
    hook: Callable[[], object] | None = None
    seen: int = 0  # calls of the operation since the fault was added
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.seen >= self.on_call + self.times - 1

    @property
    def fails(self) -> bool:
        return self.drop_connection or self.status is not None


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        operation: str,
        *,
        status: int | None = 503,
        retry_after: float | None = None,
        delay: float = 0.0,
        drop_connection: bool = False,
        on_call: int = 1,
        times: int = 1,
        after_write: bool = False,
        hook: Callable[[], object] | None = None,
    ) -> Fault:
        if operation not in OPERATIONS and operation != ANY_WRITE:
            raise ValueError(f"unknown operation {operation!r}; one of {', '.join(sorted(OPERATIONS))}")
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"a fault's status must be 4xx or 5xx, not {status}")
        if on_call < 1 or times < 1 or delay < 0:
            raise ValueError("on_call and times must be >= 1 and delay >= 0")
        fault = Fault(operation, status, retry_after, delay, drop_connection, on_call, times, after_write, hook)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, operation: str, *, write: bool = False) -> Fault | None:
        """Counts a call of ``operation`` and returns the first fault that applies to it."""
        fired = self.take_all(operation, write=write)
        return fired[0] if fired else None

    def take_all(self, operation: str, *, write: bool = False) -> list[Fault]:
        """Counts a call of ``operation`` (a write if ``write``) and returns every fault that applies to it."""
        fired: list[Fault] = []
        with self._lock:
            for fault in self._faults:
                if fault.operation != operation and not (write and fault.operation == ANY_WRITE):
                    continue
                fault.seen += 1
                if fault.on_call <= fault.seen < fault.on_call + fault.times:
                    fault.fired += 1
                    fired.append(fault)
            self._faults = [f for f in self._faults if not f.exhausted]
        return fired

    def pending(self) -> list[Fault]:
        """Faults that still have calls to fail."""
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
