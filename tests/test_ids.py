"""APIM names ignore case: certificate ids, gateway names and gateway CA ids enter normalised through
the APIM adapter (the real SDK over the emulator), so the core's plain comparisons agree.

ARM keeps each resource's name as the PUT that created it spelled it, and a gateway's entry is a
resource of its own: a certificate listed as ``TRUSTSYNC-...`` can have its entries listed as
``trustsync-...``, and an operator's ``MyRoot`` can be ``MYROOT`` on a gateway.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy, make_certificate
from shared.chain import Authority, Certificate, Role, TrustPath
from shared.clients import Clients
from shared.desired import Desired, VersionPath, desired_state
from shared.expiry import expiry_horizon
from shared.plan import ActionKind, Observed, certificate_id_for
from shared.ports import ApimCertificate, VersionInfo
from shared.settings import load_settings
from tests.conftest import GATEWAYS
from tests.support.harness import holds, import_version, resync, trusted, writes
from tests.support.memory import Calls, MemoryApim
from tests.support.planning import plan_all

WARNING = timedelta(days=30)


def read_through_the_adapter() -> tuple[list[str], Observed]:
    """APIM as the app's own adapter reads it: gateways, certificates, every gateway's CAs."""

    async def read() -> tuple[list[str], Observed]:
        clients = Clients(load_settings(os.environ), os.environ)
        try:
            gateways = await clients.apim.gateways()
            certificates = await clients.apim.certificates()
            cas = {gateway: await clients.apim.gateway_cas(gateway) for gateway in gateways}
        finally:
            await clients.close()
        return gateways, Observed(certificates, cas)

    return asyncio.run(read())


def arrange_ours_spelled_otherwise(
    emu: Emulator, pki: Hierarchy
) -> tuple[Desired, Certificate, Certificate, Certificate]:
    """The root of `pki`'s chain held under an upper-case spelling of the app's id, trusted on gw-west
    by an entry spelled in lower case and missing from gw-east; the intermediate not held at all; and
    a CA of the app's that nothing needs, spelled in upper case, on gw-west in lower case."""
    intermediate, root = (Certificate.from_x509(c) for c in pki.ca_certificates())
    leaf = Certificate.from_x509(pki.issue("orders.internal.example").certificate)
    path = TrustPath(leaf, (Authority(intermediate, Role.INTERMEDIATE), Authority(root, Role.ROOT)), ())
    version = VersionInfo("v1", True, None, leaf.not_after, leaf.sha1_thumbprint, leaf.not_before)
    desired = desired_state({"orders": [VersionPath(version, path)]}, trust_intermediates=False)
    retired = Certificate.from_x509(make_certificate("Retired Issuing CA", is_ca=True).certificate)

    emu.apim.add_certificate(certificate_id_for(root).upper(), root.der)
    emu.apim.set_gateway_ca("gw-west", certificate_id_for(root), trusted=True)
    emu.apim.add_certificate(certificate_id_for(retired).upper(), retired.der)
    emu.apim.set_gateway_ca("gw-west", certificate_id_for(retired), trusted=False)
    return desired, root, intermediate, retired


def test_the_adapter_lists_every_id_normalised(configured: Emulator) -> None:
    emu = configured
    arrange_ours_spelled_otherwise(emu, Hierarchy(intermediates=1))
    emu.apim.add_certificate("MyRoot", make_certificate("Operator Root", is_ca=True).der)
    emu.apim.add_gateway("GW-North")
    emu.apim.set_gateway_ca("GW-North", "MYROOT", trusted=True)
    assert "MyRoot" in emu.apim.certificates  # the emulator keeps each name as created
    assert "MYROOT" in emu.apim.gateway_cas("gw-north")

    gateways, observed = read_through_the_adapter()

    assert sorted(gateways) == sorted([*GATEWAYS, "gw-north"])
    assert "myroot" in observed.certificates
    assert observed.gateway_cas["gw-north"] == {"myroot": True}
    assert all(cid == held.id == cid.lower() for cid, held in observed.certificates.items())
    assert all(cid == cid.lower() for cas in observed.gateway_cas.values() for cid in cas)


