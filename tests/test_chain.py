"""Chain extraction from Key Vault secrets: pure, no I/O."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from emulator.pki import Hierarchy, make_certificate, pem_secret, pfx_secret
from shared.chain import (
    PEM_CONTENT_TYPE,
    PKCS12_CONTENT_TYPE,
    Certificate,
    ChainError,
    Role,
    parse_secret,
)


def secret(kind: str, key: object, leaf: x509.Certificate, others: list[x509.Certificate]) -> tuple[str, str]:
    if kind == "pfx":
        return pfx_secret(key, leaf, others), PKCS12_CONTENT_TYPE  # type: ignore[arg-type]
    return pem_secret(key, [leaf, *others]), PEM_CONTENT_TYPE  # type: ignore[arg-type]


def thumbprint(cert: x509.Certificate) -> str:
    return Certificate.from_x509(cert).sha1_thumbprint


@pytest.fixture(params=["pfx", "pem"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("intermediates", [0, 1, 2, 3])
def test_orders_leaf_intermediates_root_by_signature_not_position(kind: str, intermediates: int) -> None:
    pki = Hierarchy(intermediates=intermediates)
    leaf = pki.issue("backend.example")
    cas = pki.ca_certificates()
    shuffled = cas[:]
    random.Random(intermediates).shuffle(shuffled)
    shuffled.reverse()  # never the natural order
    value, content_type = secret(kind, leaf.key, leaf.certificate, shuffled)

    chain = parse_secret(value, content_type, leaf_thumbprint=thumbprint(leaf.certificate))

    assert chain.leaf.der == leaf.der
    assert [c.sha1_thumbprint for c in chain.intermediates] == [thumbprint(c) for c in cas[:-1]]
    assert chain.root is not None
    assert chain.root.sha1_thumbprint == thumbprint(cas[-1])
    assert [a.role for a in chain.authorities] == [Role.INTERMEDIATE] * intermediates + [Role.ROOT]
    assert not chain.root_missing
    assert chain.notes == ()


def test_leaf_found_without_thumbprint(kind: str) -> None:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")
    cas = pki.ca_certificates()
    # The leaf last in the file, and (for the PFX) no key to point at it: found by signatures alone.
    value, content_type = secret(kind, None if kind == "pfx" else leaf.key, cas[1], [cas[0], leaf.certificate])

    chain = parse_secret(value, content_type)

    assert chain.leaf.der == leaf.der
    assert len(chain.authorities) == 2


def test_missing_root_uploads_what_exists_and_says_so(kind: str) -> None:
    pki = Hierarchy(intermediates=2)
    leaf = pki.issue("backend.example")
    cas = pki.ca_certificates()[:-1]  # both intermediates, no root
    value, content_type = secret(kind, leaf.key, leaf.certificate, cas)

    chain = parse_secret(value, content_type, leaf_thumbprint=thumbprint(leaf.certificate))

    assert chain.root is None
    assert chain.root_missing
    assert [a.role for a in chain.authorities] == [Role.INTERMEDIATE, Role.INTERMEDIATE]
    assert any(note.startswith("root missing") for note in chain.notes)


def test_leaf_alone_with_missing_issuer_has_no_authorities(kind: str) -> None:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")
    value, content_type = secret(kind, leaf.key, leaf.certificate, [])

    chain = parse_secret(value, content_type)

    assert chain.authorities == ()
    assert chain.root_missing


def test_self_signed_leaf_is_its_own_anchor(kind: str) -> None:
    leaf = make_certificate("selfsigned.example")
    value, content_type = secret(kind, leaf.key, leaf.certificate, [])

    chain = parse_secret(value, content_type)

    assert chain.leaf_is_anchor
    assert not chain.root_missing
    assert [(a.certificate.der, a.role) for a in chain.authorities] == [(leaf.der, Role.ROOT)]


def test_keyvault_certificate_that_is_itself_a_ca(kind: str) -> None:
    root = make_certificate("Issuing Root", is_ca=True)
    issuing = make_certificate("Issuing CA held in Key Vault", issuer=root, is_ca=True)
    value, content_type = secret(kind, issuing.key, issuing.certificate, [root.certificate])

    chain = parse_secret(value, content_type)

    assert [(a.certificate.common_name, a.role) for a in chain.authorities] == [
        ("Issuing CA held in Key Vault", Role.INTERMEDIATE),
        ("Issuing Root", Role.ROOT),
    ]


def test_unrelated_and_duplicate_certificates_are_ignored_and_reported(kind: str) -> None:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")
    intermediate, root = pki.ca_certificates()
    stranger = make_certificate("Unrelated CA", is_ca=True).certificate
    value, content_type = secret(kind, leaf.key, leaf.certificate, [stranger, intermediate, root, intermediate])

    chain = parse_secret(value, content_type, leaf_thumbprint=thumbprint(leaf.certificate))

    assert [c.common_name for c in chain.unrelated] == ["Unrelated CA"]
    assert chain.duplicates == 1
    assert len(chain.authorities) == 2
    assert any("not on the chain: CN=Unrelated CA" in note for note in chain.notes)
    assert any("1 duplicate" in note for note in chain.notes)


def test_a_forged_link_is_an_error_not_a_chain(kind: str) -> None:
    root = make_certificate("Real Root", is_ca=True)
    impostor = make_certificate("Impostor", is_ca=True)
    # Names the real root as issuer but is signed by another key.
    leaf = make_certificate("backend.example", issuer_name=root.certificate.subject, signing_key=impostor.key)
    value, content_type = secret(kind, leaf.key, leaf.certificate, [root.certificate])

    with pytest.raises(ChainError, match="no certificate of that name signed it"):
        parse_secret(value, content_type, leaf_thumbprint=thumbprint(leaf.certificate))


def test_renewed_ca_with_same_name_picks_the_one_whose_key_signed(kind: str) -> None:
    old_root = make_certificate("Contoso Root", is_ca=True)
    new_root = make_certificate("Contoso Root", is_ca=True)  # same name, new key
    leaf = make_certificate("backend.example", issuer=new_root)
    value, content_type = secret(kind, leaf.key, leaf.certificate, [old_root.certificate, new_root.certificate])

    chain = parse_secret(value, content_type, leaf_thumbprint=thumbprint(leaf.certificate))

    assert chain.root is not None
    assert chain.root.der == new_root.der
    assert [c.der for c in chain.unrelated] == [old_root.der]


def test_leaf_thumbprint_not_in_secret() -> None:
    leaf = make_certificate("selfsigned.example")
    value, content_type = secret("pfx", leaf.key, leaf.certificate, [])

    with pytest.raises(ChainError, match="not in its secret"):
        parse_secret(value, content_type, leaf_thumbprint="00" * 20)


@pytest.mark.parametrize(
    ("value", "content_type", "message"),
    [
        ("not base64 at all!", PKCS12_CONTENT_TYPE, "not valid base64"),
        (base64.b64encode(b"garbage that is not a pfx").decode(), PKCS12_CONTENT_TYPE, "empty password"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", PEM_CONTENT_TYPE, "holds no certificates"),
        ("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", PEM_CONTENT_TYPE, "not valid base64"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", PEM_CONTENT_TYPE, "cannot be parsed"),
        ("hunter2", None, "not a certificate-backed secret"),
        ("hunter2", "text/plain", "not a certificate-backed secret"),
        ("A" * 1_000_001, PKCS12_CONTENT_TYPE, "too large"),
    ],
)
def test_bad_secrets_are_clear_errors(value: str, content_type: str | None, message: str) -> None:
    with pytest.raises(ChainError, match=message):
        parse_secret(value, content_type)


def test_password_protected_pfx_is_refused() -> None:
    leaf = make_certificate("selfsigned.example")
    value = pfx_secret(leaf.key, leaf.certificate, password=b"s3cret")

    with pytest.raises(ChainError, match="password-protected"):
        parse_secret(value, PKCS12_CONTENT_TYPE)


def test_public_pfx_holds_the_certificate_and_no_key() -> None:
    cert = Certificate.from_x509(make_certificate("Some CA", is_ca=True).certificate)

    bundle = pkcs12.load_pkcs12(cert.public_pfx(), b"")

    assert bundle.key is None
    certificates = ([bundle.cert] if bundle.cert else []) + list(bundle.additional_certs)
    assert [c.certificate for c in certificates] == [cert.parsed]


def test_expiry_and_facts() -> None:
    now = datetime.now(UTC)
    issued = make_certificate("Short CA", is_ca=True, not_after=now + timedelta(hours=1))
    cert = Certificate.from_x509(issued.certificate)

    assert cert.is_ca
    assert cert.common_name == "Short CA"
    assert not cert.is_expired(now)
    assert cert.is_expired(now + timedelta(hours=2))
    assert len(cert.sha1_thumbprint) == 40
    assert cert.sha1_thumbprint.isupper()


def test_content_type_parameters_and_case_are_tolerated() -> None:
    leaf = make_certificate("selfsigned.example")
    value = pem_secret(leaf.key, [leaf.certificate])

    chain = parse_secret(value, "Application/X-PEM-File; charset=utf-8")

    assert chain.leaf.der == leaf.der


def test_a_certificate_repeating_an_extension_is_refused_as_unparsable() -> None:
    """cryptography raises DuplicateExtension (not a ValueError) when such a certificate's extensions
    are read; it must become a ChainError like any unparsable certificate, not escape the parser."""
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("duplicated.example")
    der = leaf.der
    authority_key_id, subject_key_id = bytes.fromhex("0603551d23"), bytes.fromhex("0603551d0e")
    assert der.count(authority_key_id) == 1
    repeated = x509.load_der_x509_certificate(der.replace(authority_key_id, subject_key_id))
    value = pem_secret(leaf.key, [repeated, *pki.ca_certificates()])

    with pytest.raises(ChainError, match="appears twice"):
        parse_secret(value, PEM_CONTENT_TYPE)
