"""Pacing: every Azure request waits for a token of the limit it counts against, so that a large
run goes at the rate Azure allows instead of failing on HTTP 429.

Pure: token buckets refilled over time (an injectable clock), corrected by what the services say,
and a priority queue per limit; nothing from ``azure.*``. The adapters observe each answer at the
edge (``shared.pacing_policy``) and feed it in; the engine asks for a token before it starts a write.

The model, per limit (``Kind``):

- **Tokens.** A bucket of ``capacity`` tokens refilled at ``per_second`` (ARM's documented buckets,
  per subscription and principal: reads 250 + 25/s, writes and deletes 200 + 10/s; where a cloud
  still applies ARM's hourly limits, a bucket of the hour's limit refilled over the hour; Key
  Vault: 4,000 transactions per 10 s per vault). A request takes one token; with none, it waits.
- **What the service says wins.** ARM reports the tokens left after each request
  (``x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}``). The estimate is reset to
  that count, as of its answer (what refilled while the answer travelled, or while the request
  waited for a connection, is not credited: a cushion, never a 429), less the tokens taken since
  and those taken before whose requests are still unanswered (admitted earlier, they may be
  counted later):
  other workers and other runs of the same identity drain the same bucket, and the count is the
  only truth they share. An estimate nothing has confirmed for as long as the bucket takes to
  refill from empty (a new worker, an idle one) is not trusted with a burst: until an answer
  comes, at most ``PROBE`` of the capacity goes out unanswered. A 429 blocks the limit until its
  ``Retry-After`` has passed; the request that got it did not count, and goes again (the edge's
  loop, ``Pacer.paced``).
- **Priorities.** Waiters are served by (urgency, rank, arrival): a scoped run (an event) before
  any full-scope run, and within a run, what matters most first (the engine's ranks). Full-scope
  runs leave a reserve in the bucket (``RESERVE`` of the capacity) that only scoped runs take,
  so an event arriving during a long full run finds tokens at once.
- **Time.** A run has a deadline (its time budget). A waiter that cannot have a token before its
  run's deadline is told so (``None``) rather than kept waiting: the engine then leaves the write
  for the next run and reports the run ``partial``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import math
import time
from bisect import bisect_right, insort
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final, TypeVar

from .ports import Throttled

R = TypeVar("R")

RESERVE: Final = 0.1  # the share of a bucket's capacity that full-scope runs leave to scoped runs
PROBE: Final = 0.1  # the share of the capacity sent unanswered while the estimate is unconfirmed
_AWAIT_ANSWER: Final = 1.0  # seconds a waiter for an answer sleeps at most before it looks again
DEFAULT_RETRY_AFTER: Final = 1.0  # seconds a 429 without Retry-After blocks its limit
TOO_MANY_REQUESTS: Final = 429


class Kind(enum.StrEnum):
    """A limit requests count against: ARM's three per-subscription buckets, and the vault's."""

    ARM_READS = "arm-reads"
    ARM_WRITES = "arm-writes"
    ARM_DELETES = "arm-deletes"
    KEYVAULT = "keyvault"


@dataclass(frozen=True)
class Limit:
    """A token bucket: `capacity` tokens, refilled at `per_second` (a window of N per T is N + N/T)."""

    capacity: float
    per_second: float

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.per_second <= 0:
            raise ValueError("a limit needs a capacity of at least 1 and a positive refill rate")

    def __str__(self) -> str:
        return f"{self.capacity:g}+{self.per_second:g}/s"


@dataclass(frozen=True)
class RateLimits:
    """The limit modelled for each kind; a kind without one is paced only by the service's 429s."""

    arm_reads: Limit | None = None
    arm_writes: Limit | None = None
    arm_deletes: Limit | None = None
    keyvault: Limit | None = None

    def __getitem__(self, kind: Kind) -> Limit | None:
        limit: Limit | None = getattr(self, kind.value.replace("-", "_"))
        return limit

    def __str__(self) -> str:
        modelled = [f"{kind.value}={limit}" for kind in Kind if (limit := self[kind]) is not None]
        return ",".join(modelled) or "none"