def test_expiry_and_observed_after_agree_with_the_plan_on_ids_spelled_otherwise(configured: Emulator) -> None:
    emu = configured
    desired, root, intermediate, retired = arrange_ours_spelled_otherwise(emu, Hierarchy(intermediates=1))
    _, observed = read_through_the_adapter()
    now = datetime.now(UTC)

    actions, conflicts = plan_all(desired, observed, GATEWAYS)

    root_id, intermediate_id, retired_id = map(certificate_id_for, (root, intermediate, retired))
    assert conflicts == ()
    assert sorted((a.kind.value, a.certificate_id, a.gateway) for a in actions) == sorted(
        [
            (ActionKind.UPLOAD_CERTIFICATE.value, intermediate_id, None),  # the root is held: no second copy
            (ActionKind.SET_GATEWAY_CA.value, intermediate_id, "gw-west"),
            (ActionKind.SET_GATEWAY_CA.value, intermediate_id, "gw-east"),
            (ActionKind.SET_GATEWAY_CA.value, root_id, "gw-east"),
            (ActionKind.REMOVE_GATEWAY_CA.value, retired_id, "gw-west"),
            (ActionKind.DELETE_CERTIFICATE.value, retired_id, None),
        ]
    )
    # The plan counts gw-west's lower-case entry as the app's trust in the upper-case certificate:
    # so does the horizon.
    before = expiry_horizon(desired, observed, GATEWAYS, now=now, warning=WARNING)
    assert [(g.gateway, g.certificate_id, g.expires) for g in before.gateways] == [("gw-west", root_id, root.not_after)]
    # The plan's own model of its writes holds one entry per certificate, and leaves nothing to do.
    after = observed.after(actions)
    assert set(after.certificates) == {root_id, intermediate_id}
    assert after.gateway_cas == {gateway: {root_id: True, intermediate_id: False} for gateway in GATEWAYS}
    assert plan_all(desired, after, GATEWAYS) == ((), ())
    horizon = expiry_horizon(desired, after, GATEWAYS, now=now, warning=WARNING)
    assert {(g.gateway, g.certificate_id) for g in horizon.gateways} == {(gw, root_id) for gw in GATEWAYS}


def test_a_run_converges_on_its_own_ids_spelled_otherwise_and_writes_ids_apim_accepts(configured: Emulator) -> None:
    emu = configured
    pki = Hierarchy(intermediates=1)
    _, root, intermediate, retired = arrange_ours_spelled_otherwise(emu, pki)
    import_version(emu, "orders", pki)
    root_id, intermediate_id, retired_id = map(certificate_id_for, (root, intermediate, retired))
    held_root = emu.apim.certificates[root_id.upper()]
    emu.clear_requests()

    answer = resync()

    assert answer.status == 200, answer.body
    assert answer.body["inSync"] is True
    assert [r for r in emu.requests if r.is_write and (r.status or 500) >= 400] == []
    # Every id the app wrote is spelled as its own lower-case form; the root it found under another
    # spelling was neither uploaded again nor replaced.
    assert {r.path.rsplit("/", 1)[-1] for r in emu.requests if r.is_write} == {root_id, intermediate_id, retired_id}
    assert emu.apim.certificates[root_id.upper()].etag == held_root.etag
    assert {cid.lower() for cid in emu.apim.certificates} == {root_id, intermediate_id}
    assert {gw: {cid.lower(): t for cid, t in cas.items()} for gw, cas in trusted(emu).items()} == {
        gateway: {root_id: True, intermediate_id: False} for gateway in GATEWAYS
    }
    # Each gateway's earliest trusted CA is found, though gw-west's entry and the certificate are spelled apart.
    assert {(g["gateway"], g["certificateId"]) for g in answer.body["expiry"]["gateways"]} == {
        (gateway, root_id) for gateway in GATEWAYS
    }
    emu.clear_requests()

    again = resync()

    assert again.body["inSync"] is True
    assert writes(emu) == 0


