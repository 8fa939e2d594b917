"""The executor: every Azure call of a run goes through it, and it turns planned actions into outcomes.

It owns what each call waits for and what becomes of it:

- **slots**: at most `MAX_CONCURRENCY` calls in flight to Key Vault and as many to ARM, neither
  waiting for the other's; a free slot goes first to the lowest `Turn` (the reads every write waits
  on, then the writes of a CA this run uploads, then a gateway's own CA list, then the other writes);
- **the pacer lane**: ARM's and Key Vault's limits (`shared.pacing`), reads at `READ_RANK`, each write
  at its action's `Precedence`, and the run's time budget: a write starts only with a token had
  before the deadline, otherwise it is left for the next run (``deferred``);
- **progress**: the work found and done, for the CLI's bars;
- **dry run**: no write leaves the run, every action is ``planned``;
- **failures**: a throttled write is deferred; a failed one is ``failed`` and a retryable problem
  of the run (`write_problems`); a put whose upload failed is ``skipped``, whose upload was
  deferred, deferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from .pacing import Kind, Lane
from .plan import Action, ActionKind, Precedence
from .ports import ApimPort, AzureCallError, Progress, Throttled, Work
from .problems import Notes, Problem
from .report import ActionStatus, Outcome

log = logging.getLogger("trustsync")
T = TypeVar("T")

READ_RANK = 0  # the pacer's rank of every read: before any write (whose rank is its Precedence)
LEFT = "not started: the run's time budget ran out; the next run continues from what APIM holds"


def write_problems(outcomes: Iterable[Outcome]) -> Notes:
    """Each failed write is a retryable problem of its run: what failed may go through next time."""
    failed = (outcome for outcome in outcomes if outcome.status is ActionStatus.FAILED)
    return Notes(problems=tuple(Problem(outcome.error or "", retryable=True) for outcome in failed))


class Turn(enum.IntEnum):
    """Who gets a service's free slot first (lower first, then the earlier)."""

    CRITICAL_READ = 0  # Key Vault's reads, APIM's certificate and gateway lists, the service: every write waits
    FIRST_UPLOAD = 1  # Precedence.FIRST: a CA this run uploads (every put of it waits for it)
    GATEWAY_READ = 2  # a gateway's own CA list: that gateway's puts wait on it
    FIRST_PUT = 3  # Precedence.FIRST: a put of a CA this run uploads
    NEXT_WRITE = 4  # Precedence.NEXT
    LAST_WRITE = 5  # Precedence.LAST


def turn_of(action: Action) -> Turn:
    """A write's turn for a slot. A put goes behind the gateway CA lists still to read: a list held
    back behind other gateways' puts would hold back every put of its own gateway, the run's tail."""
    if action.precedence is Precedence.FIRST:
        return Turn.FIRST_UPLOAD if action.kind is ActionKind.UPLOAD_CERTIFICATE else Turn.FIRST_PUT
    return Turn.NEXT_WRITE if action.precedence is Precedence.NEXT else Turn.LAST_WRITE


_LIMIT_OF = {
    ActionKind.UPLOAD_CERTIFICATE: Kind.ARM_WRITES,
    ActionKind.SET_GATEWAY_CA: Kind.ARM_WRITES,
    ActionKind.REMOVE_GATEWAY_CA: Kind.ARM_DELETES,
    ActionKind.DELETE_CERTIFICATE: Kind.ARM_DELETES,
}


