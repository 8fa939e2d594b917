"""ARM's and Key Vault's request limits, as the services apply them. Off unless a test switches them on.

- **ARM, token buckets** (the model ARM moved subscriptions to in 2024): per subscription,
  principal and kind (reads: GET/HEAD; writes: PUT/PATCH/POST; deletes: DELETE), a bucket of
  ``capacity`` tokens refilled at ``per_second`` (documented: reads 250 + 25/s, writes and deletes
  200 + 10/s). Every answer to an authenticated request carries the tokens left,
  ``x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}``. An empty bucket answers 429
  ``SubscriptionRequestsThrottled`` with ``Retry-After``; a throttled request takes no token.
- **ARM, hourly** (the older model, which Azure China still documents: reads 12,000, writes 1,200,
  deletes 15,000 an hour): a fixed window of ``limit`` requests per ``period``; the header counts
  down what is left of the window, and a 429's Retry-After is the time to the window's end.
- **Key Vault**: per vault, a fixed window of ``transactions`` per ``per`` seconds (documented:
  4,000 per 10 s for secrets, certificates and vault transactions); 429 ``Throttled`` with
  Retry-After and no remaining count. Throttled requests do not count (Key Vault documents it).

``retry_after_unit``: ARM and Key Vault send whole seconds (1.0, the default); a test that scales
the limits down scales Retry-After with them (e.g. 0.001: milliseconds, which azure-core reads as a
float).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Protocol

from .wire import format_retry_after

ARM_KINDS: Final = ("reads", "writes", "deletes")
_SINGULAR: Final = {"reads": "read", "writes": "write", "deletes": "delete"}
Clock = Callable[[], float]


def arm_kind(method: str) -> str:
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        return "reads"
    return "deletes" if verb == "DELETE" else "writes"


@dataclass(frozen=True)
class Decision:
    """One request's fate: let through (with what is left), or throttled for `wait` seconds."""

    allowed: bool
    remaining: int
    wait: float = 0.0


class _Limiter(Protocol):
    def take(self, now: float) -> Decision: ...

    def setting(self) -> str: ...


@dataclass
class TokenBucket:
    capacity: float
    per_second: float
    tokens: float = math.nan
    updated: float = math.nan

    def take(self, now: float) -> Decision:
        if math.isnan(self.tokens):
            self.tokens, self.updated = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return Decision(False, 0, (1 - self.tokens) / self.per_second)
        self.tokens -= 1
        return Decision(True, math.floor(self.tokens))

    def setting(self) -> str:
        return f"{self.capacity:g}+{self.per_second:g}/s"


@dataclass
class Window:
    limit: int
    period: float
    count: int = 0
    started: float = math.nan

    def take(self, now: float) -> Decision:
        if math.isnan(self.started) or now >= self.started + self.period:
            self.started, self.count = now, 0
        if self.count >= self.limit:
            return Decision(False, 0, self.started + self.period - now)
        self.count += 1
        return Decision(True, self.limit - self.count)

    def setting(self) -> str:
        return f"{self.limit}/{self.period:g}s"


@dataclass
class ArmLimits:
    """ARM's subscription limits for every (subscription, principal): one model for all kinds."""

    make: dict[str, Callable[[], _Limiter]]
    hourly: bool
    retry_after_unit: float = 1.0
    clock: Clock = time.monotonic
    _limiters: dict[tuple[str, str, str], _Limiter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, subscription: str, principal: str, method: str) -> tuple[str, Decision]:
        kind = arm_kind(method)
        with self._lock:
            key = (subscription.lower(), principal.lower(), kind)
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = self.make[kind]()
            return kind, limiter.take(self.clock())

    def retry_after(self, decision: Decision) -> str:
        return format_retry_after(_round_up(decision.wait, self.retry_after_unit))

    def message(self, kind: str, subscription: str, principal: str, decision: Decision) -> str:
        after = self.retry_after(decision)
        if self.hourly:
            window = self.make[kind]()
            assert isinstance(window, Window)
            interval = time.strftime("%H:%M:%S", time.gmtime(window.period))
            return (
                f"Number of {_SINGULAR[kind]} requests for subscription '{subscription}' exceeded the limit of "
                f"'{window.limit}' for time interval '{interval}'. Please try again after '{after}' seconds."
            )
        return (
            f"Number of '{_SINGULAR[kind]}' requests for subscription '{subscription}' actor '{principal}' exceeded. "
            f"Please try again after '{after}' seconds after additional tokens are available. "
            "Refer to https://aka.ms/arm-throttling for additional information."
        )

    def settings(self) -> dict[str, str]:
        return {f"arm-{kind}": self.make[kind]().setting() for kind in ARM_KINDS}


@dataclass
class KeyVaultLimits:
    """Key Vault's limit for the emulated vault: a fixed window of transactions."""

    transactions: int
    per: float
    retry_after_unit: float = 1.0
    clock: Clock = time.monotonic
    _window: Window | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> Decision:
        with self._lock:
            if self._window is None:
                self._window = Window(self.transactions, self.per)
            return self._window.take(self.clock())

    def retry_after(self, decision: Decision) -> str:
        return format_retry_after(_round_up(decision.wait, self.retry_after_unit))

    def setting(self) -> str:
        return Window(self.transactions, self.per).setting()


def token_buckets(
    *,
    reads: tuple[float, float] = (250, 25),
    writes: tuple[float, float] = (200, 10),
    deletes: tuple[float, float] = (200, 10),
    retry_after_unit: float = 1.0,
    clock: Clock = time.monotonic,
) -> ArmLimits:
    """ARM's token buckets, each (capacity, refill per second); the documented ones by default."""
    shapes = {"reads": reads, "writes": writes, "deletes": deletes}
    make: dict[str, Callable[[], _Limiter]] = {kind: partial(TokenBucket, *shape) for kind, shape in shapes.items()}
    return ArmLimits(make, hourly=False, retry_after_unit=retry_after_unit, clock=clock)


def hourly(
    *,
    reads: int = 12000,
    writes: int = 1200,
    deletes: int = 15000,
    period: float = 3600.0,
    retry_after_unit: float = 1.0,
    clock: Clock = time.monotonic,
) -> ArmLimits:
    """ARM's older limits: so many requests of each kind per `period` (an hour, unless scaled down)."""
    shapes = {"reads": reads, "writes": writes, "deletes": deletes}
    make: dict[str, Callable[[], _Limiter]] = {kind: partial(Window, limit, period) for kind, limit in shapes.items()}
    return ArmLimits(make, hourly=True, retry_after_unit=retry_after_unit, clock=clock)


def _round_up(seconds: float, unit: float) -> float:
    """Retry-After in whole `unit`s, at least one: never 0, which would invite an immediate retry."""
    units = max(1, math.ceil(round(seconds / unit, 9)))
    return round(units * unit, 6)