def test_a_mixed_case_foreign_certificate_and_its_entries_are_never_touched_and_reported_as_foreign(
    configured: Emulator,
) -> None:
    """An operator's ``MyRoot`` (a copy of a needed root, untrusted on gw-west under ``MYROOT``) and
    ``MyIssuing`` (unrelated, trusted on gw-east as ``myIssuing``): a full run leaves both alone."""
    from shared.__main__ import main

    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    emu.apim.add_certificate("MyRoot", backend.authorities[-1].der)
    emu.apim.set_gateway_ca("gw-west", "MYROOT", trusted=False)
    emu.apim.add_certificate("MyIssuing", make_certificate("Operator Issuing CA", is_ca=True).der)
    emu.apim.set_gateway_ca("gw-east", "myIssuing", trusted=True)
    foreign = {"MyRoot": emu.apim.certificates["MyRoot"].etag, "MyIssuing": emu.apim.certificates["MyIssuing"].etag}
    entries = {("gw-west", "myroot"): emu.apim.gateway_ca("gw-west", "myroot").etag}
    entries[("gw-east", "myissuing")] = emu.apim.gateway_ca("gw-east", "myissuing").etag

    answer = resync()

    assert answer.status == 200, answer.body
    touched = [a for a in answer.body["actions"] if a["certificateId"].lower() in {"myroot", "myissuing"}]
    assert touched == []
    assert {cid: emu.apim.certificates[cid].etag for cid in foreign} == foreign
    assert {key: emu.apim.gateway_ca(*key).etag for key in entries} == entries
    assert trusted(emu)["gw-west"]["MYROOT"] is False
    assert trusted(emu)["gw-east"]["myIssuing"] is True
    # The untrusted copy of a root the app trusts is named, with its subject, as not the app's to change.
    (conflict,) = answer.body["conflicts"]
    assert conflict.startswith("gw-west: myroot (")
    assert "not ours to change" in conflict
    assert backend.authorities[-1].subject in conflict
    listed = {
        (gateway["gateway"], entry["certificateId"]): entry
        for gateway in answer.body["gateways"]
        for entry in gateway["certificateAuthorities"]
    }
    assert listed["gw-west", "myroot"]["owner"] == "foreign"
    assert listed["gw-west", "myroot"]["subject"] == emu.apim.certificates["MyRoot"].subject
    assert listed["gw-east", "myissuing"]["owner"] == "foreign"
    assert listed["gw-east", "myissuing"]["isTrusted"] is True
    emu.clear_requests()

    main(["sync"])  # the operator's CLI, a full run again: still nothing of theirs is touched

    assert writes(emu) == 0
    assert {cid: emu.apim.certificates[cid].etag for cid in foreign} == foreign


def test_a_gateway_named_in_mixed_case_is_selected_and_written_through_its_normalised_name(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    emu.apim.add_gateway("GW-North")
    monkeypatch.setenv("APIM_GATEWAYS", "gw-NORTH,gw-west")  # as the operator typed it
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.status == 200, answer.body
    assert answer.body["inSync"] is True
    assert holds(emu, "GW-North", backend.authority_ids)
    assert trusted(emu)["gw-east"] == {}
    assert {gateway["gateway"] for gateway in answer.body["gateways"]} == {"gw-north", "gw-west"}


def test_the_memory_port_keeps_the_port_s_contract() -> None:
    """The engine's own tests run over it: it lists names normalised and matches them ignoring case."""
    calls = Calls()
    apim = MemoryApim(calls)
    apim.add_gateways("GW-1")
    cert = Certificate.from_x509(make_certificate("Operator Root", is_ca=True).certificate)
    apim.held_certificates["MyRoot"] = ApimCertificate("MyRoot", cert.sha1_thumbprint, cert.subject)
    apim.cas["GW-1"]["MYROOT"] = True

    async def use() -> tuple[list[str], dict[str, ApimCertificate], dict[str, bool]]:
        listed = (await apim.gateways(), await apim.certificates(), await apim.gateway_cas("gw-1"))
        await apim.set_gateway_ca("gw-1", "myroot", False, replace=True)
        return listed

    gateways, certificates, cas = asyncio.run(use())

    assert gateways == ["gw-1"]
    assert certificates == {"myroot": ApimCertificate("myroot", cert.sha1_thumbprint, cert.subject)}
    assert cas == {"myroot": True}
    assert apim.cas == {"GW-1": {"MYROOT": False}}  # one entry, under the spelling that created it
