"""Duplicate, reordered and concurrent deliveries converge; repeats write nothing; APIM never
holds a certificate twice; a concurrent change is detected (If-Match), not overwritten.

Real threads run real invocations at once. Where a test needs one precise interleaving, an emulator
hook (a fault that fails nothing) holds a request until the other run got there, or runs the other
invocation right at that point: synchronisation, not sleeps.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from emulator import Emulator
from emulator.pki import Hierarchy
from shared.chain import Certificate
from shared.handlers import RetryableError
from shared.plan import certificate_id_for
from tests.conftest import GATEWAYS
from tests.resilience.scenarios import (
    MONTH_AGO,
    WEEK_AGO,
    applied_writes,
    arrange_trusted,
    assert_trusts_exactly,
    deliver_outcome,
    trusted_rotation,
)
from tests.support.harness import Backend, deliver, import_version, resync

HOLD_TIMEOUT = 20  # seconds a held request waits for the other run before the test fails


class Rendezvous:
    """Holds each of `parties` requests until all have arrived (an emulator hook)."""

    def __init__(self, parties: int) -> None:
        self._barrier = threading.Barrier(parties, timeout=HOLD_TIMEOUT)
        self.broken = False

    def __call__(self) -> None:
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            self.broken = True


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def assert_uploads_identical(emu: Emulator) -> None:
    """Concurrent runs may both PUT the same certificate id: only ever with the same content."""
    uploaded: dict[str, set[bytes]] = {}
    for record in emu.requests:
        if record.operation == "arm.put_certificate":
            pfx = base64.b64decode(json.loads(record.body)["properties"]["data"])
            bundle = pkcs12.load_pkcs12(pfx, b"")
            (certificate,) = [c.certificate for c in [bundle.cert, *bundle.additional_certs] if c is not None]
            assert bundle.key is None
            der = certificate.public_bytes(serialization.Encoding.DER)
            uploaded.setdefault(record.path.rsplit("/", 1)[1].lower(), set()).add(der)
    assert uploaded
    assert all(len(found) == 1 for found in uploaded.values()), "two runs uploaded different certificates under one id"


# -- duplicates and order ------------------------------------------------------------------------------


def test_the_same_event_five_times_writes_once(emu: Emulator) -> None:
    rotation = trusted_rotation(emu)
    writes_per_delivery = []

    for _ in range(5):
        emu.clear_requests()
        assert deliver_outcome(rotation.event) is None
        writes_per_delivery.append(applied_writes(emu))

    assert writes_per_delivery == [2 + 2 * len(GATEWAYS), 0, 0, 0, 0]
    assert_trusts_exactly(emu, rotation.ids)


def test_the_old_version_s_event_after_the_new_one_changes_nothing(emu: Emulator) -> None:
    rotation = trusted_rotation(emu)
    old_event = emu.vault.certificate_event("orders", emu.vault.versions("orders")[0])
    assert deliver_outcome(rotation.event) is None
    before = {gateway: emu.apim.gateway_ca_entities(gateway) for gateway in GATEWAYS}
    emu.clear_requests()

    assert deliver_outcome(old_event) is None

    assert applied_writes(emu) == 0
    assert {gateway: emu.apim.gateway_ca_entities(gateway) for gateway in GATEWAYS} == before  # ETags too


def test_a_late_event_for_a_retired_version_does_not_bring_its_chain_back(emu: Emulator) -> None:
    """v1's event arrives after v3: v1 is neither current nor previous, so its CAs stay removed."""
    v1 = import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    v1_event = emu.vault.certificate_event("orders")
    v2 = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"), created=WEEK_AGO)
    v3 = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Northwind"))
    arrange_trusted(emu, v2)
    arrange_trusted(emu, v3)
    emu.clear_requests()

    assert deliver_outcome(v1_event) is None

    assert applied_writes(emu) == 0
    assert_trusts_exactly(emu, v2.authority_ids | v3.authority_ids)
    assert not v1.authority_ids & set(emu.apim.certificates)


# -- runs at once ----------------------------------------------------------------------------------------


def test_two_deliveries_of_one_rotation_at_once(emu: Emulator) -> None:
    rotation = trusted_rotation(emu)
    both_listed = Rendezvous(2)
    emu.faults.add("arm.list_gateways", status=None, times=2, hook=both_listed)

    outcomes = at_once(lambda: deliver_outcome(rotation.event), lambda: deliver_outcome(rotation.event))

    assert outcomes == [None, None]
    assert not both_listed.broken
    assert_trusts_exactly(emu, rotation.ids)  # each CA once, every gateway trusting it
    assert_uploads_identical(emu)
    emu.clear_requests()
    assert deliver_outcome(rotation.event) is None
    assert applied_writes(emu) == 0