_HOUR: Final = 3600.0
KEYVAULT_LIMIT: Final = Limit(4000, 4000 / 10)  # transactions per vault and region: 4,000 per 10 s
TOKEN_BUCKETS: Final = RateLimits(
    arm_reads=Limit(250, 25), arm_writes=Limit(200, 10), arm_deletes=Limit(200, 10), keyvault=KEYVAULT_LIMIT
)
HOURLY: Final = RateLimits(  # ARM's older model: per hour, per subscription and principal
    arm_reads=Limit(12000, 12000 / _HOUR),
    arm_writes=Limit(1200, 1200 / _HOUR),
    arm_deletes=Limit(15000, 15000 / _HOUR),
    keyvault=KEYVAULT_LIMIT,
)
UNMODELLED: Final = RateLimits()


@dataclass(frozen=True, order=True)
class Priority:
    """Who goes first: lower urgency, then lower rank (the engine's), then earlier arrival."""

    urgency: int  # 0: a scoped run (events); 1: a full-scope run
    rank: int = 0


SCOPED: Final = 0
FULL: Final = 1
_UNKNOWN_CALLER: Final = Priority(FULL, 1_000)  # a request made outside any run


@dataclass(frozen=True)
class Ticket:
    """One token taken, and its place in the order tokens were taken."""

    kind: Kind
    seq: int


class Bucket:
    """One limit as this worker estimates it. Synchronous and pure: every method takes ``now``."""

    def __init__(self, limit: Limit | None, now: float, *, reserve: float = RESERVE) -> None:
        self.limit = limit
        self.tokens = limit.capacity if limit else math.inf
        self.updated = now
        self.blocked_until = -math.inf
        self.issued = 0  # tokens taken so far: a ticket's seq is its place in this count
        self._in_flight: set[int] = set()  # seqs whose request has not been answered (or given back) yet
        self.answered_at = -math.inf  # when the service last answered a request of this limit
        self.observed = 0  # seq of the request whose answer the estimate was last reset from
        self._voided: list[int] = []  # seqs taken that the service will not count (refunded, throttled)
        self.reserve = min(limit.capacity * reserve, limit.capacity - 1) if limit else 0.0
        self.probe = max(1.0, limit.capacity * PROBE) if limit else math.inf

    def _refill(self, now: float) -> None:
        if self.limit is not None and now > self.updated:
            self.tokens = min(self.limit.capacity, self.tokens + (now - self.updated) * self.limit.per_second)
        self.updated = max(self.updated, now)

    def wait(self, now: float, urgency: int) -> float:
        """Seconds until a request of this urgency may take a token (0: now)."""
        self._refill(now)
        blocked = max(0.0, self.blocked_until - now)
        if self.limit is None:
            return blocked
        unconfirmed = now - self.answered_at > self.limit.capacity / self.limit.per_second
        if unconfirmed and len(self._in_flight) >= self.probe:
            return max(blocked, _AWAIT_ANSWER)  # or sooner: an answer wakes the waiters
        short = 1.0 + (self.reserve if urgency > SCOPED else 0.0) - self.tokens
        return max(blocked, short / self.limit.per_second if short > 0 else 0.0)

    def take(self, now: float) -> int:
        self._refill(now)
        self.tokens -= 1
        self.issued += 1
        self._in_flight.add(self.issued)
        return self.issued

    def answered(self, seq: int, now: float, *, heard: bool) -> None:
        """Request `seq` is over: answered by the service (`heard`), or lost on the way."""
        self._in_flight.discard(seq)
        if heard:
            self.answered_at = max(self.answered_at, now)

    def refund(self, seq: int, now: float) -> None:
        """A token taken for a request that was never sent."""
        self._refill(now)
        if self.limit is not None:
            self.tokens = min(self.limit.capacity, self.tokens + 1)
        self._in_flight.discard(seq)
        insort(self._voided, seq)

    def observe(self, seq: int, now: float, remaining: int | None) -> None:
        """The service counted request `seq` and had `remaining` tokens left (taken as of `now`)."""
        if self.limit is None or remaining is None or seq < self.observed:
            return  # nothing to learn, or an older answer than the one the estimate comes from
        self._reset(seq, now, min(self.limit.capacity, float(remaining)))

    def throttle(self, seq: int, now: float, retry_after: float | None) -> None:
        """Request `seq` got a 429: it did not count, the bucket is empty, wait `retry_after`."""
        insort(self._voided, seq)
        self.blocked_until = max(
            self.blocked_until, now + (DEFAULT_RETRY_AFTER if retry_after is None else retry_after)
        )
        if self.limit is not None and seq >= self.observed:
            self._reset(seq, now, 0.0)  # whatever the count says, the service had no token for it

    def _reset(self, seq: int, now: float, tokens_after_seq: float) -> None:
        # Every token taken after `seq` and not voided is spent, or will be once its request arrives;
        # so is every one taken before whose request is still unanswered (it may be counted later).
        spent_since = self.issued - seq - (len(self._voided) - bisect_right(self._voided, seq))
        spent_since += sum(1 for earlier in self._in_flight if earlier < seq)
        self._refill(now)
        self.tokens = tokens_after_seq - spent_since
        self.observed = seq
        del self._voided[: bisect_right(self._voided, seq)]


