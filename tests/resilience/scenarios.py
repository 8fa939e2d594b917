"""Scenarios and invariant checks shared by the resilience suites.

Everything runs against the emulator through the real functions and SDK clients (tests/support/harness.py);
the helpers here only arrange the vault and APIM, and read what APIM holds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulator import Emulator, Fault
from emulator.faults import ANY_WRITE
from emulator.pki import Hierarchy
from shared.chain import Certificate
from shared.handlers import RetryableError
from shared.plan import certificate_id_for
from tests.conftest import GATEWAYS
from tests.support.harness import Backend, assert_no_private_keys, deliver, expected_entries, import_version

MONTH_AGO = datetime.now(UTC) - timedelta(days=30)
WEEK_AGO = datetime.now(UTC) - timedelta(days=7)
EVERY_LATER_CALL = 10**9  # `times` of a fault that lasts for the rest of the test


@dataclass(frozen=True)
class Rotation:
    """A certificate whose previous version is trusted and whose new version has just been imported."""

    old: Backend
    new: Backend
    event: dict[str, Any]  # the new version's CertificateNewVersionCreated

    @property
    def ids(self) -> set[str]:
        """What APIM must hold when the rotation is done: the new chain and, for the overlap, the old one."""
        return self.old.authority_ids | self.new.authority_ids

    @property
    def needed(self) -> list[Certificate]:
        return [*self.old.authorities, *self.new.authorities]


def arrange_trusted(emu: Emulator, backend: Backend, gateways: Iterable[str] = GATEWAYS) -> None:
    """APIM as the app leaves it once `backend`'s chain is synced, arranged directly (no requests):
    each CA under the app's id on every gateway, the root trusted, the others for chain building.
    `test_faults.test_arranged_state_is_what_the_app_writes` checks that it is the same as what the app writes."""
    for cert in backend.authorities:
        certificate_id = certificate_id_for(cert)
        if certificate_id not in emu.apim.certificates:
            emu.apim.add_certificate(certificate_id, cert.der)
        for gateway in gateways:
            emu.apim.set_gateway_ca(gateway, certificate_id, trusted=cert.is_self_signed)


def trusted_rotation(emu: Emulator, *, old_intermediates: int = 2, via_app: bool = False) -> Rotation:
    """`orders` v1 (Contoso: intermediates + root) trusted on every gateway; v2 (Fabrikam) imported, not yet synced.

    v1's trust is arranged directly unless `via_app` (then v1's event is delivered). The emulator's
    request records start empty after it.
    """
    old = import_version(emu, "orders", Hierarchy(intermediates=old_intermediates), created=MONTH_AGO)
    if via_app:
        deliver(emu.vault.certificate_event("orders"))
    else:
        arrange_trusted(emu, old)
    assert_trusts_exactly(emu, old.authority_ids)
    new = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    emu.clear_requests()  # what the tests count starts here
    return Rotation(old, new, emu.vault.certificate_event("orders"))


def deliver_outcome(event: Mapping[str, Any]) -> RetryableError | None:
    """Delivers an event; the RetryableError that asks Event Grid for a redelivery, if the function raised one."""
    try:
        deliver(event)
    except RetryableError as error:
        return error
    return None


def assert_trusts_exactly(emu: Emulator, ids: set[str], gateways: Iterable[str] = GATEWAYS) -> None:
    """APIM holds exactly `ids`, once each, key-less, and every gateway trusts exactly them."""
    certificates = emu.apim.certificates
    assert set(certificates) == ids
    thumbprints = [stored.thumbprint for stored in certificates.values()]
    assert len(thumbprints) == len(set(thumbprints)), "the same certificate is in APIM twice"
    for gateway in gateways:
        assert emu.apim.gateway_cas(gateway) == expected_entries(emu, ids), gateway
    assert_no_private_keys(emu)


def applied_writes(emu: Emulator) -> int:
    """Writes the emulator carried out and answered with success (not counting injected lost responses)."""
    return sum(1 for r in emu.requests if r.is_write and r.status is not None and r.status < 400 and not r.faulted)


def trusted_thumbprints(emu: Emulator, gateways: Iterable[str] = GATEWAYS) -> dict[str, set[str]]:
    """Per gateway: the SHA-1 thumbprints of the CAs it holds as the chains need them, whatever their ids:
    a self-signed root with isTrusted=true, any other CA in either state (it only builds chains)."""
    by_id = {stored.id.lower(): stored.thumbprint for stored in emu.apim.certificates.values()}
    return {
        gateway: {
            by_id[cid.lower()]
            for cid, ok in emu.apim.gateway_cas(gateway).items()
            if cid.lower() in by_id and (ok or not expected_entries(emu, [cid])[cid])
        }
        for gateway in gateways
    }


class TrustMonitor:
    """ "Never lose trust": a needed CA, once trusted on a gateway, stays trusted there (under any id).

    `check()` compares APIM with what was trusted before; `watch()` runs it before every write the
    emulator serves, so every intermediate state of a run is checked, not only the end state.
    """

    def __init__(self, emu: Emulator, needed: Iterable[Certificate], gateways: Iterable[str] = GATEWAYS) -> None:
        self.emu = emu
        self.needed = {cert.sha1_thumbprint for cert in needed}
        self.gateways = tuple(gateways)
        self.violations: list[str] = []
        self.checks = 0
        self._lock = threading.Lock()
        self._trusted = {gw: found & self.needed for gw, found in trusted_thumbprints(emu, self.gateways).items()}

    def check(self) -> None:
        with self._lock:
            self.checks += 1
            now = trusted_thumbprints(self.emu, self.gateways)
            for gateway, before in self._trusted.items():
                lost = before - now[gateway]
                if lost:
                    self.violations.append(f"check {self.checks}: {gateway} no longer trusts {sorted(lost)}")
                self._trusted[gateway] = before | (now[gateway] & self.needed)

    def watch(self) -> Fault:
        return self.emu.faults.add(ANY_WRITE, status=None, times=EVERY_LATER_CALL, hook=self.check)

    def assert_never_lost(self) -> None:
        self.check()
        assert self.violations == []

    @property
    def trusted(self) -> dict[str, set[str]]:
        with self._lock:
            return {gateway: set(found) for gateway, found in self._trusted.items()}


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The product's log lines at WARNING and above."""
    return [r.getMessage() for r in caplog.records if r.name == "trustsync" and r.levelno >= logging.WARNING]


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trustsync" and r.levelno >= logging.ERROR]
