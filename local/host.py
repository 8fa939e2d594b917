"""What the Azure Functions host does for the app, locally: index ``function_app`` and hand its
functions the real binding objects (``func.EventGridEvent``, ``func.CloudEvent``, ``func.HttpRequest``,
``TimerRequest``) built from what Event Grid, an HTTP client or the timer would deliver.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import inspect
import threading
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
    @functools.wraps(function)
    def call(*args: Any) -> Any:
        result = function(*args)
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


def post(route: str, body: bytes) -> func.HttpRequest:
    return func.HttpRequest(method="POST", url=f"http://localhost:7071/api/{route}", body=body, headers={})


def timer() -> TimerRequest:
    return TimerRequest(past_due=False)
