"""Never widen or break trust. Entries the app did not create are never changed or deleted; a CA
another bound certificate needs survives; expired CAs are reported, not trusted; bad gateway settings
are clear errors; `managed` is never touched; nothing outside the bound chains is ever trusted.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy, make_certificate, pfx_secret
from shared.backing_secret import PKCS12_CONTENT_TYPE
from shared.chain import Certificate
from shared.plan import certificate_id_for, encoded_thumbprint
from shared.records import AUDIT_RECORD
from tests.conftest import GATEWAYS
from tests.resilience.scenarios import (
    MONTH_AGO,
    WEEK_AGO,
    applied_writes,
    arrange_trusted,
    assert_trusts_exactly,
    deliver_outcome,
    errors,
    problems,
)
from tests.support.harness import audit, expected_entries, gateway_accepts, import_version, resync, trusted

NOW = datetime.now(UTC)


def writes_to_foreign_ids(emu: Emulator) -> list[tuple[str, str, int | None]]:
    """Every write whose target is not one of the app's ids, other than creating a gateway CA entry."""
    found = []
    for record in emu.requests:
        if not record.is_write:
            continue
        target = record.path.rsplit("/", 1)[1]
        creates_gateway_ca = record.operation == "arm.put_gateway_ca" and record.status == 201
        if encoded_thumbprint(target) is None and not creates_gateway_ca:
            found.append((record.method, record.path, record.status))
    return found


def test_foreign_certificates_and_gateway_cas_are_never_changed_or_deleted(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Intermediates trusted as in the field procedure, so that a foreign untrusted copy is a conflict.
    monkeypatch.setenv("TRUST_INTERMEDIATES", "true")
    pki = Hierarchy(intermediates=1)
    intermediate, root = (Certificate.from_x509(c) for c in pki.ca_certificates())
    operators = Certificate.from_x509(make_certificate("Operators' own CA", is_ca=True).certificate)
    emu.apim.add_certificate("corp-root", root.der)  # same thumbprint as our root: reused, never touched
    emu.apim.add_certificate("corp-intermediate", intermediate.der)  # same thumbprint as our intermediate
    emu.apim.add_certificate("operators-ca", operators.der)  # unrelated to any bound certificate
    spare = Certificate.from_x509(make_certificate("Operators' spare CA", is_ca=True).certificate)
    emu.apim.add_certificate("operators-spare", spare.der)  # on no gateway at all: still not ours to delete
    emu.apim.set_gateway_ca("gw-west", "corp-root", trusted=True)
    emu.apim.set_gateway_ca("gw-east", "corp-intermediate", trusted=False)  # theirs: a conflict, not ours to fix
    for gateway in GATEWAYS:
        emu.apim.set_gateway_ca(gateway, "operators-ca", trusted=gateway == "gw-west")
    foreign_certificates = {c.id: c.etag for c in emu.apim.certificates.values()}
    foreign_cas = {gw: {ca.certificate_id: ca.etag for ca in emu.apim.gateway_ca_entities(gw)} for gw in GATEWAYS}
    caplog.set_level(logging.INFO, logger="trustsync")

    import_version(emu, "orders", pki, created=MONTH_AGO)
    assert deliver_outcome(emu.vault.certificate_event("orders")) is None
    new = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    assert deliver_outcome(emu.vault.certificate_event("orders")) is None
    planned = resync({"dryRun": True})
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)  # v1 retired
    assert resync().status == 200
    monkeypatch.setenv("AUDIT_REMEDIATE", "true")
    audit()

    assert writes_to_foreign_ids(emu) == []
    assert {
        c.id: c.etag for c in emu.apim.certificates.values() if encoded_thumbprint(c.id) is None
    } == foreign_certificates
    for gateway in GATEWAYS:
        entities = {ca.certificate_id: ca.etag for ca in emu.apim.gateway_ca_entities(gateway)}
        assert foreign_cas[gateway].items() <= entities.items(), gateway  # still there, same ETag
    assert emu.apim.gateway_cas("gw-east")["corp-intermediate"] is False
    assert any("corp-intermediate" in conflict for conflict in planned.body["conflicts"])
    assert any("corp-intermediate" in m and "not ours to change" in m for m in problems(caplog))
    # The app's own entries are exactly the new chain: the retired one was removed.
    owned = {cid for cid in emu.apim.certificates if encoded_thumbprint(cid) is not None}
    assert owned == new.authority_ids
    for gateway in GATEWAYS:
        assert {
            cid for cid in emu.apim.gateway_cas(gateway) if encoded_thumbprint(cid) is not None
        } == new.authority_ids


