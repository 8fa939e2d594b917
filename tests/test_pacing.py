"""The pacer alone (`shared.pacing`), on a fake clock: buckets, what the services' answers change,
priorities, deadlines, and the edge's handling of 429s. No network, no real waiting: time moves
only when a test advances it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from shared.pacing import (
    FULL,
    SCOPED,
    Answer,
    Bucket,
    Kind,
    Limit,
    Pacer,
    Priority,
    RateLimits,
    Ticket,
)
from shared.ports import Throttled

T0 = 1000.0


class FakeClock:
    """Time that moves only when told to; `sleep` wakes when it has moved far enough."""

    def __init__(self) -> None:
        self.now = T0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + seconds, next(self._order), wake))
        await wake

    async def advance(self, seconds: float) -> None:
        """Moves time on, waking every sleeper due, and lets every task run until it waits again."""
        self.now += seconds
        while self._timers and self._timers[0][0] <= self.now:
            _, _, wake = heapq.heappop(self._timers)
            if not wake.done():
                wake.set_result(None)
        await settle()


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


HANG_GUARD = 30  # seconds of real time: a pacer that lost its deadline would wait on the fake clock forever


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), HANG_GUARD))


# -- one bucket, by explicit times ----------------------------------------------------------------------


def confirmed(limit: Limit | None) -> Bucket:
    """A bucket whose estimate an answer has just confirmed (so it is not probing)."""
    bucket = Bucket(limit, T0)
    bucket.answered_at = T0
    return bucket


def test_a_bucket_gives_its_capacity_at_once_then_one_token_per_refill_interval() -> None:
    bucket = confirmed(Limit(5, 10))
    for _ in range(5):
        assert bucket.wait(T0, SCOPED) == 0
        bucket.take(T0)
    assert bucket.wait(T0, SCOPED) == pytest.approx(0.1)
    assert bucket.wait(T0 + 0.1, SCOPED) == 0


def test_full_runs_leave_a_tenth_of_the_bucket_to_scoped_runs() -> None:
    bucket = confirmed(Limit(40, 10))
    taken = 0
    while bucket.wait(T0, FULL) == 0:
        bucket.take(T0)
        taken += 1
    assert taken == 36
    assert bucket.wait(T0, FULL) == pytest.approx(0.1)  # the next token beyond the reserve
    for _ in range(4):
        assert bucket.wait(T0, SCOPED) == 0  # an event still finds four tokens at once
        bucket.take(T0)
    assert bucket.wait(T0, SCOPED) > 0


def test_the_remaining_count_resets_the_estimate_less_the_tokens_taken_since() -> None:
    bucket = confirmed(Limit(200, 10))  # the documented writes bucket: the model thinks 200 are there
    first, *_ = (bucket.take(T0) for _ in range(3))
    bucket.answered(first, T0, heard=True)
    bucket.observe(first, now=T0, remaining=39)  # the service has 40, not 200: it says 39 left
    assert bucket.tokens == pytest.approx(37)  # the two taken after the first are spent too


def test_a_token_taken_earlier_whose_request_is_still_unanswered_counts_as_spent_too() -> None:
    bucket = confirmed(Limit(200, 10))
    bucket.take(T0)  # admitted, still waiting for a connection
    answered = bucket.take(T0)
    bucket.answered(answered, T0, heard=True)
    bucket.observe(answered, now=T0, remaining=30)  # counted before `waiting` went out
    assert bucket.tokens == pytest.approx(29)


def test_the_remaining_count_can_raise_the_estimate_too() -> None:
    bucket = confirmed(Limit(200, 10))
    bucket.tokens = 0  # e.g. after a 429 seen by this worker
    seq = bucket.take(T0)
    bucket.answered(seq, T0, heard=True)
    bucket.observe(seq, now=T0, remaining=150)  # the service refilled more than the model
    assert bucket.tokens == pytest.approx(150)


def test_an_answer_older_than_the_last_one_used_changes_nothing() -> None:
    bucket = confirmed(Limit(200, 10))
    early, late = bucket.take(T0), bucket.take(T0)
    bucket.answered(late, T0, heard=True)
    bucket.observe(late, now=T0, remaining=20)
    assert bucket.tokens == pytest.approx(19)  # `early` is still unanswered: maybe not counted yet
    bucket.answered(early, T0, heard=True)
    bucket.observe(early, now=T0, remaining=100)  # taken before `late`: an older count, ignored
    assert bucket.tokens == pytest.approx(19)


def test_a_count_is_taken_as_of_its_answer_never_crediting_what_refilled_meanwhile() -> None:
    bucket = confirmed(Limit(200, 10))
    seq = bucket.take(T0)
    bucket.answered(seq, T0 + 0.5, heard=True)
    # The request may have waited for a connection before ARM counted it: when, nobody here knows.
    bucket.observe(seq, now=T0 + 0.5, remaining=0)
    assert bucket.tokens == pytest.approx(0)
    assert bucket.wait(T0 + 0.5, SCOPED) == pytest.approx(0.1)


def test_a_429_blocks_until_retry_after_and_does_not_count_the_throttled_request() -> None:
    bucket = confirmed(Limit(40, 10))
    throttled, pending = bucket.take(T0), bucket.take(T0)
    bucket.answered(throttled, T0, heard=True)
    bucket.throttle(throttled, now=T0, retry_after=2.0)
    assert bucket.wait(T0 + 1.9, SCOPED) == pytest.approx(0.1)  # blocked, whatever the tokens
    # Empty at the 429, less the request still in flight, plus 2 s of refill.
    assert bucket.wait(T0 + 2, SCOPED) == 0
    assert bucket.tokens == pytest.approx(-1 + 20)
    bucket.answered(pending, T0 + 2, heard=True)
    bucket.observe(pending, now=T0 + 2, remaining=19)  # the throttled one is not subtracted again
    assert bucket.tokens == pytest.approx(19)


def test_a_refunded_token_comes_back_and_is_not_counted_as_spent() -> None:
    bucket = confirmed(Limit(10, 1))
    unused, used = bucket.take(T0), bucket.take(T0)
    bucket.refund(unused, T0)
    assert bucket.tokens == pytest.approx(9)
    bucket.answered(used, T0, heard=True)
    bucket.observe(used, now=T0, remaining=9)
    assert bucket.tokens == pytest.approx(9)


def test_an_unconfirmed_estimate_sends_a_tenth_of_the_bucket_then_waits_for_an_answer() -> None:
    bucket = Bucket(Limit(200, 10), T0)  # a new worker: the model says 200, nothing has confirmed it
    taken = []
    for _ in range(20):
        assert bucket.wait(T0, FULL) == 0
        taken.append(bucket.take(T0))
    assert bucket.wait(T0, FULL) > 0  # another worker may have drained the bucket: ask first
    bucket.answered(taken[0], T0, heard=True)
    assert bucket.wait(T0, FULL) == 0


def test_an_estimate_older_than_a_refill_from_empty_is_unconfirmed_again() -> None:
    bucket = confirmed(Limit(200, 10))
    taken = [bucket.take(T0) for _ in range(20)]
    assert bucket.wait(T0 + 20, FULL) == 0  # 20 s: what the bucket takes to refill from empty
    assert bucket.wait(T0 + 20.5, FULL) > 0
    bucket.answered(taken[0], T0 + 20.5, heard=False)  # a lost answer confirms nothing, but frees a place
    assert bucket.wait(T0 + 20.5, FULL) == 0


def test_without_a_model_only_a_429_makes_anything_wait() -> None:
    bucket = confirmed(None)
    for _ in range(10_000):
        bucket.take(T0)
    assert bucket.wait(T0, FULL) == 0
    bucket.throttle(bucket.take(T0), now=T0, retry_after=3)
    assert bucket.wait(T0, FULL) == pytest.approx(3)


# -- the pacer: who goes first, and who is told there will be no token -----------------------------------


def paced_pacer(clock: FakeClock, limit: Limit) -> Pacer:
    return Pacer(RateLimits(arm_writes=limit), clock=clock, sleep=clock.sleep)


async def request(pacer: Pacer, priority: Priority, deadline: float | None = None) -> Ticket | None:
    """A token for a write, whose request is then answered at once (no remaining count)."""
    ticket = await pacer.acquire(Kind.ARM_WRITES, priority, deadline)
    if ticket is not None:
        pacer.settle(ticket, Answer(200))
    return ticket


def test_tokens_go_to_scoped_runs_first_then_by_rank_then_in_order_of_arrival() -> None:
    async def test() -> None:
        clock = FakeClock()
        pacer = paced_pacer(clock, Limit(1, 1))
        await request(pacer, Priority(FULL))  # the bucket is empty now
        served: list[str] = []

        async def wait(name: str, priority: Priority) -> None:
            assert await request(pacer, priority) is not None
            served.append(name)

        waiters = [
            asyncio.create_task(wait("full, removal", Priority(FULL, 3))),
            asyncio.create_task(wait("full, copy on one more gateway", Priority(FULL, 2))),
            asyncio.create_task(wait("full, CA trusted nowhere (1)", Priority(FULL, 1))),
            asyncio.create_task(wait("full, CA trusted nowhere (2)", Priority(FULL, 1))),
        ]
        await settle()
        waiters.append(asyncio.create_task(wait("event", Priority(SCOPED, 2))))
        for _ in range(5):
            await clock.advance(1.0)
        await asyncio.gather(*waiters)

        assert served == [
            "event",
            "full, CA trusted nowhere (1)",
            "full, CA trusted nowhere (2)",
            "full, copy on one more gateway",
            "full, removal",
        ]

    run(test)


def test_an_event_takes_the_reserve_at_once_while_a_full_run_waits_for_refills() -> None:
    async def test() -> None:
        clock = FakeClock()
        pacer = paced_pacer(clock, Limit(40, 10))
        full = [asyncio.create_task(request(pacer, Priority(FULL, 1))) for _ in range(50)]
        await settle()
        assert sum(task.done() for task in full) == 36  # all but the reserve

        event = [await request(pacer, Priority(SCOPED, 1)) for _ in range(4)]

        assert all(ticket is not None for ticket in event)  # no waiting at all
        await clock.advance(1.45)  # the full run goes on at the refill rate once the event is served
        assert sum(task.done() for task in full) == 36 + 10
        await clock.advance(1.0)
        await asyncio.gather(*full)

    run(test)


def test_a_waiter_that_cannot_have_a_token_before_its_deadline_gets_none_at_the_deadline() -> None:
    async def test() -> None:
        clock = FakeClock()
        pacer = paced_pacer(clock, Limit(2, 1))
        deadline = clock.now + 1.5
        tickets = [asyncio.create_task(request(pacer, Priority(SCOPED), deadline)) for _ in range(5)]
        await settle()
        await clock.advance(1.0)
        assert [t.done() for t in tickets] == [True, True, True, False, False]
        await clock.advance(0.5)
        results = [t.result() for t in tickets]
        assert [r is not None for r in results] == [True, True, True, False, False]
        assert await request(pacer, Priority(SCOPED), deadline) is None  # past it: at once

    run(test)


# -- the edge: one request under the pacer ---------------------------------------------------------------


def throttled(retry_after: float) -> Answer:
    return Answer(429, None, retry_after)


def test_a_429_is_waited_out_and_sent_again_while_the_run_has_time() -> None:
    async def test() -> None:
        clock = FakeClock()
        pacer = paced_pacer(clock, Limit(200, 10))
        answers = [throttled(2.0), throttled(2.0), Answer(201, 150)]
        sent: list[float] = []

        async def send() -> Answer:
            sent.append(clock.now)
            return answers.pop(0)

        lane = pacer.lane(urgent=True, budget=60)  # a full run would wait for the reserve to refill too
        with lane.calling(rank=1):
            request = asyncio.create_task(pacer.paced(Kind.ARM_WRITES, send, lambda answer: answer))
            await settle()
            for _ in range(4):
                await clock.advance(1.0)
            assert (await request).status == 201

        assert [round(at - T0, 3) for at in sent] == [0, 2, 4]

    run(test)


def test_a_429_past_the_run_s_deadline_ends_the_call_as_throttled() -> None:
    async def test() -> None:
        clock = FakeClock()
        pacer = paced_pacer(clock, Limit(200, 10))

        async def send() -> Answer:
            return throttled(10.0)

        lane = pacer.lane(urgent=True, budget=3)
        with lane.calling(rank=1):
            request = asyncio.create_task(pacer.paced(Kind.ARM_WRITES, send, lambda answer: answer))
            await settle()
            await clock.advance(3.0)
            with pytest.raises(Throttled):
                await request

    run(test)


def test_outside_any_run_a_429_is_handed_back_to_the_sdk() -> None:
    async def test() -> None:
        clock = FakeClock()
        pacer = paced_pacer(clock, Limit(200, 10))

        async def send() -> Answer:
            return throttled(1.0)

        assert (await pacer.paced(Kind.ARM_WRITES, send, lambda answer: answer)).status == 429

    run(test)


def test_the_token_a_write_was_admitted_with_pays_for_its_request_and_an_unused_one_comes_back() -> None:
    async def test() -> None:
        clock = FakeClock()
        pacer = paced_pacer(clock, Limit(10, 1))
        bucket = pacer.buckets[Kind.ARM_WRITES]
        lane = pacer.lane(urgent=True, budget=60)

        async def send() -> Answer:
            return Answer(200, None)

        admitted = await lane.admit(Kind.ARM_WRITES, rank=1)
        assert isinstance(admitted, Ticket)
        with lane.calling(rank=1, prepaid=admitted):
            await pacer.paced(Kind.ARM_READS, send, lambda answer: answer)  # a GET first: a read token
            await pacer.paced(Kind.ARM_WRITES, send, lambda answer: answer)  # the PUT: the admitted token
        assert bucket.issued == 1
        assert bucket.tokens == pytest.approx(9)

        unused = await lane.admit(Kind.ARM_WRITES, rank=1)
        with lane.calling(rank=1, prepaid=unused):
            pass  # e.g. the write found the run out of time once it had a connection
        assert bucket.tokens == pytest.approx(9)

    run(test)
