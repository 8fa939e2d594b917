"""The emulator features the resilience suites rely on: a crash after the k-th write, hooks, all faults
firing, bodies in request records, arbitrary secret material, and reset."""

from __future__ import annotations

from emulator import Emulator
from emulator.faults import ANY_WRITE, Faults
from emulator.pki import Hierarchy
from shared.chain import Certificate
from tests.resilience.scenarios import applied_writes, deliver_outcome
from tests.support.harness import import_version


def test_any_write_counts_every_write_and_only_writes() -> None:
    faults = Faults()
    crash = faults.add(ANY_WRITE, status=409, on_call=3, times=10)

    fired = [
        faults.take(operation, write=write)
        for operation, write in [
            ("arm.list_certificates", False),
            ("arm.put_certificate", True),
            ("kv.get_secret", False),
            ("arm.put_gateway_ca", True),
            ("arm.delete_gateway_ca", True),
            ("arm.delete_certificate", True),
        ]
    ]

    assert fired == [None, None, None, None, crash, crash]


def test_every_applicable_fault_fires_and_hooks_run() -> None:
    faults = Faults()
    calls: list[str] = []
    watcher = faults.add(ANY_WRITE, status=None, times=5, hook=lambda: calls.append("watched"))
    failing = faults.add("arm.put_certificate", status=503)

    assert faults.take_all("arm.put_certificate", write=True) == [watcher, failing]
    assert (watcher.fired, failing.fired) == (1, 1)
    assert calls == []  # hooks run when the emulator serves the request, not when counted


def test_a_crash_after_k_writes_through_the_app(emu: Emulator) -> None:
    import_version(emu, "orders", Hierarchy(intermediates=1))
    seen: list[int] = []
    emu.faults.add(ANY_WRITE, status=None, times=100, hook=lambda: seen.append(len(emu.apim.certificates)))
    emu.faults.add(ANY_WRITE, status=409, on_call=2, times=100)

    raised = deliver_outcome(emu.vault.certificate_event("orders"))

    assert raised is not None
    assert applied_writes(emu) == 1
    assert len(seen) == emu.count(writes=True)  # the watcher saw every write, failed or not
    statuses = sorted(r.status or 0 for r in emu.requests if r.is_write)  # completion order varies
    assert statuses[0] in (200, 201)
    assert set(statuses[1:]) == {409}


def test_records_keep_bodies_and_secrets_can_be_replaced(emu: Emulator) -> None:
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    version = emu.vault.versions("orders")[0]
    emu.vault.replace_secret_value("orders", version, "not a certificate", "text/plain")

    assert deliver_outcome(emu.vault.certificate_event("orders")) is None

    (read,) = [r for r in emu.requests if r.operation == "kv.get_secret"]
    assert b'"not a certificate"' in read.response_body
    assert b'"text/plain"' in read.response_body
    assert emu.vault.certificate("orders").x5t  # the version itself is untouched
    assert backend.authority_ids.isdisjoint(emu.apim.certificates)


def test_reset_forgets_state_but_keeps_the_servers(emu: Emulator) -> None:
    import_version(emu, "orders", Hierarchy(intermediates=1))
    assert deliver_outcome(emu.vault.certificate_event("orders")) is None
    url = emu.url
    emu.faults.add("kv.get_secret", status=500)

    emu.reset()

    assert emu.url == url
    assert emu.vault.certificate_names() == []
    assert emu.apim.certificates == {}
    assert emu.apim.gateways == []
    assert emu.faults.pending() == []
    assert emu.requests == []


def test_sibling_hierarchy_shares_the_root_only() -> None:
    pki = Hierarchy(intermediates=2)
    sibling = pki.sibling()
    ours = [Certificate.from_x509(c) for c in pki.ca_certificates()]
    theirs = [Certificate.from_x509(c) for c in sibling.ca_certificates()]
    assert ours[-1] == theirs[-1]
    assert not set(ours[:-1]) & set(theirs[:-1])
    assert len(theirs) == 3