def test_a_ca_shared_by_two_bound_certificates_survives_the_rotation_of_one(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = Hierarchy(intermediates=1)
    orders = import_version(emu, "orders", shared, created=MONTH_AGO, hostname="orders.example")
    payments = import_version(emu, "payments", shared, created=MONTH_AGO, hostname="payments.example")
    arrange_trusted(emu, orders)
    # orders rotates twice: its v1 (the shared chain) is now neither current nor previous.
    fabrikam = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"), created=WEEK_AGO)
    assert deliver_outcome(emu.vault.certificate_event("orders")) is None
    northwind = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Northwind"))
    assert deliver_outcome(emu.vault.certificate_event("orders")) is None
    everything = payments.authority_ids | fabrikam.authority_ids | northwind.authority_ids

    answer = resync()
    monkeypatch.setenv("AUDIT_REMEDIATE", "true")
    audit()

    assert answer.status == 200, answer.body
    assert answer.body["actions"] == []
    assert_trusts_exactly(emu, everything)

    # Control: once payments is gone from the vault, nothing needs the shared chain and it goes.
    emu.vault.delete_certificate("payments")
    assert resync().status == 200
    assert_trusts_exactly(emu, fabrikam.authority_ids | northwind.authority_ids)


def expired_intermediate_chain(emu: Emulator) -> tuple[Certificate, Certificate]:
    root = make_certificate("Contoso Root", is_ca=True)
    expired = make_certificate(
        "Contoso Issuing CA 2019",
        issuer=root,
        is_ca=True,
        not_before=NOW - timedelta(days=900),
        not_after=NOW - timedelta(days=1),
    )
    leaf = make_certificate("orders.example", issuer=expired)
    secret = pfx_secret(leaf.key, leaf.certificate, [expired.certificate, root.certificate])
    emu.vault.import_certificate("orders", secret, PKCS12_CONTENT_TYPE)
    return Certificate.from_x509(expired.certificate), Certificate.from_x509(root.certificate)


def test_an_expired_intermediate_is_reported_not_trusted(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    # No valid path runs through an expired CA: the version's chain is refused, naming it, and
    # nothing of it is trusted (not even its root, which anchors no valid path).
    expired_intermediate_chain(emu)
    caplog.set_level(logging.INFO, logger="trustsync")

    assert deliver_outcome(emu.vault.certificate_event("orders")) is None  # bad input: redelivery would not help

    assert_trusts_exactly(emu, set())
    (error,) = errors(caplog)
    assert "no valid trust path" in error
    assert "CA CN=Contoso Issuing CA 2019 expired on" in error
    answer = resync({"dryRun": True})
    assert any("Contoso Issuing CA 2019" in e and "expired" in e for e in answer.body["errors"])


def test_an_intermediate_that_has_expired_since_it_was_trusted_is_reported_and_left_until_the_chain_is_fixed(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    # The refused chain makes the binding incomplete, and an incomplete binding removes nothing (the
    # engine's rule: an unreadable certificate might still need what is there).
    expired, root = expired_intermediate_chain(emu)
    for cert in (expired, root):  # trusted by an earlier run, while it was valid
        emu.apim.add_certificate(certificate_id_for(cert), cert.der)
        for gateway in GATEWAYS:
            emu.apim.set_gateway_ca(gateway, certificate_id_for(cert), trusted=cert == root)
    caplog.set_level(logging.INFO, logger="trustsync")

    audit()  # reports only (AUDIT_REMEDIATE defaults to false)

    (record,) = [r for r in caplog.records if r.getMessage().startswith("TRUSTSYNC_AUDIT")]
    report = json.loads(record.getMessage().split(" ", 2)[2])
    assert report["status"] == "failed"
    assert any("Contoso Issuing CA 2019" in e and "expired" in e for e in report["errors"])
    assert report["actions"] == []

    assert resync().status == 500
    assert_trusts_exactly(emu, {certificate_id_for(expired), certificate_id_for(root)})


def test_gateways_named_in_settings_that_do_not_exist_are_a_clear_error(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("APIM_GATEWAYS", "gw-west,gw-north")
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    caplog.set_level(logging.INFO, logger="trustsync")

    assert deliver_outcome(emu.vault.certificate_event("orders")) is None  # a setting: redelivery would not help

    (error,) = errors(caplog)
    assert "gw-north" in error
    assert "APIM_GATEWAYS" in error
    assert "do not exist" in error
    assert set(emu.apim.gateway_cas("gw-west")) == backend.authority_ids
    assert emu.apim.gateway_cas("gw-east") == {}
    assert not [r for r in emu.requests if "/gateways/gw-north" in r.path or "/gateways/gw-east" in r.path]
    answer = resync()
    assert answer.status == 500
    assert any("gw-north" in e for e in answer.body["errors"])


def test_the_managed_gateway_is_never_read_or_written(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu.apim.include_managed_gateway = True
    rotation_old = import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    assert deliver_outcome(emu.vault.certificate_event("orders")) is None
    new = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    assert deliver_outcome(emu.vault.certificate_event("orders")) is None
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    assert resync().status == 200
    monkeypatch.setenv("AUDIT_REMEDIATE", "true")
    audit()

    assert not [r for r in emu.requests if "/gateways/managed" in r.path.lower()]
    assert emu.apim.gateway_cas("managed") == {}
    assert_trusts_exactly(emu, new.authority_ids)
    assert not rotation_old.authority_ids & set(emu.apim.certificates)

    emu.clear_requests()
    monkeypatch.setenv("APIM_GATEWAYS", "gw-west,managed")
    answer = resync()
    assert answer.status == 500
    assert "APIM_GATEWAYS must not name 'managed'" in answer.body["error"]
    assert emu.count() == 0


def test_a_certificate_a_gateway_outside_the_selection_uses_is_kept(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APIM_GATEWAYS", "gw-west")
    old = import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    arrange_trusted(emu, old)  # on both gateways: someone also uses them on gw-east, outside the selection
    new = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    east_before = emu.apim.gateway_ca_entities("gw-east")

    answer = resync()

    assert answer.status == 200, answer.body
    assert set(emu.apim.gateway_cas("gw-west")) == new.authority_ids
    assert emu.apim.gateway_ca_entities("gw-east") == east_before
    assert old.authority_ids <= set(emu.apim.certificates)
    assert sum("outside the selection use it" in w for w in answer.body["warnings"]) == len(old.authority_ids)


def test_nothing_outside_the_bound_chains_is_ever_trusted(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders")
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("orders.example")
    stray = [c for c in Hierarchy(intermediates=1, organization="Stray").ca_certificates()]  # in the bag, off-chain
    emu.vault.import_certificate("orders", pfx_secret(leaf.key, leaf.certificate, [*pki.ca_certificates(), *stray]))
    unbound = import_version(emu, "payments", Hierarchy(intermediates=1, organization="Unbound"))
    expected = {certificate_id_for(Certificate.from_x509(c)) for c in pki.ca_certificates()}

    assert deliver_outcome(emu.vault.certificate_event("orders")) is None
    assert deliver_outcome(emu.vault.certificate_event("payments")) is None
    answer = resync()
    monkeypatch.setenv("AUDIT_REMEDIATE", "true")
    audit()

    assert answer.status == 200, answer.body
    assert_trusts_exactly(emu, expected)
    leaf_thumbprint = Certificate.from_x509(leaf.certificate).sha1_thumbprint
    assert leaf_thumbprint not in {c.thumbprint for c in emu.apim.certificates.values()}
    assert not unbound.authority_ids & set(emu.apim.certificates)
    assert any("not on the chain" in w for w in answer.body["warnings"])
    assert applied_writes(emu) == 2 + 2 * len(GATEWAYS)
    assert trusted(emu) == {gw: expected_entries(emu, expected) for gw in GATEWAYS}


def test_an_id_that_only_looks_like_ours_is_never_untrusted_or_deleted(emu: Emulator) -> None:
    """Someone uploaded a partner's root as `trustsync-partner-root` and trusts it on both gateways; and
    another certificate sits under the very id the app would give a CA it needs. Neither is the app's."""
    partner = Certificate.from_x509(make_certificate("Partner Root", is_ca=True).certificate)
    emu.apim.add_certificate("trustsync-partner-root", partner.der)
    for gateway in GATEWAYS:
        emu.apim.set_gateway_ca(gateway, "trustsync-partner-root", trusted=True)
    pki = Hierarchy(intermediates=1)
    backend = import_version(emu, "orders", pki)
    root = backend.authorities[-1]
    squatter = Certificate.from_x509(make_certificate("Squatter", is_ca=True).certificate)
    emu.apim.add_certificate(certificate_id_for(root), squatter.der)  # our exact id, another certificate
    before = {c.id: c.etag for c in emu.apim.certificates.values()}

    answer = resync()

    assert answer.status == 200, answer.body
    assert writes_to_foreign_ids(emu) == []
    for gateway in GATEWAYS:
        assert emu.apim.gateway_cas(gateway)["trustsync-partner-root"] is True
    assert {c.id: c.etag for c in emu.apim.certificates.values()}.items() >= before.items()  # nothing overwritten
    assert emu.apim.certificates[certificate_id_for(root)].thumbprint == squatter.sha1_thumbprint
    (conflict,) = answer.body["conflicts"]
    assert certificate_id_for(root) in conflict
    assert answer.body["status"] == "drift"  # the root cannot be trusted until the squatter is removed


def test_a_root_only_a_retired_certificate_carried_stays_while_a_leaf_without_its_root_needs_it(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`orders` holds leaf + issuing CA + root; `payments` the same issuing CA without the root, as
    private CAs usually hand out certificates. Once `orders` is retired no bound secret holds the root,
    so the app cannot check it, but the gateways still need it for `payments`: it stays, and the run
    says what to fix instead of calling itself in sync."""
    pki = Hierarchy(intermediates=1)
    import_version(emu, "orders", pki, created=WEEK_AGO)
    payments = pki.issue("payments.internal.example")
    emu.vault.import_certificate(
        "payments", pfx_secret(payments.key, payments.certificate, [pki.issuer.certificate]), PKCS12_CONTENT_TYPE
    )
    assert resync().status == 200
    root = Certificate.from_x509(pki.root.certificate)
    root_id = certificate_id_for(root)
    leaf = Certificate.from_x509(payments.certificate)
    assert all(gateway_accepts(emu, gateway, leaf) for gateway in GATEWAYS)

    for version in emu.vault.versions("orders"):
        emu.vault.set_enabled("orders", version, False)
    monkeypatch.setenv("AUDIT_REMEDIATE", "true")
    caplog.set_level(logging.INFO, logger="trustsync")
    audit()

    assert root_id in emu.apim.certificates
    for gateway in GATEWAYS:
        assert trusted(emu)[gateway].get(root_id) is True
        assert gateway_accepts(emu, gateway, leaf), f"{gateway} lost the root payments needs"
    (record,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith(AUDIT_RECORD)]
    assert json.loads(record.split(" ", 2)[2])["status"] != "in-sync"
    assert any(f"kept {root_id}" in line and "payments" in line for line in problems(caplog))