@dataclass
class _Waiter:
    priority: Priority
    arrival: int
    deadline: float | None
    future: asyncio.Future[Ticket | None]

    def __lt__(self, other: _Waiter) -> bool:
        return (self.priority, self.arrival) < (other.priority, other.arrival)


@dataclass(frozen=True)
class Answer:
    """What an answer says about the limits: its status, the remaining count, Retry-After (seconds)."""

    status: int
    remaining: int | None = None
    retry_after: float | None = None


class Pacer:
    """The buckets of one configuration's clients on one worker, shared by the runs on it.

    Waiting is done by one dispatcher task per limit, which hands tokens out in priority order
    as they refill and tells waiters whose deadline has come that there will be none.
    """

    def __init__(
        self,
        limits: RateLimits = UNMODELLED,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reserve: float = RESERVE,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self._sleep = sleep
        now = clock()
        self.buckets = {kind: Bucket(limits[kind], now, reserve=reserve) for kind in Kind}
        self._queues: dict[Kind, list[_Waiter]] = {kind: [] for kind in Kind}
        self._deadlines: dict[Kind, list[tuple[float, int, _Waiter]]] = {kind: [] for kind in Kind}
        self._kicks: dict[Kind, asyncio.Event] = {}
        self._dispatchers: dict[Kind, asyncio.Task[None]] = {}
        self._arrivals = itertools.count()

    def lane(self, *, urgent: bool, budget: float) -> Lane:
        """A run's way to the limits: its urgency, and the deadline its time budget sets."""
        return Lane(self, SCOPED if urgent else FULL, self.clock() + budget)

    async def acquire(self, kind: Kind, priority: Priority, deadline: float | None) -> Ticket | None:
        """A token for one request of `kind`, or None when none can be had before `deadline`."""
        now = self.clock()
        if deadline is not None and now >= deadline:
            return None
        bucket, queue = self.buckets[kind], self._queues[kind]
        first = not queue or priority < queue[0].priority
        if first and bucket.wait(now, priority.urgency) <= 0:
            return Ticket(kind, bucket.take(now))  # no await: an unthrottled call is not delayed at all
        waiter = _Waiter(priority, next(self._arrivals), deadline, asyncio.get_running_loop().create_future())
        heapq.heappush(queue, waiter)
        if deadline is not None:
            heapq.heappush(self._deadlines[kind], (deadline, waiter.arrival, waiter))
        self._kick(kind)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled() and (ticket := waiter.future.result()):
                self.refund(ticket)
            raise

    def refund(self, ticket: Ticket) -> None:
        """Gives back the token of a request that was never sent."""
        self.buckets[ticket.kind].refund(ticket.seq, self.clock())
        self._kick(ticket.kind)

    def settle(self, ticket: Ticket, answer: Answer | None) -> None:
        """What the service answered to the request of `ticket` (None: no answer, it may have counted)."""
        bucket, now = self.buckets[ticket.kind], self.clock()
        bucket.answered(ticket.seq, now, heard=answer is not None)
        if answer is None:
            self._kick(ticket.kind)
            return
        if answer.status == TOO_MANY_REQUESTS:
            bucket.throttle(ticket.seq, now, answer.retry_after)
        else:
            bucket.observe(ticket.seq, now, answer.remaining)
        self._kick(ticket.kind)

    async def paced(self, kind: Kind, send: Callable[[], Awaitable[R]], read: Callable[[R], Answer]) -> R:
        """Sends one request under the pacer (the edge's side): a token first (the one the engine
        admitted the call with, or a new one), then the request, whose answer feeds the bucket. A
        429 is never handed back while the run has time: the request waits for its Retry-After
        (and its turn) and goes again. Once the run's deadline has passed, `Throttled`. Outside
        any run, a 429 is handed back (the SDK's own retries apply)."""
        call = _CURRENT.get()
        priority = call.priority if call is not None else _UNKNOWN_CALLER
        deadline: float | None = None  # the first attempt of a call the engine started always goes
        while True:
            ticket = call.take_prepaid(kind) if call is not None else None
            if ticket is None:
                ticket = await self.acquire(kind, priority, deadline)
                if ticket is None:
                    raise Throttled("throttled (HTTP 429) until the run's time budget ran out; nothing was changed")
            try:
                response = await send()
            except BaseException:
                self.settle(ticket, None)
                raise
            answer = read(response)
            self.settle(ticket, answer)
            if answer.status != TOO_MANY_REQUESTS or call is None:
                return response
            deadline = call.lane.deadline

    # -- dispatching -------------------------------------------------------------------------------

    def _kick(self, kind: Kind) -> None:
        if not self._queues[kind]:
            return
        dispatcher = self._dispatchers.get(kind)
        if dispatcher is None or dispatcher.done():
            self._kicks[kind] = asyncio.Event()
            self._dispatchers[kind] = asyncio.get_running_loop().create_task(self._dispatch(kind))
        else:
            self._kicks[kind].set()

    async def _dispatch(self, kind: Kind) -> None:
        bucket, queue, deadlines, kick = (
            self.buckets[kind],
            self._queues[kind],
            self._deadlines[kind],
            self._kicks[kind],
        )
        while True:
            now = self.clock()
            while deadlines and deadlines[0][0] <= now:
                _, _, expired = heapq.heappop(deadlines)
                if not expired.future.done():
                    expired.future.set_result(None)
            while queue and queue[0].future.done():
                heapq.heappop(queue)
            while deadlines and deadlines[0][2].future.done():
                heapq.heappop(deadlines)
            if not queue:
                return
            head = queue[0]
            wait = bucket.wait(now, head.priority.urgency)
            if wait <= 0:
                heapq.heappop(queue)
                head.future.set_result(Ticket(kind, bucket.take(now)))
                continue
            if deadlines:
                wait = min(wait, deadlines[0][0] - now)
            kick.clear()
            await self._pause(wait, kick)

    async def _pause(self, seconds: float, kick: asyncio.Event) -> None:
        """Sleeps `seconds`, or less when something changed (a new waiter, a token back, an answer)."""
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        kicked = asyncio.ensure_future(kick.wait())
        try:
            await asyncio.wait({sleeping, kicked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, kicked):
                task.cancel()


@dataclass
class _Call:
    """The call a task is making: whose, how urgent, and the token the engine admitted it with."""

    lane: Lane
    priority: Priority
    prepaid: Ticket | None = None

    def take_prepaid(self, kind: Kind) -> Ticket | None:
        if self.prepaid is None or self.prepaid.kind is not kind:
            return None
        ticket, self.prepaid = self.prepaid, None
        return ticket


_CURRENT: ContextVar[_Call | None] = ContextVar("trustsync_pacing_call", default=None)


@dataclass
class Lane:
    """One run's access to the pacer: its urgency and its deadline (on the pacer's clock)."""

    pacer: Pacer
    urgency: int
    deadline: float

    @property
    def time_left(self) -> float:
        return self.deadline - self.pacer.clock()

    async def admit(self, kind: Kind, rank: int) -> Ticket | None:
        """A token for a write about to start, or None when the run's time budget will not cover it."""
        return await self.pacer.acquire(kind, Priority(self.urgency, rank), self.deadline)

    @contextlib.contextmanager
    def calling(self, rank: int, *, prepaid: Ticket | None = None) -> Iterator[None]:
        """Marks the requests the current task makes inside as this run's, at `rank`; the first of
        `prepaid`'s kind uses that token (which is given back if no such request is made)."""
        call = _Call(self, Priority(self.urgency, rank), prepaid)
        token = _CURRENT.set(call)
        try:
            yield
        finally:
            _CURRENT.reset(token)
            if call.prepaid is not None:
                self.pacer.refund(call.prepaid)
