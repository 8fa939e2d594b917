"""What the emulator was asked: one record per request, kept for tests to assert on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from .operations import WRITE_METHODS
from .wire import Request


@dataclass(frozen=True)
class RequestRecord:
    operation: str
    method: str
    path: str
    query: Mapping[str, str]
    status: int | None  # None: the connection was dropped without an answer
    is_write: bool
    started: float  # time.monotonic()
    finished: float
    client_id: str | None  # identity.token: the client_id asked for; KV/ARM: the client id of the bearer token
    audience: str | None  # identity.token: the resource asked for; KV/ARM: the audience of the bearer token
    api_version: str | None
    faulted: bool  # an injected fault shaped the answer
    headers: Mapping[str, str] = field(default_factory=dict)  # as sent, Authorization redacted
    body: bytes = field(default=b"", repr=False)  # the request body as sent
    response_body: bytes = field(default=b"", repr=False)  # b"" when the connection was dropped

    @property
    def duration(self) -> float:
        return self.finished - self.started


@dataclass
class CallInfo:
    """Filled in while a request is served, then frozen into a RequestRecord."""

    operation: str
    client_id: str | None = None
    audience: str | None = None
    status: int | None = None
    faulted: bool = False
    response_body: bytes = b""


class Recorder:
    """Thread-safe request log with an in-flight gauge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._in_flight = 0
        self._max_in_flight = 0

    @contextmanager
    def track(self, request: Request, operation: str) -> Iterator[CallInfo]:
        info = CallInfo(operation)
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        started = time.monotonic()
        try:
            yield info
        finally:
            record = RequestRecord(
                operation=info.operation,
                method=request.method,
                path=request.path,
                query=request.query,
                status=info.status,
                is_write=request.method in WRITE_METHODS,
                started=started,
                finished=time.monotonic(),
                client_id=info.client_id,
                audience=info.audience,
                api_version=request.query.get("api-version"),
                faulted=info.faulted,
                headers={k: ("<redacted>" if k == "authorization" else v) for k, v in request.headers.items()},
                body=request.body,
                response_body=info.response_body,
            )
            with self._lock:
                self._in_flight -= 1
                self._records.append(record)

    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._max_in_flight = self._in_flight

    def count(self, operation: str | None = None, *, writes: bool | None = None, status: int | None = None) -> int:
        """Requests recorded; ``operation`` is a name, or a prefix ending in '.' such as ``"arm."``."""
        return sum(1 for record in self.records if _matches(record, operation, writes, status))


def _matches(record: RequestRecord, operation: str | None, writes: bool | None, status: int | None) -> bool:
    if operation is not None:
        if operation.endswith("."):
            if not record.operation.startswith(operation):
                return False
        elif record.operation != operation:
            return False
    if writes is not None and record.is_write != writes:
        return False
    return status is None or record.status == status
