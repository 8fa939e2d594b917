"""Large estates under ARM's and Key Vault's limits, end to end: the Function App's real functions and
the real SDK clients against the emulator with its limits switched on, scaled down so that each test
takes seconds (ARM's write bucket of 200 + 10/s becomes, e.g., 40 + 250/s, and Retry-After is given
in milliseconds instead of seconds).

The product is told the scaled limits as it would be told other ones (``TRUSTSYNC_RATE_LIMITS``, from
``Emulator.rate_limits``); what it learns from the answers (the remaining counts, Retry-After) is the
emulator's own. Assertions are on what the emulator recorded (counts, statuses, order), never on time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from emulator import Emulator, RequestRecord
from emulator.pki import Hierarchy
from emulator.throttling import KeyVaultLimits, hourly, token_buckets
from shared.chain import Certificate
from shared.handlers import RetryableError
from shared.plan import certificate_id_for
from shared.settings import SETTINGS
from tests.support.harness import Backend, audit, deliver, holds, import_version, resync, trusted

MILLISECONDS = 0.001  # the scaled Retry-After unit
HOLD_TIMEOUT = 60  # seconds the test waits for the full run to get going before it fails


class Estate:
    """A started emulator with G self-hosted gateways and the app configured against it."""

    def __init__(self, emu: Emulator, patch: pytest.MonkeyPatch, gateways: int) -> None:
        self.emu = emu
        self.patch = patch
        self.gateways = [f"gw-{n:02d}" for n in range(1, gateways + 1)]
        for gateway in self.gateways:
            emu.apim.add_gateway(gateway)

    def configure(self, **settings: str) -> None:
        """Points the app at the emulator, telling it the limits the emulator applies now."""
        for setting in SETTINGS:
            self.patch.delenv(setting.name, raising=False)
        for name in ("AZURE_CLIENT_ID", "MSI_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY"):
            self.patch.delenv(name, raising=False)
        for name, value in self.emu.environ(**settings).items():
            self.patch.setenv(name, value)

    def certificates(self, count: int, prefix: str = "svc") -> list[Backend]:
        """`count` certificates, each with a root and an intermediate of its own (two CAs each)."""
        return [
            import_version(self.emu, f"{prefix}-{n:03d}", Hierarchy(intermediates=1, organization=f"{prefix}{n}"))
            for n in range(count)
        ]

    def trusts_everywhere(self, backends: list[Backend]) -> bool:
        wanted = set().union(*(backend.authority_ids for backend in backends))
        return all(holds(self.emu, gateway, wanted) for gateway in self.gateways)

    def writes(self) -> list[RequestRecord]:
        return sorted((r for r in self.emu.requests if r.is_write), key=lambda r: r.started)


MakeEstate = Callable[[int], Estate]


@pytest.fixture
def make_estate(monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeEstate]:
    started: list[Emulator] = []

    def make(gateways: int) -> Estate:
        emu = Emulator(page_size=100).start()
        started.append(emu)
        return Estate(emu, monkeypatch, gateways)

    yield make
    for emu in started:
        emu.stop()


def applied(records: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.status is not None and 200 <= r.status < 300]


def throttled(records: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.status == 429]


@pytest.mark.slow
def test_a_first_sync_of_2000_writes_finishes_in_one_run_under_a_scaled_write_bucket(make_estate: MakeEstate) -> None:
    estate = make_estate(40)
    backends = estate.certificates(25)  # 50 CAs: 50 uploads + 50 x 40 gateway CA puts = 2,050 writes
    estate.emu.arm_limits = token_buckets(writes=(40, 250), deletes=(40, 250), retry_after_unit=MILLISECONDS)
    estate.configure()

    answer = resync()

    assert answer.status == 200, answer.body["errors"][:3]
    assert (answer.body["status"], answer.body["errors"], answer.body["left"]) == ("in-sync", [], {})
    writes = estate.writes()
    assert len(applied(writes)) == 2050
    assert estate.trusts_everywhere(backends)
    # Paced, not retried into success: the SDK's retries alone fail this sync (see the module docstring
    # of docs/guarantees-verification.md's pacing section); the pacer keeps nearly every write inside
    # the bucket.
    assert len(throttled(writes)) <= len(writes) // 100


def test_arm_s_remaining_counts_correct_a_model_that_overestimates_the_bucket(make_estate: MakeEstate) -> None:
    estate = make_estate(10)
    backends = estate.certificates(5)  # 10 uploads + 100 puts
    estate.emu.arm_limits = token_buckets(writes=(20, 100), deletes=(20, 100), retry_after_unit=MILLISECONDS)
    estate.configure()
    # The app believes in ten times the bucket ARM applies (e.g. another worker of the same identity
    # has just drained it): only the counts on ARM's answers can tell it otherwise.
    estate.patch.setenv("TRUSTSYNC_RATE_LIMITS", "arm-writes=200+100/s,arm-deletes=200+100/s")

    answer = resync()

    assert (answer.status, answer.body["status"]) == (200, "in-sync")
    writes = estate.writes()
    assert len(applied(writes)) == 110
    assert len(throttled(writes)) <= 2  # believing its model, the app would have sent ~90 at once
    assert estate.trusts_everywhere(backends)


def test_a_budget_too_short_ends_partial_and_the_next_run_continues_from_apim(make_estate: MakeEstate) -> None:
    estate = make_estate(10)
    backends = estate.certificates(10)  # 20 CAs: 20 uploads + 200 puts
    estate.emu.arm_limits = token_buckets(writes=(20, 100), deletes=(20, 100), retry_after_unit=MILLISECONDS)
    estate.configure(RUN_TIME_BUDGET="1s")

    first = resync()

    assert first.status == 200  # not an error
    assert (first.body["status"], first.body["errors"]) == ("partial", [])
    left = first.body["left"]
    deferred = [a for a in first.body["actions"] if a["status"] == "deferred"]
    assert sum(left.values()) == len(deferred) > 0
    done = len(applied(estate.writes()))
    assert done == sum(1 for a in first.body["actions"] if a["status"] == "applied") > 0
    assert done + len(deferred) == 220
    assert any("time budget of 1s ran out" in warning for warning in first.body["warnings"])

    estate.emu.clear_requests()
    estate.configure(RUN_TIME_BUDGET="60s")
    second = resync()

    assert (second.status, second.body["status"]) == (200, "in-sync")
    assert len(applied(estate.writes())) == len(deferred)  # exactly what was left, nothing twice
    assert estate.trusts_everywhere(backends)


def test_an_event_left_partial_asks_for_a_redelivery_which_finishes_it(make_estate: MakeEstate) -> None:
    estate = make_estate(25)
    estate.emu.arm_limits = token_buckets(writes=(10, 20), deletes=(10, 20), retry_after_unit=MILLISECONDS)
    (rotated,) = estate.certificates(1, prefix="orders")  # 2 uploads + 50 puts
    event = estate.emu.vault.certificate_event(rotated.name)
    estate.configure(RUN_TIME_BUDGET="1s")

    with pytest.raises(RetryableError, match="partial"):
        deliver(event)
    assert 0 < len(applied(estate.writes())) < 52
    estate.configure(RUN_TIME_BUDGET="60s")
    deliver(event)  # Event Grid's redelivery

    assert len(applied(estate.writes())) == 52
    assert estate.trusts_everywhere([rotated])


def test_an_event_during_a_long_full_run_goes_before_the_full_run_s_queued_writes(make_estate: MakeEstate) -> None:
    estate = make_estate(10)
    bulk = estate.certificates(20)  # 40 CAs: 440 writes for the full run
    estate.emu.arm_limits = token_buckets(writes=(20, 100), deletes=(20, 100), retry_after_unit=MILLISECONDS)
    estate.configure()
    under_way = threading.Event()
    estate.emu.faults.add("arm.put_gateway_ca", status=None, on_call=60, hook=under_way.set)
    answers: list[Any] = []
    full_run = threading.Thread(target=lambda: answers.append(resync()))
    full_run.start()
    try:
        assert under_way.wait(HOLD_TIMEOUT), "the full run never got going"
        rotated = import_version(estate.emu, "orders", Hierarchy(intermediates=1, organization="Rotated"))
        deliver(estate.emu.vault.certificate_event("orders"))
    finally:
        full_run.join(HOLD_TIMEOUT)

    assert (answers[0].status, answers[0].body["status"]) == (200, "in-sync")
    writes = estate.writes()
    event_ids = {i.lower() for i in rotated.authority_ids}
    is_event = [any(i in r.path.lower() for i in event_ids) for r in writes]
    positions = [n for n, mine in enumerate(is_event) if mine]
    # Each of the event's writes once (a request sent again after a dropped connection is the same write).
    sent = [(writes[n].operation, writes[n].path.lower(), writes[n].status) for n in positions]
    assert len({(operation, path) for operation, path, _ in sent}) == 2 + 2 * 10, sent
    assert not throttled([writes[n] for n in positions])  # the reserve and the first turn: never throttled
    # Once the event's writes were asked for, the full run's queued ones (hundreds) waited: between the
    # event's first write and its last, only the full run's writes already in flight or handed a token
    # as the event arrived went out (at most MAX_CONCURRENCY), not its queue.
    full_in_between = sum(1 for n in range(positions[0], positions[-1]) if not is_event[n])
    assert full_in_between <= 12
    assert len(writes) - positions[-1] > 100  # the full run still had most of its writes to do
    assert estate.trusts_everywhere([*bulk, rotated])


def test_an_audit_paces_its_key_vault_reads_under_the_vault_s_limit(
    make_estate: MakeEstate, caplog: pytest.LogCaptureFixture
) -> None:
    estate = make_estate(2)
    backends = estate.certificates(100)
    for backend in backends:  # in sync already, as the app leaves it: the audit only reads
        for cert in backend.authorities:
            estate.emu.apim.add_certificate(certificate_id_for(cert), cert.der)
            for gateway in estate.gateways:
                estate.emu.apim.set_gateway_ca(gateway, certificate_id_for(cert), trusted=cert.is_self_signed)
    estate.emu.keyvault_limits = KeyVaultLimits(5, 0.05, retry_after_unit=MILLISECONDS)  # 100/s, 5 at a time
    estate.configure(AUDIT_REMEDIATE="false")

    with caplog.at_level(logging.INFO, logger="trustsync"):
        audit()

    records = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TRUSTSYNC_AUDIT ")]
    assert len(records) == 1
    status, report = records[0].split(" ", 2)[1:]
    assert status == "status=in-sync", json.loads(report)["errors"][:3]
    secrets = [r for r in estate.emu.requests if r.operation == "kv.get_secret"]
    assert len(applied(secrets)) == 100


def test_the_hourly_model_ends_a_run_partial_and_the_next_run_waits_out_the_window(make_estate: MakeEstate) -> None:
    estate = make_estate(10)
    backends = estate.certificates(2)  # 4 uploads + 40 puts; the "hour" allows 20 writes
    estate.emu.arm_limits = hourly(writes=20, period=1.0, retry_after_unit=MILLISECONDS)
    estate.configure(RUN_TIME_BUDGET="1s")

    first = resync()

    assert (first.status, first.body["status"], first.body["errors"]) == (200, "partial", [])
    assert len(applied(estate.writes())) <= 20
    estate.configure(RUN_TIME_BUDGET="60s")
    second = resync()

    assert (second.status, second.body["status"]) == (200, "in-sync")
    assert len(applied(estate.writes())) == 44
    assert estate.trusts_everywhere(backends)


def test_the_arranged_ca_ids_are_the_app_s(make_estate: MakeEstate) -> None:
    # The audit test arranges APIM directly; its ids must be the ones the app itself writes.
    estate = make_estate(1)
    (backend,) = estate.certificates(1)
    estate.configure()
    assert resync().body["status"] == "in-sync"
    assert set(trusted(estate.emu)["gw-01"]) == {
        certificate_id_for(Certificate.from_der(c.der)) for c in backend.authorities
    }
