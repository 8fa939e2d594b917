"""Errors at the boundary between the Azure adapters and the engine, and the translation into them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError


class AzureCallError(Exception):
    """An Azure call failed after the SDK's own retries; the message says which call and why.

    `status` is the HTTP status when the service answered, None for a transport failure.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotFoundError(AzureCallError):
    """The thing asked for does not exist (HTTP 404)."""


@contextmanager
def translated(what: str) -> Iterator[None]:
    """SDK errors → `AzureCallError` naming the call. Only the service's error code and message are kept:
    never a request or response body, which could hold a secret."""
    try:
        yield
    except ResourceNotFoundError as error:
        raise NotFoundError(f"{what}: not found ({_code(error)})", status=404, code=_code(error)) from None
    except HttpResponseError as error:
        raise AzureCallError(
            f"{what}: HTTP {error.status_code} {_code(error)}: {_message(error)}",
            status=error.status_code,
            code=_code(error),
        ) from None
    except AzureError as error:
        raise AzureCallError(f"{what}: {type(error).__name__}: {error.message}") from None


def _code(error: HttpResponseError) -> str:
    odata = error.error
    if odata is None:
        return "error"
    inner = getattr(odata, "innererror", None)
    if isinstance(inner, dict) and inner.get("code"):
        return f"{odata.code}/{inner['code']}"
    return odata.code or "error"


def _message(error: HttpResponseError) -> str:
    return (error.error.message if error.error is not None else None) or error.reason or ""