class Slots:
    """One service's calls in flight, at most `size`; a free slot goes to the waiter of the lowest
    turn (then the earliest), so a read every write waits on never queues behind one only some need."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def hold(self, turn: Turn) -> AsyncIterator[None]:
        if self.free > 0 and not self._waiters:
            self.free -= 1
        else:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (turn, next(self._arrivals), ready))
            try:
                await ready
            except asyncio.CancelledError:
                if ready.done() and not ready.cancelled():
                    self._release()  # handed a slot just as it was cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, ready = heapq.heappop(self._waiters)
            if not ready.done():  # a cancelled waiter's turn is done already: skipped
                ready.set_result(None)
                return
        self.free += 1


class Executor:
    """One run's way to Azure: its slots, its pacer lane, its progress, and whether it may write."""

    def __init__(self, apim: ApimPort, lane: Lane, progress: Progress, *, max_concurrency: int, dry_run: bool) -> None:
        self.apim = apim
        self.lane = lane
        self.progress = progress
        self.dry_run = dry_run
        self.keyvault_slots = Slots(max_concurrency)
        self.arm_slots = Slots(max_concurrency)

    @property
    def out_of_time(self) -> bool:
        return self.lane.time_left <= 0

    # -- reads ------------------------------------------------------------------------------------

    def planned_reads(self, count: int = 1) -> None:
        if count:
            self.progress.planned(Work.KEYVAULT_READS, count)

    async def read(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A Key Vault read, counted as done for the progress whether it worked or not."""
        try:
            return await self._call(self.keyvault_slots, Turn.CRITICAL_READ, function, *args)
        finally:
            self.progress.done(Work.KEYVAULT_READS)

    async def next_page(self, pages: AsyncIterator[list[str]]) -> list[str] | None:
        """The next page of a Key Vault listing (None: no more), as a read every write waits on."""
        async with self.keyvault_slots.hold(Turn.CRITICAL_READ):
            with self.lane.calling(READ_RANK):
                return await anext(pages, None)

    async def call(self, function: Callable[..., Awaitable[T]], *args: Any, turn: Turn = Turn.CRITICAL_READ) -> T:
        """One ARM call (a read, or a write of the managed gateway's CA store or a backend)."""
        return await self._call(self.arm_slots, turn, function, *args)

    async def _call(self, slots: Slots, turn: Turn, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One Azure call, holding a slot of its service while in flight; its requests are paced as reads."""
        log.debug("%s %s", getattr(function, "__name__", "call"), " ".join(a for a in args if isinstance(a, str)))
        async with slots.hold(turn):
            with self.lane.calling(READ_RANK):
                return await function(*args)

    # -- writes -----------------------------------------------------------------------------------

    def planned_writes(self, actions: Sequence[Action]) -> None:
        if not self.dry_run and actions:
            self.progress.planned(Work.WRITES, len(actions))

    def not_started(self, action: Action, status: ActionStatus, why: str) -> Outcome:
        """A planned write that will not start (something it waits on did not happen): counted as done."""
        if not self.dry_run:
            self.progress.done(Work.WRITES)
        return Outcome(action, status, why)

    async def put(self, action: Action, upload: Awaitable[Outcome] | None) -> Outcome:
        """A gateway's put, once the upload of its certificate (when this run uploads it) is in."""
        if upload is not None:
            uploaded = (await upload).status
            if uploaded is ActionStatus.FAILED:
                return self.not_started(
                    action, ActionStatus.SKIPPED, f"not set: uploading {action.certificate_id} failed"
                )
            if uploaded is ActionStatus.DEFERRED:
                return self.not_started(action, ActionStatus.DEFERRED, LEFT)
        return await self.write(action)

    async def write(self, action: Action) -> Outcome:
        if self.dry_run:
            return Outcome(action, ActionStatus.PLANNED)
        rank = int(action.precedence)
        try:
            # The time budget: a write starts only with a token had before the run's deadline.
            admitted = await self.lane.admit(_LIMIT_OF[action.kind], rank)
            if admitted is None:
                return Outcome(action, ActionStatus.DEFERRED, LEFT)
            log.debug("%s", action.describe())
            with self.lane.calling(rank, prepaid=admitted):  # a token left unused is given back, even if cancelled
                try:
                    async with self.arm_slots.hold(turn_of(action)):
                        if self.out_of_time:
                            return Outcome(action, ActionStatus.DEFERRED, LEFT)
                        await self._apply(action)
                except Throttled as error:
                    return Outcome(action, ActionStatus.DEFERRED, f"{LEFT} ({error})")
                except AzureCallError as error:
                    return Outcome(action, ActionStatus.FAILED, str(error))
            return Outcome(action, ActionStatus.APPLIED)
        finally:
            self.progress.done(Work.WRITES)

    async def _apply(self, action: Action) -> None:
        if action.kind is ActionKind.UPLOAD_CERTIFICATE:
            assert action.certificate is not None
            await self.apim.upload_certificate(action.certificate_id, action.certificate.public_pfx())
        elif action.kind is ActionKind.SET_GATEWAY_CA:
            assert action.gateway is not None
            await self.apim.set_gateway_ca(
                action.gateway, action.certificate_id, bool(action.trusted), replace=action.replace
            )
        elif action.kind is ActionKind.REMOVE_GATEWAY_CA:
            assert action.gateway is not None
            await self.apim.remove_gateway_ca(action.gateway, action.certificate_id)
        else:
            await self.apim.delete_certificate(action.certificate_id)
