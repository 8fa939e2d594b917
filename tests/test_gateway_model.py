"""The gateway path model (docs/gateway-model.md), case by case: where RFC 5280 with our own policy
judged otherwise than the gateway's OpenSSL, the model now judges as OpenSSL does."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from emulator.certs import der_tlv
from emulator.pki import Issued, make_certificate, new_key, pem_secret
from shared import der
from shared.backing_secret import PEM_CONTENT_TYPE, read_secret
from shared.chain import CLOCK_SKEW, Certificate, ChainError, ChainRejected, Role, trust_path, verdict
from tests.differential import as_v1, signed

NOW = datetime.now(UTC)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?!T\d{2}:\d{2}:\d{2}Z)")


def cert(issued: Issued) -> Certificate:
    return Certificate.from_x509(issued.certificate)


def bag_path(leaf: Issued, *cas: Issued) -> list[tuple[str, Role]]:
    bag = [cert(leaf), *map(cert, cas)]
    path = trust_path(bag, leaf_thumbprint=bag[0].sha1_thumbprint, at=NOW)
    return [(a.certificate.common_name, a.role) for a in path.authorities]


# -- too generous before: an intermediate is never an anchor -------------------------------------------


def _constrained_pki(**root_shape: object) -> tuple[Issued, Issued, Issued]:
    root = make_certificate("Constrained Root", is_ca=True, key_type="ec", **root_shape)  # type: ignore[arg-type]
    issuing = make_certificate("Issuing CA", issuer=root, is_ca=True, key_type="ec")
    leaf = make_certificate("leaf.example.test", issuer=issuing, key_type="ec", dns_names=["leaf.example.test"])
    return root, issuing, leaf


def test_a_trusted_intermediate_does_not_lift_its_roots_name_constraints() -> None:
    only_other = x509.NameConstraints(permitted_subtrees=[x509.DNSName("other.test")], excluded_subtrees=None)
    root, issuing, leaf = _constrained_pki(extensions=[(only_other, True)])

    with_root = verdict(cert(leaf), trusted=[cert(root), cert(issuing)], untrusted=[], at=NOW)
    intermediate_only = verdict(cert(leaf), trusted=[cert(issuing)], untrusted=[], at=NOW)

    assert not with_root.accepted
    assert "CN=leaf.example.test" in with_root.reason
    assert with_root.reason.endswith(
        "leaf CN=leaf.example.test: a name it holds is outside the name constraints of a CA above it "
        "(permitted subtree violation)"
    )
    assert not intermediate_only.accepted
    assert intermediate_only.reason == (
        "root missing: CN=Constrained Root (issuer of CN=Issuing CA) is not on the gateway; "
        "CN=Issuing CA has isTrusted=true but is not a self-signed root, so it is no anchor"
    )


def test_a_trusted_intermediate_does_not_lift_its_roots_path_length() -> None:
    root, issuing, leaf = _constrained_pki(path_length=1)
    sub = make_certificate("Sub CA", issuer=issuing, is_ca=True, key_type="ec")
    deep = make_certificate("deep.example.test", issuer=sub, key_type="ec")

    judged = verdict(cert(deep), trusted=[cert(root), cert(issuing)], untrusted=[cert(sub)], at=NOW)

    assert not judged.accepted
    assert "path length constraint violated" in judged.reason
    assert verdict(cert(leaf), trusted=[cert(root)], untrusted=[cert(issuing)], at=NOW).accepted


@pytest.mark.parametrize("usage", [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
def test_an_intermediate_whose_extended_key_usage_allows_no_server_auth_is_refused(usage: ObjectIdentifier) -> None:
    root = make_certificate("Root", is_ca=True, key_type="ec")
    issuing = make_certificate("Client CA", issuer=root, is_ca=True, key_type="ec", extended_key_usage=[usage])
    leaf = make_certificate("leaf.example.test", issuer=issuing, key_type="ec")

    judged = verdict(cert(leaf), trusted=[cert(root)], untrusted=[cert(issuing)], at=NOW)

    assert not judged.accepted
    assert judged.reason.startswith("CA CN=Client CA: extendedKeyUsage allows no serverAuth")
    with pytest.raises(ChainRejected, match="CA CN=Client CA: extendedKeyUsage allows no serverAuth"):
        bag_path(leaf, issuing, root)


def test_a_leaf_whose_root_is_not_on_the_gateway_is_root_missing_naming_it() -> None:
    _, issuing, leaf = _constrained_pki()
    path = trust_path([cert(leaf), cert(issuing)], leaf_thumbprint=None, at=NOW)  # the secret lacks the root
    assert path.root_missing

    for trusted in (True, False):
        judged = verdict(
            cert(leaf), trusted=[cert(issuing)] if trusted else [], untrusted=[] if trusted else [cert(issuing)], at=NOW
        )
        assert not judged.accepted
        assert judged.reason.startswith("root missing: CN=Constrained Root (issuer of CN=Issuing CA)")


def test_a_root_on_the_gateway_with_is_trusted_false_is_named() -> None:
    root, issuing, leaf = _constrained_pki()

    judged = verdict(cert(leaf), trusted=[cert(issuing)], untrusted=[cert(root)], at=NOW)

    assert judged.reason == "no trusted anchor: CN=Constrained Root is on the gateway with isTrusted=false"


# -- too strict before: v1 and extension-less roots are anchors -----------------------------------------


def test_a_v1_root_is_an_anchor() -> None:
    root = as_v1(make_certificate("Old v1 Root", is_ca=True, key_type="ec"))
    assert root.certificate.version is x509.Version.v1
    leaf = make_certificate("leaf.example.test", issuer=root, key_type="ec")

    assert bag_path(leaf, root) == [("Old v1 Root", Role.ROOT)]
    assert verdict(cert(leaf), trusted=[cert(root)], untrusted=[], at=NOW).accepted


def test_a_root_without_basic_constraints_but_with_key_cert_sign_is_an_anchor() -> None:
    root = make_certificate("Bare Root", is_ca=True, key_type="ec", basic_constraints=False)
    leaf = make_certificate("leaf.example.test", issuer=root, key_type="ec")

    assert bag_path(leaf, root) == [("Bare Root", Role.ROOT)]
    assert verdict(cert(leaf), trusted=[cert(root)], untrusted=[], at=NOW).accepted


def test_a_self_signed_leaf_is_its_own_anchor_and_never_an_issuer() -> None:
    self_signed = make_certificate("self.example.test", key_type="ec")
    below = make_certificate("below.example.test", issuer=self_signed, key_type="ec")

    assert verdict(cert(self_signed), trusted=[cert(self_signed)], untrusted=[], at=NOW).accepted
    refused = verdict(cert(below), trusted=[cert(self_signed)], untrusted=[], at=NOW)
    assert not refused.accepted
    assert refused.reason == "CN=self.example.test may not issue certificates: basicConstraints cA=false"


# -- clock skew and full timestamps ---------------------------------------------------------------------


def test_a_ca_a_few_seconds_ahead_of_the_workers_clock_is_tolerated() -> None:
    root = make_certificate("Fresh Root", is_ca=True, key_type="ec", not_before=NOW + timedelta(seconds=20))
    leaf = make_certificate("leaf.example.test", issuer=root, key_type="ec")

    assert verdict(cert(leaf), trusted=[cert(root)], untrusted=[], at=NOW).accepted
    assert bag_path(leaf, root) == [("Fresh Root", Role.ROOT)]


def test_a_ca_beyond_the_clock_skew_is_refused_with_its_full_timestamp() -> None:
    start = (NOW + CLOCK_SKEW + timedelta(seconds=30)).replace(microsecond=0)
    root = make_certificate("Later Root", is_ca=True, key_type="ec", not_before=start)
    leaf = make_certificate("leaf.example.test", issuer=root, key_type="ec")

    judged = verdict(cert(leaf), trusted=[cert(root)], untrusted=[], at=NOW)

    assert judged.reason == f"CA CN=Later Root is not valid before {start:%Y-%m-%dT%H:%M:%SZ}"
    with pytest.raises(ChainRejected) as caught:
        bag_path(leaf, root)
    assert f"CA CN=Later Root is not valid before {start:%Y-%m-%dT%H:%M:%SZ}" in caught.value.reasons


def test_every_validity_refusal_prints_full_utc_timestamps() -> None:
    expired = {"not_before": NOW - timedelta(days=30), "not_after": NOW - timedelta(days=1)}
    root = make_certificate("Root", is_ca=True, key_type="ec")
    old_ca = make_certificate("Old CA", issuer=root, is_ca=True, key_type="ec", **expired)  # type: ignore[arg-type]
    old_leaf = make_certificate("old.example.test", issuer=root, key_type="ec", **expired)  # type: ignore[arg-type]
    under_old = make_certificate("a.example.test", issuer=old_ca, key_type="ec")
    reasons = [
        verdict(cert(old_leaf), trusted=[cert(root)], untrusted=[], at=NOW).reason,
        verdict(cert(under_old), trusted=[cert(root)], untrusted=[cert(old_ca)], at=NOW).reason,
    ]
    for leaf, cas in ((old_leaf, [root]), (under_old, [old_ca, root])):
        with pytest.raises(ChainRejected) as caught:
            bag_path(leaf, *cas)
        reasons.extend(caught.value.reasons)

    assert all(_TIMESTAMP.search(reason) for reason in reasons), reasons
    assert not any(_BARE_DATE.search(reason) for reason in reasons), reasons


# -- any certificate, no crash ------------------------------------------------------------------------------


def _ca_with(*, subject: bytes | None = None, san: bytes | None = None) -> tuple[x509.Certificate, Issued]:
    """A CA whose subject or subjectAltName is given as raw DER, and a leaf it issued (or None)."""
    key = new_key("ec")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(x509.OID_SUBJECT_ALTERNATIVE_NAME, san), False)
    plain = builder.sign(key, hashes.SHA256())
    tbs = plain.tbs_certificate_bytes
    if subject is not None:
        encoded = name.public_bytes()
        assert tbs.count(encoded) == 2  # issuer and subject
        tbs = der_tlv(0x30, der.single(tbs, der.SEQUENCE).value.replace(encoded, subject))
    odd = signed(tbs, key)
    leaf = make_certificate("leaf.example.test", issuer=Issued(plain, key), key_type="ec")
    return odd, leaf


X400_ADDRESS = bytes.fromhex("3004a3023000")  # GeneralNames { [3] x400Address ORAddress {} }
EDI_PARTY_NAME = bytes.fromhex("3007a505a1030c0178")  # GeneralNames { [5] ediPartyName { [1] "x" } }
BIT_STRING_CN = der_tlv(0x30, der_tlv(0x31, der_tlv(0x30, bytes.fromhex("0603550403") + bytes.fromhex("03020780"))))


@pytest.mark.parametrize(
    ("shape", "odd"),
    [
        ("x400Address in subjectAltName", {"san": X400_ADDRESS}),
        ("ediPartyName in subjectAltName", {"san": EDI_PARTY_NAME}),
        ("commonName typed BIT STRING", {"subject": BIT_STRING_CN}),
    ],
)
def test_odd_certificates_are_chain_errors_never_crashes(shape: str, odd: dict[str, bytes]) -> None:
    ca, leaf = _ca_with(**odd)
    secret = pem_secret(leaf.key, [leaf.certificate, ca])

    with pytest.raises(ChainError, match="cannot be parsed") as caught:
        read_secret(secret, PEM_CONTENT_TYPE)
    with pytest.raises(ChainError):
        Certificate.from_der(ca.public_bytes(serialization.Encoding.DER))

    assert type(caught.value) is ChainError, shape


def test_a_bit_string_attribute_cryptography_can_read_is_judged_normally() -> None:
    """X500UniqueIdentifier is BIT STRING by definition: such a subject is no defect."""
    key = new_key("ec")
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Unique CA"),
            x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x00\x01", _type=_ASN1Type.BitString),
        ]
    )
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    leaf = make_certificate("leaf.example.test", issuer=Issued(root, key), key_type="ec")

    assert verdict(cert(leaf), trusted=[Certificate.from_x509(root)], untrusted=[], at=NOW).accepted


def test_a_rollover_link_signed_by_a_key_of_another_type_is_no_anchor() -> None:
    """A self-issued link (the new key certified by the old) is an intermediate, whichever key types;
    found by the differential (an RSA root rolled over to an EC key)."""
    old_root = make_certificate("Rolled Root", is_ca=True, key=new_key("rsa"))
    link = make_certificate("Rolled Root", issuer=old_root, is_ca=True, key=new_key("ec"))
    leaf = make_certificate("leaf.example.test", issuer=link, key_type="ec")

    assert not cert(link).is_self_signed
    assert cert(old_root).is_self_signed
    trusted_link = verdict(cert(leaf), trusted=[cert(link)], untrusted=[], at=NOW)
    assert not trusted_link.accepted
    assert trusted_link.reason.startswith("root missing")
    assert verdict(cert(leaf), trusted=[cert(old_root)], untrusted=[cert(link)], at=NOW).accepted


def test_a_rollover_link_without_key_identifiers_signed_by_a_key_of_another_type_is_no_root() -> None:
    """Without key identifiers only cryptography's refusal tells that another key signed the link
    (library_errors.SIGNED_WITH_ANOTHER_KEY_TYPE): it is no root, and no anchor on a gateway."""
    old_key, new = new_key("rsa"), new_key("ec")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bare Rolled Root")])
    link = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(new.public_key())
        .serial_number(11)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(old_key, hashes.SHA256())
    )
    leaf = make_certificate("leaf.example.test", issuer=Issued(link, new), key_type="ec")

    assert not Certificate.from_x509(link).is_self_signed
    refused = verdict(cert(leaf), trusted=[Certificate.from_x509(link)], untrusted=[], at=NOW)
    assert not refused.accepted
    assert refused.reason.startswith("root missing")
