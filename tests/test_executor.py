"""The executor alone: which slot goes first, and what each write's outcome is as Azure answers."""

from __future__ import annotations

import asyncio
from collections import Counter

from emulator.pki import make_certificate
from shared.chain import Certificate
from shared.executor import LEFT, Executor, Slots, Turn, turn_of, write_problems
from shared.pacing import Pacer
from shared.plan import Action, ActionKind, Precedence, certificate_id_for
from shared.ports import AzureCallError, Throttled, Work
from shared.problems import Problem
from shared.report import ActionStatus
from tests.support.memory import Calls, MemoryApim

GATEWAY = "gw-1"


class Counted:
    """A Progress that keeps its counts, to check that every planned write is counted done once."""

    def __init__(self) -> None:
        self.planned_writes: Counter[Work] = Counter()
        self.done_writes: Counter[Work] = Counter()

    def planned(self, work: Work, count: int = 1) -> None:
        self.planned_writes[work] += count

    def done(self, work: Work, count: int = 1) -> None:
        self.done_writes[work] += count


def upload_and_put(name: str) -> tuple[Action, Action]:
    certificate = Certificate.from_x509(make_certificate(name, is_ca=True).certificate)
    certificate_id = certificate_id_for(certificate)
    upload = Action(ActionKind.UPLOAD_CERTIFICATE, certificate_id, Precedence.FIRST, certificate=certificate)
    put = Action(ActionKind.SET_GATEWAY_CA, certificate_id, Precedence.FIRST, GATEWAY, True)
    return upload, put


def executor(apim: MemoryApim, counts: Counted, *, dry_run: bool = False) -> Executor:
    lane = Pacer().lane(urgent=True, budget=60)
    return Executor(apim, lane, counts, max_concurrency=4, dry_run=dry_run)


def test_a_put_follows_its_upload_applied_skipped_or_deferred_and_every_write_is_counted_done() -> None:
    async def test() -> None:
        calls, counts = Calls(), Counted()
        apim = MemoryApim(calls)
        apim.add_gateways(GATEWAY)
        run = executor(apim, counts)
        fine, failing, throttled = upload_and_put("Fine"), upload_and_put("Failing"), upload_and_put("Throttled")
        calls.fail(f"upload {failing[0].certificate_id}", AzureCallError("upload: HTTP 500", status=500))
        calls.fail(f"upload {throttled[0].certificate_id}", Throttled("upload: HTTP 429 until the budget ran out"))
        pairs = (fine, failing, throttled)
        run.planned_writes([action for pair in pairs for action in pair])

        outcomes = []
        for upload, put in pairs:
            uploading = asyncio.ensure_future(run.write(upload))
            outcomes.append((await run.put(put, uploading), await uploading))

        (fine_put, fine_upload), (failing_put, failing_upload), (throttled_put, throttled_upload) = outcomes
        assert (fine_upload.status, fine_put.status) == (ActionStatus.APPLIED, ActionStatus.APPLIED)
        assert (failing_upload.status, failing_upload.error) == (ActionStatus.FAILED, "upload: HTTP 500")
        assert failing_put.status is ActionStatus.SKIPPED
        assert failing_put.error == f"not set: uploading {failing[0].certificate_id} failed"
        assert throttled_upload.status is ActionStatus.DEFERRED
        assert (throttled_upload.error or "").startswith(LEFT)
        assert (throttled_put.status, throttled_put.error) == (ActionStatus.DEFERRED, LEFT)
        # Only the put whose upload went in was sent.
        assert [call for call in calls.log if call.startswith("put")] == [f"put {GATEWAY} {fine[0].certificate_id}"]
        assert counts.done_writes[Work.WRITES] == counts.planned_writes[Work.WRITES] == 6
        # Only the failed write is a problem of the run, and a retry may get it through.
        everything = [outcome for pair in outcomes for outcome in pair]
        assert write_problems(everything).problems == (Problem("upload: HTTP 500", retryable=True),)

    asyncio.run(test())


def test_a_dry_run_sends_no_write_and_plans_every_one() -> None:
    async def test() -> None:
        calls, counts = Calls(), Counted()
        apim = MemoryApim(calls)
        apim.add_gateways(GATEWAY)
        run = executor(apim, counts, dry_run=True)
        upload, put = upload_and_put("Root")
        run.planned_writes([upload, put])

        outcomes = [await run.write(upload), await run.put(put, None)]

        assert [outcome.status for outcome in outcomes] == [ActionStatus.PLANNED, ActionStatus.PLANNED]
        assert calls.log == []
        assert counts.planned_writes[Work.WRITES] == 0  # nothing to show a bar for: nothing is written

    asyncio.run(test())


def test_a_free_slot_goes_to_the_lowest_turn_then_the_earliest() -> None:
    async def test() -> None:
        slots = Slots(1)
        served: list[str] = []
        busy = asyncio.Event()

        async def occupy() -> None:
            async with slots.hold(Turn.CRITICAL_READ):
                await busy.wait()

        async def take(name: str, turn: Turn) -> None:
            async with slots.hold(turn):
                served.append(name)

        first = asyncio.create_task(occupy())
        await asyncio.sleep(0)  # it holds the only slot
        arrivals = [
            ("removal", Turn.LAST_WRITE),
            ("copy on one more gateway", Turn.NEXT_WRITE),
            ("put of a new CA", Turn.FIRST_PUT),
            ("gateway list", Turn.GATEWAY_READ),
            ("upload", Turn.FIRST_UPLOAD),
            ("certificate list", Turn.CRITICAL_READ),
            ("second upload", Turn.FIRST_UPLOAD),
        ]
        waiting = [asyncio.create_task(take(name, turn)) for name, turn in arrivals]
        for _ in arrivals:
            await asyncio.sleep(0)  # each queues, in order of arrival
        busy.set()
        await asyncio.gather(first, *waiting)

        assert served == [
            "certificate list",
            "upload",
            "second upload",
            "gateway list",
            "put of a new CA",
            "copy on one more gateway",
            "removal",
        ]
        assert slots.free == 1

    asyncio.run(test())


def test_a_new_ca_s_upload_goes_before_the_gateway_lists_and_its_puts_after_them() -> None:
    new, held = "trustsync-t--new-root-00", "trustsync-t--held-root-00"
    turns = {
        "upload": turn_of(Action(ActionKind.UPLOAD_CERTIFICATE, new, Precedence.FIRST)),
        "put of the new CA": turn_of(Action(ActionKind.SET_GATEWAY_CA, new, Precedence.FIRST, GATEWAY, True)),
        "put of a held CA": turn_of(Action(ActionKind.SET_GATEWAY_CA, held, Precedence.NEXT, GATEWAY, True)),
        "removal": turn_of(Action(ActionKind.REMOVE_GATEWAY_CA, held, Precedence.LAST, GATEWAY)),
    }

    assert turns["upload"] < Turn.GATEWAY_READ < turns["put of the new CA"] < turns["put of a held CA"]
    assert turns["put of a held CA"] < turns["removal"]
