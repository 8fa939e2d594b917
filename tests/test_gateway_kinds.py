"""Every kind of APIM service, end to end through the real SDK against the emulator: what the app
manages on each, the verdicts, and the classic managed gateway's CA store (CA_STORE=manage).

The emulator's service update follows the 2024-05-01 examples in Azure/azure-rest-api-specs,
specification/apimanagement/resource-manager/Microsoft.ApiManagement/stable/2024-05-01/examples/:
ApiManagementCreateServiceWithSystemCertificates.json (the request's ``certificates[]`` with
``encodedCertificate`` and ``storeName``; the response lists each entry's ``certificate`` facts
without its bytes) and ApiManagementUpdateServiceDisableTls10.json (the update: 200/202 with
``Location``, a long-running operation).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.mgmt.apimanagement.models import ApiManagementServiceUpdateParameters, CertificateConfiguration
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from emulator import Emulator
from emulator.pki import Hierarchy, make_certificate
from tests.conftest import GATEWAYS
from tests.support.harness import Backend, import_version, resync

MONTH_AGO = datetime.now(UTC) - timedelta(days=30)


def classic(emu: Emulator, monkeypatch: pytest.MonkeyPatch, *, sku: str = "Basic", manage: bool = True) -> Emulator:
    """A classic tier without self-hosted gateways: its managed gateway is the only one."""
    for gateway in GATEWAYS:
        emu.apim.remove_gateway(gateway)
    emu.apim.sku = sku
    if manage:
        monkeypatch.setenv("CA_STORE", "manage")
    return emu


def store(emu: Emulator) -> set[tuple[str, str]]:
    """The CA store as (storeName, thumbprint)."""
    return {(entry.store_name, entry.thumbprint) for entry in emu.apim.ca_store}


def expected_store(*backends: Backend) -> set[tuple[str, str]]:
    found = set()
    for backend in backends:
        for cert in backend.authorities:
            found.add(("Root" if cert.is_self_signed else "CertificateAuthority", cert.sha1_thumbprint))
    return found


def store_updates(emu: Emulator) -> list[dict[str, Any]]:
    """Every PATCH of the service as it went on the wire."""
    return [json.loads(r.body) for r in emu.requests if r.operation == "arm.update_service"]


def managed_verdicts(answer_body: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in answer_body["verdicts"]["rejected"] if v["gateway"] == "managed"]


# -- no trust can be set --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sku", "says"),
    [
        ("Consumption", "the Consumption tier takes no CA certificates"),
        ("StandardV2", "ignores the service's CA store"),
    ],
)
def test_a_tier_where_no_trust_can_be_set_says_so_and_is_not_in_sync(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, sku: str, says: str
) -> None:
    emu = classic(configured, monkeypatch, sku=sku)
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["inSync"] is False
    assert answer.body["status"] == "failed"
    assert any(says in error for error in answer.body["errors"]), answer.body["errors"]
    service = answer.body["service"]
    assert service["tier"] == sku
    assert [t["kind"] for t in service["targets"] if t["judged"]] == ["no trust can be set"]
    assert store_updates(emu) == []  # CA_STORE=manage writes no store a tier does not read


# -- the classic managed gateway: verdicts only ---------------------------------------------------------


def test_a_classic_tier_is_judged_by_its_ca_store_and_not_written_when_ca_store_is_off(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = classic(configured, monkeypatch, manage=False)
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    before = resync()
    intermediate, root = backend.pki.ca_certificates()
    emu.apim.add_store_entry(root.public_bytes(_DER), "Root")  # what an operator does in the portal
    emu.apim.add_store_entry(intermediate.public_bytes(_DER), "CertificateAuthority")
    after = resync()

    assert before.body["status"] == "drift"
    (rejected,) = managed_verdicts(before.body)
    assert rejected["certificate"] == "orders"
    (target,) = [t for t in before.body["service"]["targets"] if t["name"] == "managed"]
    assert target == {
        "kind": "managed gateway CA store",
        "name": "managed",
        "manages": "verdicts only (CA_STORE=off)",
        "judged": True,
    }
    assert after.body["status"] == "in-sync", after.body
    assert after.body["verdicts"]["accepted"] == 1
    assert store_updates(emu) == []


def test_the_managed_gateway_beside_self_hosted_gateways_is_reported_not_judged(configured: Emulator) -> None:
    emu = configured
    emu.apim.sku = "Premium"
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "in-sync", answer.body
    targets = answer.body["service"]["targets"]
    assert [(t["kind"], t["judged"]) for t in targets] == [
        *(("self-hosted gateway", True) for _ in GATEWAYS),
        ("managed gateway CA store", False),
    ]
    # Its store trusts nothing: said, without making the run drift.
    (rejected,) = answer.body["service"]["unjudgedVerdicts"]["rejected"]
    assert rejected["gateway"] == "managed"


# -- the classic CA store, managed ------------------------------------------------------------------------


def test_first_sync_writes_the_store_once_with_certificates_alone_and_confirms_it_next_run(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = classic(configured, monkeypatch)
    emu.apim.developer_portal_status = "Disabled"  # an operator's choice the write must not undo
    emu.apim.disable_gateway = True
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    first = resync()
    while_updating = resync()
    emu.apim.finish_update()  # what Azure's 15 minutes or more do
    done = resync()

    assert first.body["status"] == "partial"
    assert first.body["service"]["caStore"]["status"] == "started"
    (body,) = store_updates(emu)  # one update, however many runs meanwhile
    # On the wire: properties.certificates alone (the SDK's update model would add the rest).
    assert list(body) == ["properties"]
    assert list(body["properties"]) == ["certificates"]
    sent = {
        (entry["storeName"], x509.load_der_x509_certificate(base64.b64decode(entry["encodedCertificate"])))
        for entry in body["properties"]["certificates"]
    }
    assert {(where, cert.fingerprint(_SHA1).hex().upper()) for where, cert in sent} == expected_store(backend)
    assert all(set(entry) == {"encodedCertificate", "storeName"} for entry in body["properties"]["certificates"])
    assert while_updating.body["status"] == "partial"
    assert while_updating.body["service"]["caStore"]["status"] == "busy"
    assert done.body["status"] == "in-sync", done.body
    assert done.body["service"]["caStore"]["status"] == "in-step"
    assert store(emu) == expected_store(backend)
    assert emu.apim.developer_portal_status == "Disabled"
    assert emu.apim.disable_gateway is True


def test_the_sdk_update_model_would_send_more_than_the_certificates() -> None:
    """Why the adapter writes the body itself: azure-mgmt-apimanagement's model adds defaults."""
    model = ApiManagementServiceUpdateParameters(
        certificates=[CertificateConfiguration(encoded_certificate="AA==", store_name="Root")]
    )
    properties = model.serialize()["properties"]
    assert properties["developerPortalStatus"] == "Enabled"
    assert properties["disableGateway"] is False


