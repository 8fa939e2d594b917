"""How one app setting's text becomes a value: the text a parser gets (`Raw`) and the parsers
that several settings share: a choice of words, a whole number, a duration, a list of names, an
https endpoint. Every error names the setting; a value that may carry a credential is quoted
without it. Pure: no I/O, nothing from ``azure.*``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")


class SettingsError(ValueError):
    """One or more settings are missing or invalid; the message names each of them."""


@dataclass(frozen=True)
class Raw:
    """One setting's text as its parser gets it: stripped, or the default when left empty."""

    name: str
    text: str
    env: Mapping[str, str]  # the whole environment: a few values derive from what the platform sets
    redacted: bool

    @property
    def shown(self) -> str:
        """The text as an error may quote it: a URL's user-info and query may carry a credential."""
        return repr(redact_url(self.text) if self.redacted else self.text)

    def error(self, problem: str) -> SettingsError:
        return SettingsError(f"{self.name} {problem}")


def choice(options: Mapping[str, T], *, one_of: bool = False) -> Callable[[Raw], T]:
    """One of `options`' words, in any case; the error lists them."""
    words = list(options)
    listing = f"one of {', '.join(words)}" if one_of else f"{', '.join(words[:-1])} or {words[-1]}"
    by_word = {word.lower(): value for word, value in options.items()}

    def parse(raw: Raw) -> T:
        if raw.text.lower() in by_word:
            return by_word[raw.text.lower()]
        raise raw.error(f"must be {listing}, not {raw.shown}")

    return parse


_WHOLE_NUMBER = re.compile(r"^[+-]?[0-9]+$")  # ASCII digits only: int() also takes full-width ones


def whole_number(low: int, high: int) -> Callable[[Raw], int]:
    def parse(raw: Raw) -> int:
        if not _WHOLE_NUMBER.match(raw.text):
            raise raw.error(f"must be a whole number, not {raw.shown}")
        value = int(raw.text)
        if not low <= value <= high:
            raise raw.error(f"must be between {low} and {high}, not {value}")
        return value

    return parse


_DURATION = re.compile(r"^(?P<amount>\d{1,6})\s*(?P<unit>s|m|h|d)$", re.IGNORECASE | re.ASCII)
UNITS: Final[Mapping[str, timedelta]] = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}


def duration(*, at_most: timedelta, at_least: timedelta = timedelta(0)) -> Callable[[Raw], timedelta]:
    def parse(raw: Raw) -> timedelta:
        match = _DURATION.match(raw.text)
        if not match:
            raise raw.error(f"must be a duration like 540s, 90m, 24h or 7d, not {raw.shown}")
        length = int(match["amount"]) * UNITS[match["unit"].lower()]
        if length > at_most:
            raise raw.error(f"must be at most {at_most.days}d, not {raw.shown}")
        if length < at_least:
            raise raw.error(f"must be at least {at_least.total_seconds():g}s, not {raw.shown}")
        return length

    return parse


def parse_names(name: str, raw: str, is_valid: Callable[[str], bool]) -> frozenset[str]:
    """A comma-separated list of names: no empty entry, each valid."""
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise SettingsError(f"{name} has an empty entry: {raw!r}")
    bad = [item for item in items if not is_valid(item)]
    if bad:
        raise SettingsError(f"{name} has invalid names: {', '.join(map(repr, bad))}")
    return frozenset(items)


_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$", re.ASCII
)


def url_host(netloc: str) -> str:
    """``host[:port]`` in lower case, without the default HTTPS port: the one form both a setting
    and an event's object URL are compared in."""
    return netloc.lower().removesuffix(":443")


def redact_url(raw: str) -> str:
    """A URL without its user-info, query and fragment, which may carry credentials (user:pass@, ?sig=)."""
    try:
        parts = urlsplit(raw.strip())
    except ValueError:
        return "<not a URL>"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def https_endpoint(raw: Raw) -> str:
    """``https://host[:port]`` in lower case, without the default port: what events are compared with."""
    try:
        parts = urlsplit(raw.text)
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        raise raw.error(f"must be an https:// URL, not {raw.shown}") from None
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise raw.error(f"must be an https:// URL, not {raw.shown}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise raw.error(f"must be the endpoint alone, without a path, query or user: {raw.shown}")
    written_port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    if port == 0 or (written_port and not written_port.isascii()):
        raise raw.error(f"has an invalid port: {raw.shown}")
    if not _HOST_NAME.match(parts.hostname) and not is_ip_literal(parts.hostname):
        # A trailing dot or a space would never equal the host an event names: every event ignored.
        raise raw.error(f"has an invalid host name (letters, digits, hyphens and dots; no trailing dot): {raw.shown}")
    host = parts.hostname if port in (None, 443) else f"{parts.hostname}:{port}"
    return f"https://{url_host(host)}"
