"""The concurrency core (shared.workers, the Key Vault first-call gate) and the pure parts of the wiring
(shared.connect): no network."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from functools import partial
from typing import Any

import pytest

from shared.connect import https_proxy
from shared.keyvault import _FirstCallAlone
from shared.workers import TaskGroup


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


def unexpected(error: Exception) -> None:
    raise AssertionError(f"no call should fail here: {error}")


def test_never_more_calls_in_flight_than_the_limit_and_every_call_runs() -> None:
    in_flight, peak = 0, 0
    done: list[int] = []

    async def call(n: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        in_flight -= 1
        return n

    async def main() -> None:
        async with TaskGroup(3) as tasks:
            for n in range(10):
                tasks.start(partial(call, n), then=done.append, on_error=unexpected)
            await tasks.wait()

    run(main())
    assert peak == 3
    assert sorted(done) == list(range(10))


def test_higher_priority_starts_first_and_equals_keep_their_order() -> None:
    started: list[str] = []

    async def call(name: str) -> None:
        started.append(name)
        await asyncio.sleep(0)

    async def main() -> None:
        async with TaskGroup(1) as tasks:
            for name, priority in [("a", 0), ("b", 0), ("c", 2), ("d", 1), ("e", 2)]:
                tasks.start(partial(call, name), then=lambda _: None, on_error=unexpected, priority=priority)
            await tasks.wait()

    run(main())
    assert started == ["a", "c", "e", "d", "b"]  # "a" took the free slot at once


def test_continuations_start_more_tasks_and_wait_covers_them_even_with_one_slot() -> None:
    finished: list[int] = []

    async def call(depth: int) -> int:
        await asyncio.sleep(0)
        return depth

    async def main() -> None:
        async with TaskGroup(1) as tasks:

            def then(depth: int) -> None:
                finished.append(depth)
                if depth < 5:
                    tasks.start(lambda: call(depth + 1), then=then, on_error=unexpected)

            tasks.start(lambda: call(0), then=then, on_error=unexpected)
            await tasks.wait()

    run(main())
    assert finished == [0, 1, 2, 3, 4, 5]


def test_a_failed_call_goes_to_on_error_and_a_bug_in_a_continuation_surfaces_from_wait() -> None:
    errors: list[Exception] = []

    async def failing() -> None:
        raise ValueError("the call failed")

    async def fine() -> int:
        return 1

    def buggy(_: int) -> None:
        raise KeyError("a bug")

    async def main() -> None:
        async with TaskGroup(2) as tasks:
            tasks.start(failing, then=lambda _: None, on_error=errors.append)
            tasks.start(fine, then=buggy, on_error=errors.append)
            with pytest.raises(KeyError, match="a bug"):
                await tasks.wait()

    run(main())
    assert [str(e) for e in errors] == ["the call failed"]


def test_leaving_the_group_early_cancels_running_calls_and_never_starts_queued_ones() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def call(n: int) -> None:
        started.append(n)
        try:
            await asyncio.Event().wait()  # never set: only cancellation ends it
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    async def leave_early() -> None:
        async with TaskGroup(2) as tasks:
            for n in range(5):
                tasks.start(partial(call, n), then=lambda _: None, on_error=unexpected)
            await asyncio.sleep(0)
            raise RuntimeError("leaving")

    with pytest.raises(RuntimeError, match="leaving"):
        run(leave_early())
    assert started == [0, 1]
    assert sorted(cancelled) == [0, 1]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        TaskGroup(0)


VAULT = "https://contoso.vault.azure.net"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ({"https_proxy": "http://lower:3128", "HTTPS_PROXY": "http://upper:3128"}, "http://lower:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "localhost, .vault.azure.net"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "vault.azure.net"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "CONTOSO.vault.azure.net:443"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "contoso.vault.azure.net:8443"}, "http://proxy:3128"),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "azure.net.evil,xcontoso.vault.azure.net"},
            "http://proxy:3128",
        ),
        ({"HTTPS_PROXY": "http://proxy:3128", "no_proxy": ""}, "http://proxy:3128"),
    ],
)
def test_https_proxy_follows_https_proxy_and_no_proxy(environ: dict[str, str], expected: str | None) -> None:
    assert https_proxy(VAULT, environ) == expected


def test_a_key_vault_clients_first_call_goes_alone_and_those_that_waited_then_go_together() -> None:
    first_call_alone = _FirstCallAlone()
    events: list[str] = []
    release_first = asyncio.Event()
    both_inside = asyncio.Event()
    inside = 0

    async def call(name: str) -> None:
        nonlocal inside
        async with first_call_alone():
            events.append(f"{name} in")
            inside += 1
            if name == "first":
                await release_first.wait()
            elif inside == 2:
                both_inside.set()
            else:
                await asyncio.wait_for(both_inside.wait(), timeout=5)  # the other waiter is inside too
            inside -= 1
            events.append(f"{name} out")

    async def main() -> None:
        first = asyncio.create_task(call("first"))
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(call(name)) for name in ("second", "third")]
        await asyncio.sleep(0)
        assert events == ["first in"]  # the others wait while the first is in flight
        release_first.set()
        await asyncio.gather(first, *waiters)

    run(main())
    assert events[:2] == ["first in", "first out"]
    assert events[2:4] == ["second in", "third in"]  # together, not one after the other


def test_after_a_failed_first_call_the_next_call_goes_alone_again() -> None:
    first_call_alone = _FirstCallAlone()
    events: list[str] = []

    async def call(name: str, *, fail: bool = False) -> None:
        async with first_call_alone():
            events.append(f"{name} in")
            await asyncio.sleep(0)
            events.append(f"{name} out")
            if fail:
                raise RuntimeError("the challenge request failed")

    async def main() -> None:
        with pytest.raises(RuntimeError):
            await call("first", fail=True)
        await asyncio.gather(call("second"), call("third"))

    run(main())
    assert events == ["first in", "first out", "second in", "second out", "third in", "third out"]
