"""HTTP requests and responses as plain values, independent of the socket server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query exactly as sent
    headers: Mapping[str, str]  # keys in lower case
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def segments(self) -> list[str]:
        """The path's segments, each percent-decoded; a trailing slash leaves an empty last segment."""
        return [unquote(segment) for segment in self.path.split("/")[1:]]

    @property
    def query(self) -> dict[str, str]:
        # SDKs never repeat a query parameter; the first value wins if one does.
        pairs = parse_qsl(urlsplit(self.target).query, keep_blank_values=True)
        result: dict[str, str] = {}
        for key, value in pairs:
            result.setdefault(key, value)
        return result

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def bearer_token(self) -> str | None:
        scheme, _, token = (self.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, body, {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})})


class HttpError(Exception):
    """Raised by route handlers to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


class DropConnection(Exception):
    """Raised to close the client's connection without answering."""


def request_id() -> str:
    return str(uuid.uuid4())


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        value = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def format_retry_after(seconds: float) -> str:
    """Retry-After is delay-seconds; fractions are kept for fast tests (azure-core parses floats)."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
