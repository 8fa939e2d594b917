"""Fault injection: make the n-th call of an operation fail, stall or lose its connection."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .operations import OPERATIONS


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
    ) -> Fault:
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {', '.join(sorted(OPERATIONS))}")
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"a fault's status must be 4xx or 5xx, not {status}")
        if on_call < 1 or times < 1 or delay < 0:
            raise ValueError("on_call and times must be >= 1 and delay >= 0")
        fault = Fault(operation, status, retry_after, delay, drop_connection, on_call, times, after_write)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, operation: str) -> Fault | None:
        """Counts a call of ``operation`` and returns the first fault that applies to it."""
        chosen: Fault | None = None
        with self._lock:
            for fault in self._faults:
                if fault.operation != operation:
                    continue
                fault.seen += 1
                if chosen is None and fault.on_call <= fault.seen < fault.on_call + fault.times:
                    fault.fired += 1
                    chosen = fault
            self._faults = [f for f in self._faults if not f.exhausted]
        return chosen

    def pending(self) -> list[Fault]:
        """Faults that still have calls to fail."""
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