def test_two_certificates_sharing_an_intermediate_rotate_at_once(emu: Emulator) -> None:
    pki = Hierarchy(intermediates=1)
    orders = import_version(emu, "orders", pki, hostname="orders.internal.example")
    payments = import_version(emu, "payments", pki, hostname="payments.internal.example")
    assert orders.authority_ids == payments.authority_ids
    events = [emu.vault.certificate_event("orders"), emu.vault.certificate_event("payments")]
    both_listed = Rendezvous(2)
    emu.faults.add("arm.list_gateways", status=None, times=2, hook=both_listed)

    outcomes = at_once(*(lambda event=event: deliver_outcome(event) for event in events))

    assert outcomes == [None, None]
    assert not both_listed.broken
    assert_trusts_exactly(emu, orders.authority_ids)
    assert_uploads_identical(emu)
    emu.clear_requests()
    for event in events:
        assert deliver_outcome(event) is None
    assert applied_writes(emu) == 0
    assert resync().body["inSync"] is True


def test_two_full_resyncs_at_once_remove_the_retired_chain_once(emu: Emulator) -> None:
    rotation = trusted_rotation(emu)
    arrange_trusted(emu, rotation.new)
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    both_listed = Rendezvous(2)
    emu.faults.add("arm.list_gateways", status=None, times=2, hook=both_listed)

    answers = at_once(resync, resync)

    assert [answer.status for answer in answers] == [200, 200], [answer.body for answer in answers]
    assert not both_listed.broken
    assert_trusts_exactly(emu, rotation.new.authority_ids)


def test_a_full_resync_racing_a_rotation_never_removes_what_the_rotation_added(emu: Emulator) -> None:
    """The resync reads Key Vault (one version), then the rotation lands (new version imported, its event
    delivered and applied), then the resync reads APIM and sees CAs it did not expect. It must confirm
    against Key Vault read again, after APIM, and remove nothing."""
    old = import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    arrange_trusted(emu, old)
    emu.clear_requests()
    resync_read_the_vault = threading.Event()
    landed: list[Backend] = []

    def rotation_lands() -> None:
        assert resync_read_the_vault.wait(HOLD_TIMEOUT)
        landed.append(import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam")))
        deliver(emu.vault.certificate_event("orders"))

    emu.faults.add("kv.get_secret", status=None, after_write=True, hook=resync_read_the_vault.set)
    emu.faults.add("arm.list_gateways", status=None, hook=rotation_lands)

    answer = resync()

    assert answer.status == 200, answer.body
    (new,) = landed
    assert not [a for a in answer.body["actions"] if a["action"] in ("remove-gateway-ca", "delete-certificate")]
    assert not [r for r in emu.requests if r.method == "DELETE"]
    assert_trusts_exactly(emu, old.authority_ids | new.authority_ids)


# -- ETags ---------------------------------------------------------------------------------------------------


def test_a_change_between_reading_the_etag_and_writing_is_detected_not_overwritten(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Updating an entry of ours (isTrusted false → true) is a read-modify-write: the PUT carries the ETag
    just read, and a write by someone else in between makes it fail (412), not overwrite theirs."""
    monkeypatch.setenv("TRUST_INTERMEDIATES", "false")
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    event = emu.vault.certificate_event("orders")
    assert deliver_outcome(event) is None
    intermediate_id = certificate_id_for(backend.authorities[0])
    assert all(emu.apim.gateway_cas(gateway)[intermediate_id] is False for gateway in GATEWAYS)
    monkeypatch.setenv("TRUST_INTERMEDIATES", "true")
    theirs: dict[str, str] = {}

    def someone_else_writes() -> None:
        for gateway in GATEWAYS:
            theirs[gateway] = emu.apim.put_gateway_ca(gateway, intermediate_id, False, if_match=None)[0].etag

    emu.faults.add("arm.put_gateway_ca", status=None, hook=someone_else_writes)
    emu.clear_requests()

    raised = deliver_outcome(event)

    assert isinstance(raised, RetryableError)
    assert "changed by someone else meanwhile" in str(raised)
    # The first put (and any other whose ETag was read before the other writer) failed; theirs survived.
    refused = [r for r in emu.requests if r.operation == "arm.put_gateway_ca" and r.status == 412]
    assert refused
    for put in refused:
        assert put.headers.get("if-match") not in (None, "*")
        gateway = put.path.split("/gateways/")[1].split("/")[0]
        assert emu.apim.gateway_ca(gateway, intermediate_id).etag == theirs[gateway]

    assert deliver_outcome(event) is None  # the redelivery re-plans from what is there now
    assert all(emu.apim.gateway_cas(gateway)[intermediate_id] is True for gateway in GATEWAYS)


def test_concurrent_runs_never_leave_two_copies_of_a_certificate(emu: Emulator) -> None:
    """Five deliveries of two certificates' events at once (same chain): one copy of each CA."""
    pki = Hierarchy(intermediates=2)
    backends = [import_version(emu, name, pki, hostname=f"{name}.example") for name in ("orders", "payments")]
    events: list[Mapping[str, Any]] = [emu.vault.certificate_event(b.name) for b in backends]

    outcomes = at_once(*(lambda event=events[i % 2]: deliver_outcome(event) for i in range(5)))

    assert outcomes == [None] * 5
    assert_trusts_exactly(emu, backends[0].authority_ids)
    assert_uploads_identical(emu)
    thumbprints = Counter(Certificate.from_x509(c).sha1_thumbprint for c in pki.ca_certificates())
    assert Counter(c.thumbprint for c in emu.apim.certificates.values()) == thumbprints
