"""Trust bundles end to end: TRUST_BUNDLES secrets read through the real SDK clients from the
emulator's Key Vault, their CAs placed on the emulator's APIM gateways, and what OpenSSL's verifier
then says of a backend's leaf on each gateway."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from emulator import Emulator
from emulator.pki import Issued, make_certificate, pem_secret, pfx_secret
from shared.chain import Certificate
from shared.plan import certificate_id_for
from tests.conftest import GATEWAYS
from tests.support.harness import audit, deliver, gateway_accepts, resync, trusted, writes

NOW = datetime.now(UTC)
BUNDLE = "private-roots"


def pem(*certificates: x509.Certificate) -> str:
    return "".join(cert.public_bytes(serialization.Encoding.PEM).decode() for cert in certificates)


def cid(issued: Issued) -> str:
    return certificate_id_for(Certificate.from_x509(issued.certificate))


def leaf_of(issued: Issued) -> Certificate:
    return Certificate.from_x509(issued.certificate)


def entries(emu: Emulator) -> dict[str, dict[str, bool]]:
    return trusted(emu)


def on_every_gateway(emu: Emulator, certificate_id: str, *, is_trusted: bool) -> bool:
    return all(cas.get(certificate_id) is is_trusted for cas in entries(emu).values())


def on_no_gateway(emu: Emulator, certificate_id: str) -> bool:
    return (
        all(certificate_id not in cas for cas in entries(emu).values()) and certificate_id not in emu.apim.certificates
    )


def applied(body: Mapping[str, Any], *kinds: str) -> set[str]:
    return {a["certificateId"] for a in body["actions"] if a["action"] in kinds and a["status"] == "applied"}


class Pki:
    """A private CA as most hand it out: a root kept offline, an issuing CA, leaves."""

    def __init__(self, name: str) -> None:
        self.root = make_certificate(f"{name} Root CA", is_ca=True, organization=name)
        self.issuing = make_certificate(f"{name} Issuing CA", issuer=self.root, is_ca=True, organization=name)

    def leaf_without_root(self, emu: Emulator, certificate: str) -> Issued:
        """A leaf imported with its issuing CA only: the root is in no certificate's secret."""
        leaf = make_certificate(f"{certificate}.internal.example", issuer=self.issuing, dns_names=[f"{certificate}.x"])
        emu.vault.import_certificate(certificate, pfx_secret(leaf.key, leaf.certificate, [self.issuing.certificate]))
        return leaf


