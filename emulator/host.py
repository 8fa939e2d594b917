"""What the Azure Functions host does for the app, locally: index ``function_app`` and hand its
functions the real binding objects (``func.EventGridEvent``, ``func.CloudEvent``, ``func.HttpRequest``,
``TimerRequest``) built from what Event Grid, an HTTP client or the timer would deliver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest  # the worker's concrete class


@cache
def functions() -> dict[str, Callable[..., Any]]:
    """The app's functions by name, indexed once per process as the host does.

    Import this after the environment points at where the app should work: ``function_app``
    checks its settings at import.
    """
    import function_app

    return {str(f.get_function_name()): f.get_user_function() for f in function_app.app.get_functions()}


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
