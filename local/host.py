"""What the Azure Functions host does for the app, locally: index ``function_app`` and hand its
functions the real binding objects (``func.EventGridEvent``, ``func.CloudEvent``, ``func.QueueMessage``,
``func.HttpRequest``, ``TimerRequest``) built from what Event Grid, a storage queue, an HTTP client
or the timer would deliver.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import functools
import inspect
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest  # the worker's concrete class

_indexing = threading.Lock()


def functions() -> dict[str, Callable[..., Any]]:
    """The app's functions by name, indexed once per process as the host does, each called as the
    Python worker calls it: a coroutine function runs on the worker's one event loop, and the call
    returns when it has finished (or raises what it raised). Calls from several threads at once are
    concurrent invocations on that loop, as in a worker.

    Import this after the environment points at where the app should work: ``function_app``
    checks its settings at import.
    """
    with _indexing:  # the host starts once, before any invocation; threads asking first must not race it
        _worker_loop()
        return _indexed()


@cache
def _indexed() -> dict[str, Callable[..., Any]]:
    import function_app

    return {
        str(f.get_function_name()): _as_worker_calls(f.get_user_function()) for f in function_app.app.get_functions()
    }


def _as_worker_calls(function: Callable[..., Any]) -> Callable[..., Any]:
    wants_context = "context" in inspect.signature(function).parameters

    @functools.wraps(function)
    def call(*args: Any) -> Any:
        # As the worker does: a function with a `context` parameter gets the invocation's context.
        result = function(*args, **({"context": Invocation(function.__name__)} if wants_context else {}))
        if inspect.isawaitable(result):
            return asyncio.run_coroutine_threadsafe(_awaited(result), _worker_loop()).result()
        return result

    return call


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


@cache
def _worker_loop() -> asyncio.AbstractEventLoop:
    """The worker's event loop, running for the life of the process in a thread of its own."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="functions-worker-loop", daemon=True).start()
    atexit.register(_shut_down, loop)
    return loop


def _shut_down(loop: asyncio.AbstractEventLoop) -> None:
    import function_app

    asyncio.run_coroutine_threadsafe(function_app.trust_sync.close(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)


class _Trace(func._abc.TraceContext):
    def __init__(self) -> None:
        # A W3C traceparent, as the host passes the worker its trace of the invocation.
        self._parent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _Retry(func._abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> func._abc.RpcException:
        raise NotImplementedError


class Invocation(func.Context):
    """The `func.Context` the worker hands a function: a new invocation id and trace each call."""

    def __init__(self, function_name: str) -> None:
        self._function_name = function_name
        self._invocation_id = str(uuid.uuid4())
        self._trace = _Trace()
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._local  # type: ignore[return-value]  # the ABC's annotation says type; the worker hands an instance

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return ""

    @property
    def trace_context(self) -> func._abc.TraceContext:
        return self._trace

    @property
    def retry_context(self) -> func._abc.RetryContext:
        return _Retry()


def event_grid_event(event: Mapping[str, Any]) -> func.EventGridEvent:
    """One event of an Event Grid schema delivery."""
    return func.EventGridEvent(
        id=event["id"],
        data=event["data"],
        topic=event["topic"],
        subject=event["subject"],
        event_type=event["eventType"],
        event_time=None,
        data_version=event.get("dataVersion", "1"),
    )


def cloud_event(event: Mapping[str, Any]) -> func.CloudEvent:
    """The same event as a CloudEvents 1.0 schema delivery."""
    return func.CloudEvent(
        id=event["id"],
        source=event["topic"],
        type=event["eventType"],
        specversion="1.0",
        time=None,
        subject=event["subject"],
        datacontenttype="application/json",
        dataschema=None,
        data=event["data"],
    )


def queue_message(event: Mapping[str, Any] | bytes, *, base64_encoded: bool = False) -> func.QueueMessage:
    """A storage-queue message as the host hands it over: Event Grid writes the event's JSON as the
    message text (host.json ``messageEncoding: none`` passes it on as written). ``bytes`` is a body
    as is, for messages Event Grid would not write.
    """
    body = event if isinstance(event, bytes) else json.dumps(dict(event)).encode()
    if base64_encoded:
        body = base64.b64encode(body)
    return func.QueueMessage(id=str(uuid.uuid4()), body=body, pop_receipt=secrets.token_urlsafe(16))


def post(route: str, body: bytes) -> func.HttpRequest:
    return func.HttpRequest(method="POST", url=f"http://localhost:7071/api/{route}", body=body, headers={})


def timer() -> TimerRequest:
    return TimerRequest(past_due=False)