@pytest.fixture
def bundled(configured: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("TRUST_BUNDLES", BUNDLE)
    return configured


def test_a_leaf_whose_secret_lacks_its_root_is_accepted_once_a_bundle_holds_the_root(bundled: Emulator) -> None:
    emu = bundled
    contoso = Pki("Contoso")
    leaf = contoso.leaf_without_root(emu, "orders")
    emu.vault.set_secret(BUNDLE, "", content_type="application/x-pem-file")  # an empty bundle: refused
    before = resync()
    assert before.body["inSync"] is False
    assert any("holds no PEM certificate" in error for error in before.body["errors"])
    assert not any(gateway_accepts(emu, gateway, leaf_of(leaf)) for gateway in GATEWAYS)

    emu.vault.set_secret(BUNDLE, pem(contoso.root.certificate), content_type="application/x-pem-file")
    answer = resync()

    assert answer.status == 200, answer.body
    assert answer.body["inSync"] is True
    assert answer.body["verdicts"] == {"accepted": len(GATEWAYS), "rejected": []}
    assert not any("root missing" in warning for warning in answer.body["warnings"])
    assert on_every_gateway(emu, cid(contoso.root), is_trusted=True)
    assert all(gateway_accepts(emu, gateway, leaf_of(leaf)) for gateway in GATEWAYS)
    assert resync().body["actions"] == []  # converged: a second run changes nothing


def test_a_staged_root_rollover(bundled: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new root is trusted on every gateway before any leaf under it exists; the old one stays
    while a needed leaf uses it and goes once none does."""
    emu = bundled
    monkeypatch.setenv("ROTATION_GRACE", "1s")
    old, new = Pki("Contoso"), Pki("Contoso G2")
    old_leaf = old.leaf_without_root(emu, "orders")
    emu.vault.set_secret(BUNDLE, pem(old.root.certificate))
    assert resync().body["inSync"] is True

    # Stage: both roots in the bundle; no leaf under the new one yet.
    emu.vault.set_secret(BUNDLE, pem(old.root.certificate, new.root.certificate))
    staged = resync()
    assert staged.body["inSync"] is True, staged.body
    assert on_every_gateway(emu, cid(new.root), is_trusted=True)
    assert on_every_gateway(emu, cid(old.root), is_trusted=True)

    # The old root leaves the bundle too early: orders' only leaf still depends on it, so it stays.
    emu.vault.set_secret(BUNDLE, pem(new.root.certificate))
    early = resync()
    assert cid(old.root) not in applied(early.body, "remove-gateway-ca", "delete-certificate")
    assert on_every_gateway(emu, cid(old.root), is_trusted=True)
    assert any(cid(old.root) in warning for warning in early.body["warnings"]), early.body["warnings"]
    assert all(gateway_accepts(emu, gateway, leaf_of(old_leaf)) for gateway in GATEWAYS)

    # The backend rotates under the new root, its secret again without the root: the new version's
    # event adds the issuing CA, and the root it needs is already trusted everywhere.
    new_leaf = make_certificate("orders.internal.example", issuer=new.issuing, dns_names=["orders.x"])
    emu.vault.import_certificate("orders", pfx_secret(new_leaf.key, new_leaf.certificate, [new.issuing.certificate]))
    deliver(emu.vault.certificate_event("orders"))
    assert all(gateway_accepts(emu, gateway, leaf_of(new_leaf)) for gateway in GATEWAYS)
    assert on_every_gateway(emu, cid(old.root), is_trusted=True)  # an event run only adds
    # The old version, disabled, is needed no more: a full run takes the old root and CA away.
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    done = resync()

    assert done.body["inSync"] is True, done.body
    assert {cid(old.root), cid(old.issuing)} <= applied(done.body, "delete-certificate")
    assert on_no_gateway(emu, cid(old.root))
    assert on_every_gateway(emu, cid(new.root), is_trusted=True)
    assert all(gateway_accepts(emu, gateway, leaf_of(new_leaf)) for gateway in GATEWAYS)


def _with_key(emu: Emulator) -> str:
    root = make_certificate("Keyed Root", is_ca=True)
    return pem_secret(root.key, [root.certificate])


def _with_leaf(emu: Emulator) -> str:
    root = make_certificate("Some Root", is_ca=True)
    leaf = make_certificate("not-a-ca.example", issuer=root)
    return pem(root.certificate, leaf.certificate)


def _not_pem(emu: Emulator) -> str:
    root = make_certificate("Some Root", is_ca=True)
    return "subject=CN = Some Root\n" + pem(root.certificate)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (_with_key, "holds a private key"),
        (_with_leaf, "is not a CA"),
        (_not_pem, "holds text outside PEM CERTIFICATE blocks (line 1)"),
    ],
)
def test_a_bundle_with_a_key_a_non_ca_or_other_text_is_refused_and_changes_nothing(
    bundled: Emulator, value: Any, said: str
) -> None:
    emu = bundled
    contoso = Pki("Contoso")
    contoso.leaf_without_root(emu, "orders")
    emu.vault.set_secret(BUNDLE, pem(contoso.root.certificate))
    assert resync().body["inSync"] is True
    held = entries(emu)
    certificates = set(emu.apim.certificates)

    secret = value(emu)
    emu.vault.set_secret(BUNDLE, secret)
    emu.clear_requests()
    answer = resync()

    assert answer.status == 500, answer.body
    (error,) = answer.body["errors"]
    assert f"trust bundle secret {BUNDLE}" in error
    assert said in error
    assert "nothing is taken away" in error
    assert "PRIVATE KEY-----" not in error  # nothing of the value is repeated
    assert "MII" not in error
    assert writes(emu) == 0  # the root that left with the bad version stays, nothing of it is added
    assert entries(emu) == held
    assert set(emu.apim.certificates) == certificates


def test_an_expired_or_not_yet_valid_ca_in_a_bundle_is_reported_not_trusted(bundled: Emulator) -> None:
    emu = bundled
    expired = make_certificate(
        "Expired Root", is_ca=True, not_after=NOW - timedelta(days=1), not_before=NOW - timedelta(days=30)
    )
    future = make_certificate("Future Root", is_ca=True, not_before=NOW + timedelta(days=3))
    current = make_certificate("Current Root", is_ca=True)
    emu.vault.set_secret(BUNDLE, pem(expired.certificate, future.certificate, current.certificate))

    answer = resync()

    assert answer.status == 200, answer.body
    assert answer.body["errors"] == []
    warnings = answer.body["warnings"]
    assert any("Expired Root" in w and "expired on" in w and "not trusted" in w for w in warnings)
    assert any("Future Root" in w and "not valid before" in w and "not trusted" in w for w in warnings)
    assert on_every_gateway(emu, cid(current), is_trusted=True)
    assert on_no_gateway(emu, cid(expired))
    assert on_no_gateway(emu, cid(future))


def test_a_bundle_s_new_version_reconciles_and_other_secrets_are_ignored(bundled: Emulator) -> None:
    emu = bundled
    events: list[Mapping[str, Any]] = []
    unsubscribe = emu.vault.subscribe(events.append)
    try:
        emu.vault.set_secret("db-password", "hunter2")  # every secret's event reaches the app
        root = make_certificate("Staged Root", is_ca=True)
        emu.vault.set_secret(BUNDLE, pem(root.certificate))
    finally:
        unsubscribe()
    other, ours = events
    assert ours["eventType"] == other["eventType"] == "Microsoft.KeyVault.SecretNewVersionCreated"

    deliver(other)
    assert writes(emu) == 0
    assert emu.count() == 0  # ignored quietly: not even a read

    deliver(ours)
    assert on_every_gateway(emu, cid(root), is_trusted=True)
    assert emu.count("kv.list_certificate_versions") == 0  # the bundles alone were read


def _removal_estate(emu: Emulator) -> tuple[Pki, Issued, Issued]:
    contoso = Pki("Contoso")
    leaf = contoso.leaf_without_root(emu, "orders")
    unused = make_certificate("Retired Partner Root", is_ca=True)
    emu.vault.set_secret(BUNDLE, pem(contoso.root.certificate, unused.certificate))
    assert resync().body["inSync"] is True
    assert on_every_gateway(emu, cid(unused), is_trusted=True)
    return contoso, leaf, unused


def test_a_ca_that_leaves_every_bundle_is_removed_by_a_full_run_only_when_no_leaf_depends_on_it(
    bundled: Emulator,
) -> None:
    emu = bundled
    contoso, leaf, unused = _removal_estate(emu)
    emu.vault.set_secret(BUNDLE, pem(contoso.root.certificate))  # the unused root leaves

    applied_removals = applied(resync().body, "remove-gateway-ca", "delete-certificate")

    assert cid(unused) in applied_removals
    assert on_no_gateway(emu, cid(unused))
    assert on_every_gateway(emu, cid(contoso.root), is_trusted=True)
    assert all(gateway_accepts(emu, gateway, leaf_of(leaf)) for gateway in GATEWAYS)

    # Now the root orders' leaf depends on leaves the bundle: the full run keeps it.
    emu.vault.set_secret(BUNDLE, pem(make_certificate("Another Root", is_ca=True).certificate))
    kept = resync()
    assert cid(contoso.root) not in applied(kept.body, "remove-gateway-ca", "delete-certificate")
    assert any(f"kept {cid(contoso.root)}" in w for w in kept.body["warnings"]), kept.body["warnings"]
    assert all(gateway_accepts(emu, gateway, leaf_of(leaf)) for gateway in GATEWAYS)


def test_the_audit_that_repairs_additions_only_keeps_what_left_a_bundle(
    bundled: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = bundled
    monkeypatch.setenv("AUDIT_REMEDIATE", "additions")
    contoso, _, unused = _removal_estate(emu)
    emu.vault.set_secret(BUNDLE, pem(contoso.root.certificate))
    audit()
    assert on_every_gateway(emu, cid(unused), is_trusted=True)


@pytest.mark.parametrize("problem", ["missing", "deleted", "forbidden"])
def test_a_named_bundle_missing_deleted_or_forbidden_blocks_every_removal(
    bundled: Emulator, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    emu = bundled
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders")
    _, _, unused = _removal_estate(emu)
    if problem == "missing":
        monkeypatch.setenv("TRUST_BUNDLES", f"{BUNDLE},privat-roots")  # a typo
    elif problem == "deleted":
        emu.vault.delete_secret(BUNDLE)
    else:
        emu.vault.allow_only(["orders"])  # a role on the certificate, none on the bundle
    emu.vault.delete_certificate("orders")  # would retire orders' chain: blocked

    answer = resync()

    assert answer.status == 500, answer.body
    assert answer.body["inSync"] is False
    error = " ".join(answer.body["errors"])
    assert "TRUST_BUNDLES" in error
    assert "nothing is taken away" in error
    assert applied(answer.body, "remove-gateway-ca", "delete-certificate") == set()
    assert on_every_gateway(emu, cid(unused), is_trusted=True)
