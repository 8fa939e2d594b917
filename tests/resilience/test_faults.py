"""A fault on any single call of a rotation is absorbed by the SDK's retries, or fails the
invocation with a clear error, after which the next delivery converges. Trust is never lost meanwhile.

Every call of the two runs is enumerated in a census (checked against a fault-free run), and each
test injects one fault into exactly one call: the event of a rotation (reads, uploads, gateway CA
puts) and the full resync that retires the old version (its removals and deletions).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy
from tests.conftest import GATEWAYS
from tests.resilience.scenarios import (
    MONTH_AGO,
    Rotation,
    TrustMonitor,
    applied_writes,
    arrange_trusted,
    assert_trusts_exactly,
    deliver_outcome,
    errors,
    trusted_rotation,
)
from tests.support.harness import import_version, resync

# Every call the rotation event makes (page size 2: the old chain's 3 CAs list in 2 pages).
ROTATION_CALLS = {
    "kv.list_certificate_versions": 1,
    "kv.get_secret": 2,  # the new version and the previous one, kept for the overlap
    "arm.list_certificates": 2,
    "arm.list_gateways": 1,
    "arm.get_service": 1,  # the service's kind and CA store
    "arm.list_gateway_cas": 4,  # 2 gateways x 2 pages
    "arm.put_certificate": 2,  # the new intermediate and root
    "arm.put_gateway_ca": 4,  # both on both gateways
}
# Every call of the full resync that retires the old version (disabled): Key Vault is read twice,
# the second time after APIM, to confirm the removals.
RETIREMENT_CALLS = {
    "kv.list_certificates": 2,
    "kv.list_certificate_versions": 2,  # the last look lists the versions again, before the removals
    "kv.get_secret": 1,  # and reads no secret the run has read already
    "arm.list_certificates": 3,
    "arm.list_gateways": 1,
    "arm.get_service": 1,
    "arm.list_gateway_cas": 6,
    "arm.delete_gateway_ca": 6,  # 3 old CAs from 2 gateways
    "arm.delete_certificate": 3,
}
WRITES = {"arm.put_certificate", "arm.put_gateway_ca", "arm.delete_gateway_ca", "arm.delete_certificate"}

# What the error names, per call.
CALL_NAMES = {
    "kv.list_certificates": "list certificates of https://",
    "kv.list_certificate_versions": "list versions of certificate orders",
    "kv.get_secret": "read the secret of certificate orders version",
    "arm.list_certificates": "list certificates of apim-emulated",
    "arm.list_gateways": "list gateways of apim-emulated",
    "arm.get_service": "read API Management service apim-emulated",
    "arm.list_gateway_cas": "list certificate authorities of gateway gw-",
    "arm.put_certificate": "upload certificate trustsync-",
    "arm.put_gateway_ca": "set trustsync-",
    "arm.delete_gateway_ca": "remove trustsync-",
    "arm.delete_certificate": "delete certificate trustsync-",
}

# Absorbed by the SDK's retry policy (first retry immediate; Retry-After honoured).
TRANSIENT: dict[str, dict[str, Any]] = {
    "429-retry-after": {"status": 429, "retry_after": 0.05},
    "500": {"status": 500},
    "502": {"status": 502},
    "503": {"status": 503},
    "dropped-connection": {"drop_connection": True},
    "delay": {"status": None, "delay": 0.05},
}
# Not retried by the SDK: the invocation must fail clearly and the next one converge.
HARD: dict[str, dict[str, Any]] = {"404": {"status": 404}, "409": {"status": 409}, "412": {"status": 412}}
# The write happens, its answer is lost.
LOST_RESPONSE: dict[str, dict[str, Any]] = {
    "503-after-write": {"status": 503, "after_write": True},
    "dropped-after-write": {"drop_connection": True, "after_write": True},
    "409-after-write": {"status": 409, "after_write": True},
}


def every_call(census: dict[str, int]) -> list[tuple[str, int]]:
    return [(operation, n) for operation, count in census.items() for n in range(1, count + 1)]


def fault_cases(census: dict[str, int], kinds: dict[str, dict[str, Any]], *, writes_only: bool = False) -> list[Any]:
    return [
        pytest.param(operation, n, kind, id=f"{operation}#{n}-{name}")
        for operation, n in every_call(census)
        if operation in WRITES or not writes_only
        for name, kind in kinds.items()
    ]


def retired_rotation(emu: Emulator) -> Rotation:
    """Both versions trusted, then the old one disabled: a full resync must remove its CAs."""
    rotation = trusted_rotation(emu)
    arrange_trusted(emu, rotation.new)
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    emu.clear_requests()
    return rotation


# -- the census: the parametrization covers every call ----------------------------------------------


def test_arranged_state_is_what_the_app_writes(emu: Emulator) -> None:
    by_app = trusted_rotation(emu, via_app=True)
    written = {gateway: emu.apim.gateway_cas(gateway) for gateway in GATEWAYS}
    certificates = {c.id: c.thumbprint for c in emu.apim.certificates.values()}
    emu.apim.clear()
    for gateway in GATEWAYS:
        emu.apim.add_gateway(gateway)

    arrange_trusted(emu, by_app.old)

    assert {gateway: emu.apim.gateway_cas(gateway) for gateway in GATEWAYS} == written
    assert {c.id: c.thumbprint for c in emu.apim.certificates.values()} == certificates


def test_rotation_census(emu: Emulator) -> None:
    rotation = trusted_rotation(emu)
    emu.clear_requests()

    assert deliver_outcome(rotation.event) is None

    assert Counter(r.operation for r in emu.requests) == ROTATION_CALLS
    assert_trusts_exactly(emu, rotation.ids)


def test_retirement_census(emu: Emulator) -> None:
    rotation = retired_rotation(emu)
    emu.clear_requests()

    answer = resync()

    assert answer.status == 200, answer.body
    assert Counter(r.operation for r in emu.requests) == RETIREMENT_CALLS
    assert_trusts_exactly(emu, rotation.new.authority_ids)


# -- the rotation event -------------------------------------------------------------------------------


@pytest.mark.parametrize(("operation", "n", "kind"), fault_cases(ROTATION_CALLS, TRANSIENT))
def test_transient_fault_on_any_rotation_call_is_absorbed(
    emu: Emulator, operation: str, n: int, kind: dict[str, Any]
) -> None:
    rotation = trusted_rotation(emu)
    monitor = TrustMonitor(emu, rotation.needed)
    monitor.watch()
    fault = emu.faults.add(operation, on_call=n, **kind)

    assert deliver_outcome(rotation.event) is None

    assert fault.fired == 1
    assert_trusts_exactly(emu, rotation.ids)
    monitor.assert_never_lost()


@pytest.mark.parametrize(("operation", "n", "kind"), fault_cases(ROTATION_CALLS, HARD))
def test_hard_fault_on_any_rotation_call_fails_clearly_then_the_next_delivery_converges(
    emu: Emulator, caplog: pytest.LogCaptureFixture, operation: str, n: int, kind: dict[str, Any]
) -> None:
    rotation = trusted_rotation(emu)
    monitor = TrustMonitor(emu, rotation.needed)
    monitor.watch()
    fault = emu.faults.add(operation, on_call=n, **kind)
    caplog.set_level(logging.INFO, logger="trustsync")

    raised = deliver_outcome(rotation.event)

    assert fault.fired == 1
    status = f"HTTP {kind['status']}"
    if (operation, kind["status"]) == ("kv.list_certificate_versions", 404):
        # Key Vault says the certificate does not exist: taken at its word (it was deleted), not retried.
        assert raised is None
        assert [m for m in errors(caplog) if "orders does not exist" in m]
        assert applied_writes(emu) == 0
    else:
        assert raised is not None, "a failed Azure call must make Event Grid deliver the event again"
        assert CALL_NAMES[operation] in str(raised)
        assert status in str(raised) or "not found" in str(raised)
        assert [m for m in errors(caplog) if CALL_NAMES[operation] in m]
    monitor.check()
    caplog.clear()

    assert deliver_outcome(rotation.event) is None  # Event Grid's redelivery

    assert_trusts_exactly(emu, rotation.ids)
    monitor.assert_never_lost()
    assert errors(caplog) == []


@pytest.mark.parametrize(("operation", "n", "kind"), fault_cases(ROTATION_CALLS, LOST_RESPONSE, writes_only=True))
def test_lost_response_on_any_rotation_write_converges(
    emu: Emulator, operation: str, n: int, kind: dict[str, Any]
) -> None:
    rotation = trusted_rotation(emu)
    monitor = TrustMonitor(emu, rotation.needed)
    monitor.watch()
    fault = emu.faults.add(operation, on_call=n, **kind)

    raised = deliver_outcome(rotation.event)

    assert fault.fired == 1
    if kind.get("status") == 409:
        assert raised is not None
        assert CALL_NAMES[operation] in str(raised)
        assert deliver_outcome(rotation.event) is None
    else:
        assert raised is None  # the SDK retried the PUT; the write is idempotent
    assert_trusts_exactly(emu, rotation.ids)
    monitor.assert_never_lost()


def test_every_later_call_failing_is_survived_too(emu: Emulator) -> None:
    """Not a single fault: Azure refuses every call of the run (409), then is back."""
    rotation = trusted_rotation(emu)
    monitor = TrustMonitor(emu, rotation.needed)
    monitor.watch()
    for operation in ROTATION_CALLS:
        emu.faults.add(operation, status=409, times=100)

    raised = deliver_outcome(rotation.event)

    assert raised is not None
    assert applied_writes(emu) == 0
    emu.faults.clear()
    monitor.watch()
    assert deliver_outcome(rotation.event) is None
    assert_trusts_exactly(emu, rotation.ids)
    monitor.assert_never_lost()


# -- the full resync that removes the old chain -------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "n", "kind"),
    [
        *fault_cases(RETIREMENT_CALLS, {"503": TRANSIENT["503"]}),
        *fault_cases(RETIREMENT_CALLS, {"dropped-connection": TRANSIENT["dropped-connection"]}, writes_only=True),
    ],
)
def test_transient_fault_on_any_retirement_call_is_absorbed(
    emu: Emulator, operation: str, n: int, kind: dict[str, Any]
) -> None:
    rotation = retired_rotation(emu)
    monitor = TrustMonitor(emu, rotation.new.authorities)
    monitor.watch()
    fault = emu.faults.add(operation, on_call=n, **kind)

    answer = resync()

    assert fault.fired == 1
    assert answer.status == 200, answer.body
    assert answer.body["inSync"] is True
    assert_trusts_exactly(emu, rotation.new.authority_ids)
    monitor.assert_never_lost()


@pytest.mark.parametrize(("operation", "n", "kind"), fault_cases(RETIREMENT_CALLS, {"409": HARD["409"]}))
def test_hard_fault_on_any_retirement_call_fails_clearly_then_the_next_resync_converges(
    emu: Emulator, operation: str, n: int, kind: dict[str, Any]
) -> None:
    rotation = retired_rotation(emu)
    monitor = TrustMonitor(emu, rotation.new.authorities)
    monitor.watch()
    fault = emu.faults.add(operation, on_call=n, **kind)

    failed = resync()

    assert fault.fired == 1
    assert failed.status == 500
    assert failed.body["inSync"] is False
    assert any(CALL_NAMES[operation] in error and "HTTP 409" in error for error in failed.body["errors"])
    monitor.check()

    answer = resync()

    assert answer.status == 200, answer.body
    assert answer.body["inSync"] is True
    assert_trusts_exactly(emu, rotation.new.authority_ids)
    monitor.assert_never_lost()


@pytest.mark.parametrize(("operation", "n"), [c for c in every_call(RETIREMENT_CALLS) if c[0] in ("kv.get_secret",)])
def test_404_on_a_listed_version_s_secret_is_retried_not_taken_as_missing(
    emu: Emulator, operation: str, n: int
) -> None:
    """A 404 for a version Key Vault just listed is an inconsistency of the moment: retry, remove nothing."""
    rotation = retired_rotation(emu)
    emu.faults.add(operation, status=404, on_call=n)

    failed = resync()

    assert failed.status == 500
    assert applied_writes(emu) == 0  # an unreadable bound certificate blocks every removal
    assert resync().body["inSync"] is True
    assert_trusts_exactly(emu, rotation.new.authority_ids)


COLD_START_FAULTS = [
    pytest.param("identity.token", {"status": 500}, id="identity-500"),
    pytest.param("identity.token", {"status": 429, "retry_after": 0.05}, id="identity-429"),
    pytest.param("identity.token", {"drop_connection": True}, id="identity-dropped"),
    pytest.param("kv.challenge", {"status": 503}, id="challenge-503"),
    pytest.param("kv.challenge", {"drop_connection": True}, id="challenge-dropped"),
]


@pytest.mark.parametrize(("operation", "kind"), COLD_START_FAULTS)
def test_a_fault_while_a_new_worker_gets_its_tokens_is_absorbed(
    configured: Emulator, operation: str, kind: dict[str, Any]
) -> None:
    """A worker's first invocation fetches managed-identity tokens and learns the vault's challenge (the
    SDK caches it per vault for the process): a vault and APIM of their own (tests/conftest.py) for each."""
    old = import_version(configured, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    arrange_trusted(configured, old)
    new = import_version(configured, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    fault = configured.faults.add(operation, **kind)

    assert deliver_outcome(configured.vault.certificate_event("orders")) is None

    assert fault.fired == 1
    assert_trusts_exactly(configured, old.authority_ids | new.authority_ids)
