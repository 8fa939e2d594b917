"""The engine under the pacer, over in-memory ports: what a run does when ARM's limits make its writes
wait and its time budget runs out. Outcomes are decided by the tokens a bucket holds, not by how fast
this machine is: buckets here refill so slowly (or, for the ordering tests, so evenly) that which
writes go and in what order is the same on any machine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from emulator.pki import Hierarchy
from shared.chain import Certificate
from shared.engine import Engine
from shared.pacing import Answer, Kind, Limit, Pacer, RateLimits
from shared.plan import certificate_id_for
from shared.report import ActionStatus, Report, RunStatus
from shared.scope import Mode, Scope
from tests.support.memory import Calls, MemoryApim, MemoryVault, settings

GATEWAYS = ("gw-1", "gw-2")
NEVER = 1e-6  # tokens a second: the bucket never refills within a test
SHORT = timedelta(seconds=1)  # a budget the writes cannot all fit in; the run ends when it is over


@dataclass
class PacedApim(MemoryApim):
    """The in-memory APIM with the edge's side of the pacer (`shared.pacing_policy` in the product):
    each write is one request, which takes a token (the one its write was admitted with)."""

    pacer: Pacer = field(default_factory=Pacer)

    async def _request(self, kind: Kind, write: Callable[[], Awaitable[None]]) -> None:
        async def send() -> Answer:
            await write()
            return Answer(200)

        await self.pacer.paced(kind, send, lambda answer: answer)

    async def upload_certificate(self, certificate_id: str, pfx: bytes) -> None:
        await self._request(Kind.ARM_WRITES, lambda: MemoryApim.upload_certificate(self, certificate_id, pfx))

    async def set_gateway_ca(self, gateway: str, certificate_id: str, trusted: bool, *, replace: bool) -> None:
        await self._request(
            Kind.ARM_WRITES,
            lambda: MemoryApim.set_gateway_ca(self, gateway, certificate_id, trusted, replace=replace),
        )

    async def remove_gateway_ca(self, gateway: str, certificate_id: str) -> None:
        await self._request(Kind.ARM_DELETES, lambda: MemoryApim.remove_gateway_ca(self, gateway, certificate_id))

    async def delete_certificate(self, certificate_id: str) -> None:
        await self._request(Kind.ARM_DELETES, lambda: MemoryApim.delete_certificate(self, certificate_id))


class Estate:
    def __init__(self, writes: Limit) -> None:
        self.calls = Calls()
        self.vault = MemoryVault(self.calls)
        self.pacer = Pacer(RateLimits(arm_writes=writes, arm_deletes=writes))
        self.apim = PacedApim(self.calls, pacer=self.pacer)
        self.apim.add_gateways(*GATEWAYS)

    def engine(self) -> Engine:
        return Engine(settings(), self.vault, self.apim, pacer=self.pacer)

    async def run(self, mode: Mode, *names: str, budget: timedelta | None = None) -> Report:
        return await self.engine().run(Scope(frozenset(names) if names else None), mode, budget=budget)

    def drain(self) -> None:
        """Empties the write bucket: from now on every write waits for a refill, in priority order."""
        self.pacer.buckets[Kind.ARM_WRITES].tokens = 0

    def writes(self) -> list[str]:
        return [call for call in self.calls.log if call.startswith(("upload", "put", "remove", "delete"))]


def ids(pki: Hierarchy) -> set[str]:
    return {certificate_id_for(Certificate.from_x509(c)) for c in pki.ca_certificates()}


HANG_GUARD = 60  # seconds: without a time budget these runs would wait for tokens that never come


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), HANG_GUARD))


def test_a_run_out_of_time_is_partial_says_what_is_left_and_the_next_run_finishes() -> None:
    async def test() -> None:
        estate = Estate(Limit(10, NEVER))  # a full run may take 9 of them: one is the events' reserve
        pkis = [Hierarchy(intermediates=1, organization=f"Org{n}") for n in range(3)]
        for n, pki in enumerate(pkis):
            estate.vault.add_version(f"cert{n}", pki)

        first = await estate.run(Mode.FULL, budget=SHORT)

        assert first.status is RunStatus.PARTIAL
        assert first.errors == []
        assert not first.retryable  # not an error: the next run (or an event) continues
        applied = [o for o in first.outcomes if o.status is ActionStatus.APPLIED]
        left = [o for o in first.outcomes if o.status is ActionStatus.DEFERRED]
        assert (len(applied), len(left)) == (9, 6 + 6 * 2 - 9)
        assert sum(first.left().values()) == len(left)
        assert first.to_dict()["left"] == first.left()
        assert len(estate.writes()) == 9
        assert any("time budget of 1s ran out" in warning for warning in first.warnings)

        estate.pacer.buckets[Kind.ARM_WRITES].tokens = 100  # the next run, once the bucket has refilled
        estate.calls.log.clear()
        second = await estate.run(Mode.FULL)

        assert second.status is RunStatus.IN_SYNC
        assert sorted(o.action.describe() for o in second.outcomes) == sorted(o.action.describe() for o in left)
        assert all(estate.apim.trusted_ids(gw) == set().union(*map(ids, pkis)) for gw in GATEWAYS)

    run(test)


def test_removals_wait_for_every_addition_and_are_left_too_when_additions_are() -> None:
    async def test() -> None:
        estate = Estate(Limit(3, NEVER))
        old, new = Hierarchy(intermediates=1), Hierarchy(intermediates=1, organization="Fabrikam")
        estate.vault.add_version("orders", old)
        old_ids = estate.apim.trust(old.ca_certificates())
        estate.vault.add_version("orders", new)
        estate.vault.disable("orders", 1)

        report = await estate.run(Mode.FULL, budget=SHORT)

        assert report.status is RunStatus.PARTIAL
        assert not any(call.startswith(("remove", "delete")) for call in estate.calls.log)
        assert all(old_ids <= estate.apim.trusted_ids(gw) for gw in GATEWAYS)  # trust is never narrowed early
        removals = [o for o in report.outcomes if o.action.narrows]
        assert removals
        assert {o.status for o in removals} == {ActionStatus.DEFERRED}
        assert set(report.left()) == {"set-gateway-ca", "remove-gateway-ca", "delete-certificate"}

    run(test)


def test_a_needed_ca_no_gateway_trusts_goes_before_a_copy_missing_on_one_gateway() -> None:
    async def test() -> None:
        # A token every 250 ms: every write of the run is planned and waiting before the first one comes,
        # however long reading the secrets takes on a busy machine, so the ranks alone decide the order.
        estate = Estate(Limit(10, 4))
        known, new = Hierarchy(intermediates=1), Hierarchy(intermediates=1, organization="Fabrikam")
        estate.vault.add_version("known", known)
        estate.apim.trust(known.ca_certificates(), gateways=["gw-1"])  # missing on gw-2 only
        estate.vault.add_version("new", new)  # in APIM nowhere yet
        estate.drain()

        report = await estate.run(Mode.FULL)

        assert report.in_sync
        order = estate.writes()
        copies = [i for i, call in enumerate(order) if call.split()[-1] in ids(known)]
        firsts = [i for i, call in enumerate(order) if call.split()[-1] in ids(new)]
        assert len(copies) == 2
        assert len(firsts) == 2 + 2 * 2
        assert max(firsts) < min(copies)

    run(test)


def test_an_event_s_writes_go_before_those_a_full_run_has_queued() -> None:
    async def test() -> None:
        estate = Estate(Limit(10, 50))
        for n in range(4):
            estate.vault.add_version(f"bulk{n}", Hierarchy(intermediates=1, organization=f"Bulk{n}"))
        estate.drain()
        full = asyncio.create_task(estate.run(Mode.FULL))
        while len(estate.writes()) < 2:  # the full run is under way, its other writes queued for tokens
            await asyncio.sleep(0.005)
        rotated = Hierarchy(intermediates=1, organization="Rotated")
        estate.vault.add_version("orders", rotated)

        event = await estate.run(Mode.ADDITIONS, "orders")
        written_by_the_event_s_end = len(estate.writes())
        full_report = await full

        assert event.in_sync
        assert full_report.in_sync
        event_writes = [i for i, call in enumerate(estate.writes()) if call.split()[-1] in ids(rotated)]
        assert len(event_writes) == 2 + 2 * 2
        # Between the event's first write and its last, at most one of the full run's writes (the
        # token being handed out as the event arrived) went out; the full run had 20 more queued.
        assert max(event_writes) - min(event_writes) <= len(event_writes)
        assert written_by_the_event_s_end - max(event_writes) == 1
        assert len(estate.writes()) == 8 + 8 * 2 + len(event_writes)

    run(test)


def test_a_budget_no_write_fits_in_says_so_and_what_to_change() -> None:
    async def test() -> None:
        estate = Estate(Limit(100, NEVER))
        estate.vault.add_version("web", Hierarchy(intermediates=1))

        report = await estate.run(Mode.FULL, budget=timedelta(microseconds=1))

        assert report.status is RunStatus.PARTIAL
        assert estate.writes() == []
        assert any("no write could start" in w and "RUN_TIME_BUDGET" in w for w in report.warnings)

        enough = await estate.run(Mode.FULL)
        assert enough.status is RunStatus.IN_SYNC
        assert not any("no write could start" in w for w in enough.warnings)

    run(test)
