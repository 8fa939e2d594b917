"""A run stopped after its k-th write, for every k, is repaired by the next run, and at no point
(checked before every single write, and after the crash) does a gateway stop trusting a CA that the
current or the previous version of a bound certificate needs.

The "crash" is the emulator failing every write after the k-th with a status the SDK does not retry
(409): APIM's state is exactly what a process killed after k writes leaves behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from emulator import Emulator
from emulator.faults import ANY_WRITE
from emulator.pki import Hierarchy
from tests.conftest import GATEWAYS
from tests.resilience.scenarios import (
    EVERY_LATER_CALL,
    MONTH_AGO,
    WEEK_AGO,
    TrustMonitor,
    applied_writes,
    arrange_trusted,
    assert_trusts_exactly,
    deliver_outcome,
    trusted_rotation,
)
from tests.support.harness import Backend, expected_entries, import_version, resync

ROTATION_WRITES = 6  # 2 uploads, then 2 gateway CAs on each of 2 gateways
RESYNC_WRITES = 6  # 1 upload, 2 gateway CAs, then 2 removals and 1 deletion


def crash_after(emu: Emulator, writes: int) -> None:
    emu.faults.add(ANY_WRITE, status=409, on_call=writes + 1, times=EVERY_LATER_CALL)


@pytest.mark.parametrize("k", range(ROTATION_WRITES + 1))
def test_rotation_event_stopped_after_any_write_converges_on_redelivery(emu: Emulator, k: int) -> None:
    rotation = trusted_rotation(emu, old_intermediates=1)
    monitor = TrustMonitor(emu, rotation.needed)
    crash_after(emu, k)
    monitor.watch()

    crashed = deliver_outcome(rotation.event)

    assert applied_writes(emu) == k
    assert (crashed is None) == (k == ROTATION_WRITES)  # any lost write asks Event Grid to deliver again
    if crashed is not None:
        assert "HTTP 409" in str(crashed)
    monitor.check()
    emu.faults.clear()
    monitor.watch()

    assert deliver_outcome(rotation.event) is None

    assert_trusts_exactly(emu, rotation.ids)
    monitor.assert_never_lost()
    emu.clear_requests()
    assert deliver_outcome(rotation.event) is None
    assert applied_writes(emu) == 0


@dataclass(frozen=True)
class Retirement:
    """v1 (A: intermediate + root R) and v2 (B) trusted; v3 (C: a new intermediate under the same root R)
    imported while the app was not listening. A full resync must add C, keep B (previous) and R
    (needed by C), and remove A's intermediate only."""

    a: Backend
    b: Backend
    c: Backend


def missed_rotation(emu: Emulator) -> Retirement:
    pki = Hierarchy(intermediates=1)
    a = import_version(emu, "orders", pki, created=MONTH_AGO)
    b = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"), created=WEEK_AGO)
    arrange_trusted(emu, a)
    arrange_trusted(emu, b)
    c = import_version(emu, "orders", pki.sibling())
    emu.clear_requests()
    return Retirement(a, b, c)


@pytest.mark.parametrize("k", range(RESYNC_WRITES + 1))
def test_full_resync_stopped_after_any_write_converges_on_the_next_run(emu: Emulator, k: int) -> None:
    state = missed_rotation(emu)
    needed = [*state.b.authorities, *state.c.authorities]  # current and previous version
    assert state.a.authorities[-1] in state.c.authorities  # the shared root
    monitor = TrustMonitor(emu, needed)
    crash_after(emu, k)
    monitor.watch()

    crashed = resync()

    assert applied_writes(emu) == k
    assert crashed.status == (200 if k == RESYNC_WRITES else 500), crashed.body
    monitor.check()
    emu.faults.clear()
    monitor.watch()

    answer = resync()

    assert answer.status == 200, answer.body
    assert answer.body["inSync"] is True
    assert_trusts_exactly(emu, state.b.authority_ids | state.c.authority_ids)
    monitor.assert_never_lost()
    assert monitor.trusted == {gw: {cert.sha1_thumbprint for cert in needed} for gw in monitor.gateways}


def trusted_through_foreign_copies(emu: Emulator) -> Backend:
    """The gateways trust the chain through another team's certificates (the same CAs under their ids)."""
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    for number, cert in enumerate(backend.authorities):
        emu.apim.add_certificate(f"corp-ca-{number}", cert.der)
        for gateway in GATEWAYS:
            emu.apim.set_gateway_ca(gateway, f"corp-ca-{number}", trusted=True)
    emu.clear_requests()
    return backend


COPY_WRITES = 6  # per CA (2): our own upload, then our entry on 2 gateways; theirs are never touched


@pytest.mark.parametrize("k", range(COPY_WRITES + 1))
def test_taking_our_own_copies_stopped_after_any_write_never_drops_trust(emu: Emulator, k: int) -> None:
    """The gateways trust the chain through foreign copies. A full resync uploads and trusts the app's own
    copies (never a reference to theirs) and removes nothing of theirs; a crash at any point leaves the
    gateways trusting the chain."""
    backend = trusted_through_foreign_copies(emu)
    monitor = TrustMonitor(emu, backend.authorities)
    crash_after(emu, k)
    monitor.watch()

    crashed = resync()

    assert applied_writes(emu) == k
    assert crashed.status == (200 if k == COPY_WRITES else 500), crashed.body
    monitor.check()
    emu.faults.clear()
    monitor.watch()

    assert resync().body["inSync"] is True

    foreign = {f"corp-ca-{n}" for n in range(2)}
    assert set(emu.apim.certificates) == backend.authority_ids | foreign
    for gateway in GATEWAYS:
        assert emu.apim.gateway_cas(gateway) == expected_entries(emu, backend.authority_ids) | dict.fromkeys(
            foreign, True
        )
    monitor.assert_never_lost()


def retiring_a_chain(emu: Emulator) -> Backend:
    """v1 (Contoso) trusted by the app, v2 (Fabrikam) imported and v1 disabled: a full run adds v2's
    chain (2 uploads, 4 puts), then removes v1's (4 removals, 2 deletions)."""
    old = import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    arrange_trusted(emu, old)
    new = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    emu.clear_requests()
    return new


@pytest.mark.parametrize("n", range(1, 5))
def test_one_failed_addition_stops_every_removal(emu: Emulator, n: int) -> None:
    """Not a crash: one gateway CA put fails (409) and every later write would succeed. Nothing may be
    removed in that run, since the removals are only safe once every addition is in place."""
    backend = retiring_a_chain(emu)
    monitor = TrustMonitor(emu, backend.authorities)
    emu.faults.add("arm.put_gateway_ca", status=409, on_call=n)
    monitor.watch()

    failed = resync()

    assert failed.status == 500
    assert not [r for r in emu.requests if r.method == "DELETE"]
    assert {a["status"] for a in failed.body["actions"] if a["action"].startswith(("remove", "delete"))} == {"skipped"}
    monitor.check()
    assert resync().body["inSync"] is True
    assert_trusts_exactly(emu, backend.authority_ids)
    monitor.assert_never_lost()