def test_a_dry_run_plans_the_store_and_writes_nothing(configured: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = classic(configured, monkeypatch)
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync({"dryRun": True})

    assert answer.body["status"] == "drift"
    assert answer.body["service"]["caStore"]["status"] == "planned"
    assert store_updates(emu) == []


def test_rotation_keeps_both_intermediates_in_grace_and_drops_the_old_one_when_retired(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = classic(configured, monkeypatch)
    old_pki = Hierarchy(intermediates=1)
    old = import_version(emu, "orders", old_pki, created=MONTH_AGO)
    resync()
    emu.apim.finish_update()
    new = import_version(emu, "orders", old_pki.sibling())  # a new intermediate under the same root

    rotated = resync({"certificates": ["orders"]})  # a scoped run: it only adds
    emu.apim.finish_update()
    in_grace = store(emu)
    old_version = emu.vault.versions("orders")[0]
    emu.vault.set_enabled("orders", old_version, False)  # the old version is retired
    retired = resync()
    copies_while_updating = {c.thumbprint for c in emu.apim.certificates.values()}
    emu.apim.finish_update()
    settled = resync()

    assert rotated.body["service"]["caStore"]["status"] == "started"
    assert in_grace == expected_store(old, new)  # both issuers listed while the old one may be presented
    assert retired.body["service"]["caStore"]["status"] == "started"
    assert store(emu) == expected_store(new)
    assert settled.body["status"] == "in-sync", settled.body
    (old_intermediate, _) = old.authorities
    # The app's copy of the old intermediate marks the store entry as its own: it stays while the store
    # holds the entry (a refused or lost write would otherwise leave an entry nobody can drop)...
    assert old_intermediate.sha1_thumbprint in copies_while_updating
    # ...and goes once the store no longer does.
    assert old_intermediate.sha1_thumbprint not in {c.thumbprint for c in emu.apim.certificates.values()}


def test_a_foreign_entry_blocks_the_write_and_is_named(configured: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = classic(configured, monkeypatch)
    foreign = make_certificate("Operators Root", is_ca=True)
    emu.apim.add_store_entry(foreign.der, "Root")
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "drift"
    outcome = answer.body["service"]["caStore"]
    assert outcome["status"] == "refused"
    assert foreign.certificate.fingerprint(_SHA1).hex().upper() in outcome["detail"]
    assert "cannot reproduce" in outcome["detail"]
    assert store_updates(emu) == []
    assert {entry.subject for entry in emu.apim.ca_store} == {"CN=Operators Root"}


def test_a_service_busy_with_another_update_is_left_for_the_next_run(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = classic(configured, monkeypatch)
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    emu.apim.start_update({"publisherName": "someone else's update"})

    busy = resync()
    tried_while_busy = emu.count("arm.update_service")
    emu.apim.finish_update()
    emu.faults.add("arm.update_service", status=409)  # an update started between the re-read and the write
    conflict = resync()
    written = resync()

    assert busy.body["status"] == "partial"
    assert busy.body["service"]["caStore"]["status"] == "busy"
    assert "provisioningState Updating" in busy.body["service"]["caStore"]["detail"]
    assert tried_while_busy == 0  # the fresh read said Updating: not even an attempt
    assert conflict.body["status"] == "partial"
    assert conflict.body["service"]["caStore"]["status"] == "busy"
    assert conflict.body["errors"] == []
    assert written.body["service"]["caStore"]["status"] == "started"
    emu.apim.finish_update()
    assert store(emu) == expected_store(backend)


def test_more_than_ten_entries_are_refused_before_writing(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = classic(configured, monkeypatch)
    for number in range(6):  # 6 roots and 6 intermediates
        import_version(emu, f"backend{number}", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "drift"
    outcome = answer.body["service"]["caStore"]
    assert outcome["status"] == "refused"
    assert "12 CAs" in outcome["detail"]
    assert store_updates(emu) == []


def test_the_emulator_refuses_an_eleventh_entry_as_arm_does(configured: Emulator) -> None:
    emu = configured
    entries = [
        {
            "encodedCertificate": base64.b64encode(make_certificate(f"CA {n}", is_ca=True).der).decode(),
            "storeName": "Root",
        }
        for n in range(11)
    ]
    with pytest.raises(Exception, match="At most 10"):
        emu.apim.start_update({"certificates": entries})
    assert emu.apim.provisioning_state == "Succeeded"


_DER = Encoding.DER
_SHA1 = hashes.SHA1()  # noqa: S303 - a thumbprint, as APIM reports it


def test_the_cli_status_shows_the_kind_each_target_and_the_managed_gateway(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.__main__ import EXIT_DRIFT, main

    emu = classic(configured, monkeypatch)
    import_version(emu, "orders", Hierarchy(intermediates=1))

    assert main(["status"]) == EXIT_DRIFT

    out = capsys.readouterr().out
    assert "service tier Basic (classic)" in out
    assert "managed gateway CA store managed: the service's CA store (CA_STORE=manage)" in out
    assert "managed REJECTED orders" in out
    assert "CA store planned" in out
    assert store_updates(emu) == []


# -- v2 tiers: backend TLS pins (BACKEND_TLS=manage) -----------------------------------------------------
# The emulator follows the 2025-03-01-preview examples ApiManagementCreateBackendWithCustomAssignedCertificate_X509Names.json
# and ApiManagamentCreateBackendWithCustomAssignedCertificate_Thumbprints.json: the pins at properties.properties.tls.


def v2(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    for gateway in GATEWAYS:
        emu.apim.remove_gateway(gateway)
    emu.apim.sku = "StandardV2"
    monkeypatch.setenv("BACKEND_TLS", "manage")
    return emu


def pins(emu: Emulator, backend_id: str) -> set[tuple[str, str | None]]:
    tls = emu.apim.backend(backend_id).properties["properties"]["tls"]
    return {(entry["name"], entry["issuerCertificateThumbprint"]) for entry in tls["serverX509Names"]}


def issuer_pin(backend: Backend) -> tuple[str, str]:
    issuing = backend.authorities[0]
    return ("backend.internal.example", issuing.sha1_thumbprint)


def test_v2_first_sync_pins_the_backend_and_changes_only_its_tls_block(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = v2(configured, monkeypatch)
    emu.apim.add_backend(
        "orders-api",
        "https://backend.internal.example/orders",
        properties={"tls": {"validateCertificateChain": True, "validateCertificateName": True}},
    )
    emu.apim.add_backend("public-api", "https://api.example.org/")  # serves no bound certificate
    untouched = emu.apim.backend("public-api")
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    first = resync()
    second = resync()

    assert first.body["status"] == "in-sync", first.body
    assert first.body["service"]["backends"] == [
        {"backend": "orders-api", "certificate": "orders", "status": "applied"}
    ]
    assert pins(emu, "orders-api") == {issuer_pin(backend)}
    tls = emu.apim.backend("orders-api").properties["properties"]["tls"]
    assert tls["validateCertificateChain"] is True  # as found
    (patch,) = [r for r in emu.requests if r.operation == "arm.update_backend"]
    assert patch.api_version == "2025-03-01-preview"
    assert {name.lower(): value for name, value in patch.headers.items()}["if-match"].strip('"') != "*"  # the ETag read
    assert list(json.loads(patch.body)) == ["properties"]
    assert list(json.loads(patch.body)["properties"]) == ["properties"]
    assert emu.apim.backend("public-api") == untouched
    assert second.body["service"]["backends"][0]["status"] == "in-step"
    assert emu.count("arm.update_backend") == 1


def test_v2_rotation_keeps_both_issuers_pinned_in_grace(configured: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = v2(configured, monkeypatch)
    emu.apim.add_backend("orders-api", "https://backend.internal.example/")
    pki = Hierarchy(intermediates=1)
    old = import_version(emu, "orders", pki, created=MONTH_AGO)
    resync()
    new = import_version(emu, "orders", pki.sibling())

    rotated = resync({"certificates": ["orders"]})
    in_grace = pins(emu, "orders-api")
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    retired = resync()

    assert rotated.body["status"] == "in-sync", rotated.body
    assert in_grace == {issuer_pin(old), issuer_pin(new)}
    assert retired.body["status"] == "in-sync", retired.body
    assert pins(emu, "orders-api") == {issuer_pin(new)}


def test_v2_backend_named_in_backend_certificates_is_pinned(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = v2(configured, monkeypatch)
    emu.apim.add_backend("orders-lb", "https://10.0.0.4/")  # an address: its host tells nothing
    monkeypatch.setenv("BACKEND_CERTIFICATES", "orders-lb=orders")
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "in-sync", answer.body
    assert pins(emu, "orders-lb") == {issuer_pin(backend)}


def test_v2_in_a_cloud_without_the_preview_api_version_gives_the_one_line_error(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = v2(configured, monkeypatch)
    emu.arm_api_versions = ("2024-05-01",)
    emu.apim.add_backend("orders-api", "https://backend.internal.example/")
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "failed"
    (error,) = answer.body["errors"]
    assert error == (
        "HTTP 400 NoRegisteredProviderFound: this cloud's Resource Manager does not offer the api-version the app "
        "uses; it offers: 2024-05-01"
    )
    assert emu.count("arm.update_backend") == 0


def test_v2_with_backend_tls_off_says_no_trust_is_set(configured: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    emu = v2(configured, monkeypatch)
    monkeypatch.setenv("BACKEND_TLS", "off")
    emu.apim.add_backend("orders-api", "https://backend.internal.example/")
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "failed"
    assert any("BACKEND_TLS=manage" in error for error in answer.body["errors"])
    assert emu.count("arm.list_backends") == 0


def test_an_additions_only_run_leaves_dropping_the_apps_own_entry_to_a_full_run(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = classic(configured, monkeypatch)
    pki = Hierarchy(intermediates=1)
    import_version(emu, "orders", pki, created=MONTH_AGO)
    resync()
    emu.apim.finish_update()
    new = import_version(emu, "orders", pki.sibling())
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)  # the old one retired at once

    scoped = resync({"certificates": ["orders"]})  # adds only: it may not drop the old intermediate
    full = resync()
    emu.apim.finish_update()

    assert scoped.body["status"] == "drift"
    assert scoped.body["service"]["caStore"]["status"] == "refused"
    assert "a full-scope run writes the store" in scoped.body["service"]["caStore"]["detail"]
    assert full.body["service"]["caStore"]["status"] == "started"
    assert store(emu) == expected_store(new)


def test_v2_a_backend_changed_meanwhile_is_left_for_the_next_run(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = v2(configured, monkeypatch)
    emu.apim.add_backend("orders-api", "https://backend.internal.example/")
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    emu.faults.add("arm.update_backend", status=412)  # its owner saved it between our GET and PATCH

    conflicted = resync()
    converged = resync()

    assert conflicted.body["status"] == "drift"
    assert conflicted.body["errors"] == []
    assert "changed by someone else meanwhile" in conflicted.body["service"]["backends"][0]["detail"]
    assert converged.body["status"] == "in-sync", converged.body
    assert pins(emu, "orders-api") == {issuer_pin(backend)}
