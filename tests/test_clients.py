"""The pure parts of the wiring (shared.clients) and the Key Vault client's first-call gate: no network."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from shared.clients import https_proxy
from shared.keyvault import _FirstCallAlone


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


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
