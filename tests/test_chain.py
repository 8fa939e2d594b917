"""Reading Key Vault secrets and validating their trust paths: pure, no I/O."""

from __future__ import annotations

import base64
import hmac
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from emulator import certs
from emulator.pki import Hierarchy, Issued, make_certificate, new_key, pem_secret, pfx_secret, resigned_with_sha1
from shared import der
from shared import pfx as pfx_der
from shared.backing_secret import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE, read_secret
from shared.chain import Authority, Certificate, ChainError, ChainRejected, Role, TrustPath, trust_path, verdict

NOW = datetime.now(UTC)


def secret(kind: str, key: object, leaf: x509.Certificate, others: Sequence[x509.Certificate]) -> tuple[str, str]:
    if kind == "pfx":
        return pfx_secret(key, leaf, others), PKCS12_CONTENT_TYPE  # type: ignore[arg-type]
    return pem_secret(key, [leaf, *others]), PEM_CONTENT_TYPE  # type: ignore[arg-type]


def cert(issued: Issued | x509.Certificate) -> Certificate:
    return Certificate.from_x509(issued.certificate if isinstance(issued, Issued) else issued)


def path_of(leaf: Issued, *others: Issued | x509.Certificate, thumbprint: bool = True) -> TrustPath:
    bag = [cert(leaf), *(cert(other) for other in others)]
    return trust_path(bag, leaf_thumbprint=bag[0].sha1_thumbprint if thumbprint else None, at=NOW)


def rejected(leaf: Issued, *others: Issued | x509.Certificate, at: datetime = NOW) -> tuple[str, ...]:
    bag = [cert(leaf), *(cert(other) for other in others)]
    with pytest.raises(ChainRejected) as caught:
        trust_path(bag, leaf_thumbprint=bag[0].sha1_thumbprint, at=at)
    return caught.value.reasons


def roles(path: TrustPath) -> list[tuple[str, Role]]:
    return [(authority.certificate.common_name, authority.role) for authority in path.authorities]


@pytest.fixture(params=["pfx", "pem"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- reading secrets -------------------------------------------------------------------------------


def test_reads_every_certificate_in_file_order_duplicates_kept(kind: str) -> None:
    pki = Hierarchy(intermediates=2)
    leaf = pki.issue("backend.example")
    intermediate, _, root = pki.ca_certificates()
    value, content_type = secret(kind, leaf.key, leaf.certificate, [root, intermediate, root])

    found = read_secret(value, content_type)

    assert [c.der for c in found] == [cert(c).der for c in (leaf.certificate, root, intermediate, root)]


def with_fresh_mac(pfx: bytes) -> bytes:
    """The PFX with its MAC computed again over its content as it now is (absent password)."""
    version, authsafe, mac_data = der.single(pfx, der.SEQUENCE).children
    content = authsafe.child(1).only(der.OCTET_STRING).value
    digest_info, salt, iterations = mac_data.children
    algorithm, digest = digest_info.children
    key = pfx_der._pkcs12_mac_key("sha1", 64, b"", salt.value, der.integer(iterations))
    mac = hmac.new(key, content, "sha1").digest()
    assert len(digest.value) == len(mac)
    fresh = der.encode(der.SEQUENCE, algorithm.encoded + der.encode(der.OCTET_STRING, mac))
    return der.encode(
        der.SEQUENCE,
        version.encoded + authsafe.encoded + der.encode(der.SEQUENCE, fresh + salt.encoded + iterations.encoded),
    )


def test_the_pfx_key_is_never_decrypted() -> None:
    """A Key Vault PFX whose key bag cannot be decrypted still yields its certificates: the key was
    dropped unopened. Opened whole (as cryptography would), the same file fails on the key."""
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")
    data = bytearray(certs.keyvault_pfx(leaf.key, leaf.certificate, pki.ca_certificates()))
    pkcs8 = data.index(bytes.fromhex("060b2a864886f70d010c0a0102"))  # pkcs8ShroudedKeyBag
    for offset in range(pkcs8 + 80, pkcs8 + 400):
        data[offset] ^= 0x5A  # inside the encrypted key
    data = bytearray(with_fresh_mac(bytes(data)))  # a whole file, as written, whose key cannot be decrypted

    with pytest.raises(ValueError, match=r"(?i)pkcs12|mac|decrypt|invalid"):
        pkcs12.load_pkcs12(bytes(data), b"")
    found = read_secret(base64.b64encode(bytes(data)).decode(), PKCS12_CONTENT_TYPE)

    assert [c.der for c in found] == [cert(c).der for c in (leaf.certificate, *pki.ca_certificates())]


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"password": b"\0\0"}, "the BMPString empty password other tools use: the MAC check tells"),
        ({"key_with_certificates": True}, "the key bag inside the EncryptedData: opened whole"),
    ],
)
def test_other_empty_password_pfx_shapes_fall_back_to_opening_whole(options: dict[str, object], why: str) -> None:
    pki = Hierarchy(intermediates=1, key_type="ec")
    leaf = pki.issue("backend.example")
    data = certs.keyvault_pfx(leaf.key, leaf.certificate, pki.ca_certificates(), **options)  # type: ignore[arg-type]

    found = read_secret(base64.b64encode(data).decode(), PKCS12_CONTENT_TYPE)

    assert [c.der for c in found] == [cert(c).der for c in (leaf.certificate, *pki.ca_certificates())], why


def test_a_pfx_written_by_cryptography_is_read_too() -> None:
    leaf = make_certificate("plain.example", key_type="ec")
    data = pkcs12.serialize_key_and_certificates(b"x", leaf.key, leaf.certificate, None, serialization.NoEncryption())

    assert [c.der for c in read_secret(base64.b64encode(data).decode(), PKCS12_CONTENT_TYPE)] == [leaf.der]


def _key_only_pfx() -> str:
    key = new_key("ec")
    data = pkcs12.serialize_key_and_certificates(b"k", key, None, None, serialization.NoEncryption())
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("value", "content_type", "message"),
    [
        ("not base64 at all!", PKCS12_CONTENT_TYPE, "not valid base64"),
        (base64.b64encode(b"garbage that is not a pfx").decode(), PKCS12_CONTENT_TYPE, "password-protected or corrupt"),
        (base64.b64encode(bytes(range(256)) * 8).decode(), PKCS12_CONTENT_TYPE, "password-protected or corrupt"),
        (_key_only_pfx(), PKCS12_CONTENT_TYPE, "holds no certificates"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", PEM_CONTENT_TYPE, "holds no certificates"),
        ("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", PEM_CONTENT_TYPE, "not valid base64"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", PEM_CONTENT_TYPE, "cannot be parsed"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n", PEM_CONTENT_TYPE, "has no END CERTIFICATE line"),
        ("hunter2", None, "not a certificate-backed secret"),
        ("hunter2", "text/plain", "not a certificate-backed secret"),
        ("A" * 1_000_001, PKCS12_CONTENT_TYPE, "too large"),
    ],
)
def test_bad_secrets_are_clear_errors(value: str, content_type: str | None, message: str) -> None:
    with pytest.raises(ChainError, match=message):
        read_secret(value, content_type)


def test_password_protected_pfx_is_refused() -> None:
    leaf = make_certificate("selfsigned.example")
    value = pfx_secret(leaf.key, leaf.certificate, password=b"s3cret")

    with pytest.raises(ChainError, match="password-protected"):
        read_secret(value, PKCS12_CONTENT_TYPE)


@pytest.mark.parametrize(
    "filler",
    [
        "-----BEGIN CERTIFICATE-----\n" + "A" * 64,  # BEGIN lines and no END: a lazy regex rescans to the end from each
        "x" * 80,
        "-----BEGIN CERTIFICATE----" + "-" * 50,
    ],
)
def test_pem_scanning_of_a_megabyte_of_hostile_text_ends(filler: str) -> None:
    """Linear scanning: these finish at once (bench/chain_cpu.py prints the timings)."""
    value = (filler * (999_000 // len(filler)))[:999_000]
    with pytest.raises(ChainError, match=r"no END CERTIFICATE line|holds no certificates"):
        read_secret(value, PEM_CONTENT_TYPE)


def test_pem_finds_certificates_among_other_blocks_and_text() -> None:
    leaf = make_certificate("leaf.example", key_type="ec")
    other = make_certificate("other.example", key_type="ec")
    value = (
        "Bag Attributes\n"
        + pem_secret(leaf.key, [leaf.certificate])
        + "-----BEGIN TRUSTED CERTIFICATE-----\nAAAA\n-----END TRUSTED CERTIFICATE-----\n"
        + other.pem.decode().replace("\n", "\r\n")
    )

    assert [c.der for c in read_secret(value, PEM_CONTENT_TYPE)] == [leaf.der, other.der]


@pytest.fixture
def handed_to_the_library(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Everything read_secret hands cryptography's PEM loaders, as they receive it."""
    handed: list[bytes] = []

    def spying(real: Callable[[bytes], object]) -> Callable[[bytes], object]:
        def spy(data: bytes) -> object:
            handed.append(data)
            return real(data)

        return spy

    for name in ("load_pem_x509_certificates", "load_pem_x509_certificate"):
        monkeypatch.setattr(x509, name, spying(getattr(x509, name)))
    return handed


def _key_pem(key: object) -> str:
    return pem_secret(key, [])  # type: ignore[arg-type]


def test_a_pem_key_block_never_reaches_the_library(handed_to_the_library: list[bytes]) -> None:
    pki = Hierarchy(intermediates=1, key_type="ec")
    leaf = pki.issue("backend.example")
    assert isinstance(leaf.key, ec.EllipticCurvePrivateKey)
    scalar = leaf.key.private_numbers().private_value.to_bytes(32, "big")

    found = read_secret(pem_secret(leaf.key, [leaf.certificate, *pki.ca_certificates()]), PEM_CONTENT_TYPE)

    assert [c.der for c in found] == [cert(c).der for c in (leaf.certificate, *pki.ca_certificates())]
    assert handed_to_the_library
    for data in handed_to_the_library:
        assert b"PRIVATE KEY" not in data
        decoded = [base64.b64decode(run) for run in re.findall(rb"^[A-Za-z0-9+/=]+$", data, re.MULTILINE)]
        assert decoded
        assert not any(scalar in part for part in decoded)


def test_a_block_inside_a_certificate_block_is_refused_unread(handed_to_the_library: list[bytes]) -> None:
    """A key pasted between a BEGIN and an END CERTIFICATE line is neither decoded nor repeated."""
    key = new_key("ec")
    key_lines = [line for line in _key_pem(key).splitlines() if "-----" not in line]
    value = "-----BEGIN CERTIFICATE-----\n" + _key_pem(key) + "-----END CERTIFICATE-----\n"

    with pytest.raises(ChainError, match=r"^PEM certificate #1 is not valid base64$") as refused:
        read_secret(value, PEM_CONTENT_TYPE)

    assert handed_to_the_library == []
    assert not any(line in str(refused.value) for line in key_lines)


def test_a_begin_line_without_its_end_after_good_certificates_is_an_error() -> None:
    """cryptography's loader skips such a line silently: a secret cut short would read as whole."""
    leaf = make_certificate("leaf.example", key_type="ec")
    value = leaf.pem.decode() + "-----BEGIN CERTIFICATE-----\n" + leaf.pem.decode().splitlines()[1] + "\n"

    with pytest.raises(ChainError, match=r"PEM certificate #2 has no END CERTIFICATE line"):
        read_secret(value, PEM_CONTENT_TYPE)


def test_pem_base64_may_hold_blank_lines_and_tabs() -> None:
    """Any whitespace in a block's base64 is tolerated, as before the library read it (its loader
    alone refuses a blank line inside the base64)."""
    leaf = make_certificate("leaf.example", key_type="ec")
    begin, *lines, end = leaf.pem.decode().splitlines()
    value = "\n".join([begin, "", lines[0] + "\t", "", *lines[1:], " ", end]) + "\n"

    assert [c.der for c in read_secret(value, PEM_CONTENT_TYPE)] == [leaf.der]


@pytest.mark.parametrize(
    ("body", "said"),
    [("!!!!", "PEM certificate #2 is not valid base64"), ("AAAA", "PEM certificate #2 cannot be parsed: ")],
)
def test_a_bad_block_is_named_by_its_number(body: str, said: str) -> None:
    leaf = make_certificate("leaf.example", key_type="ec")
    value = leaf.pem.decode() + f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"

    with pytest.raises(ChainError) as refused:
        read_secret(value, PEM_CONTENT_TYPE)

    assert str(refused.value).startswith(said)


def test_content_type_parameters_and_case_are_tolerated() -> None:
    leaf = make_certificate("selfsigned.example")
    assert read_secret(pem_secret(leaf.key, [leaf.certificate]), "Application/X-PEM-File; charset=utf-8")[0].der == (
        leaf.der
    )


def test_a_certificate_repeating_an_extension_is_refused_as_unparsable() -> None:
    """cryptography raises DuplicateExtension (not a ValueError) when such a certificate's extensions
    are read; it must become a ChainError like any unparsable certificate."""
    leaf = Hierarchy(intermediates=1).issue("duplicated.example")
    authority_key_id, subject_key_id = bytes.fromhex("0603551d23"), bytes.fromhex("0603551d0e")
    assert leaf.der.count(authority_key_id) == 1
    repeated = x509.load_der_x509_certificate(leaf.der.replace(authority_key_id, subject_key_id))

    with pytest.raises(ChainError, match=r"repeats extension 2\.5\.29\.14"):
        read_secret(pem_secret(leaf.key, [repeated]), PEM_CONTENT_TYPE)


# -- certificates ------------------------------------------------------------------------------------


def test_certificate_facts_and_equality_by_der() -> None:
    issued = make_certificate("Short CA", is_ca=True, not_after=NOW + timedelta(hours=1))
    one, two = cert(issued), Certificate.from_der(issued.der)

    assert one == two
    assert hash(one) == hash(two)
    assert one.is_ca
    assert one.common_name == "Short CA"
    assert not one.is_expired(NOW)
    assert one.is_expired(NOW + timedelta(hours=2))
    assert len(one.sha1_thumbprint) == 40
    assert one.sha1_thumbprint.isupper()
    assert one.sha256_fingerprint == one.sha256_fingerprint.lower()
    assert len(one.sha256_fingerprint) == 64


def test_from_der_refuses_what_is_not_a_certificate() -> None:
    with pytest.raises(ChainError, match="not a DER certificate"):
        Certificate.from_der(b"\x30\x03\x02\x01\x01")


def test_public_pfx_holds_the_certificate_and_no_key() -> None:
    one = cert(make_certificate("Some CA", is_ca=True))

    bundle = pkcs12.load_pkcs12(one.public_pfx(), b"")

    assert bundle.key is None
    found = ([bundle.cert] if bundle.cert else []) + list(bundle.additional_certs)
    assert [c.certificate for c in found] == [one.parsed]


# -- trust paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("intermediates", [0, 1, 2, 3])
def test_builds_leaf_intermediates_root_whatever_the_file_order(kind: str, intermediates: int) -> None:
    pki = Hierarchy(intermediates=intermediates)
    leaf = pki.issue("backend.example")
    cas = pki.ca_certificates()
    shuffled = cas[:]
    random.Random(intermediates).shuffle(shuffled)
    shuffled.reverse()
    value, content_type = secret(kind, leaf.key, leaf.certificate, shuffled)
    leaf_cert = cert(leaf)

    path = trust_path(read_secret(value, content_type), leaf_thumbprint=leaf_cert.sha1_thumbprint, at=NOW)

    assert path.leaf == leaf_cert
    assert [a.certificate for a in path.authorities] == [cert(c) for c in cas]
    assert [a.role for a in path.authorities] == [Role.INTERMEDIATE] * intermediates + [Role.ROOT]
    assert path.anchor == cert(cas[-1])
    assert not path.root_missing
    assert path.notes == ()


def test_the_leaf_is_the_one_certificate_that_issues_no_other() -> None:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")
    intermediate, root = pki.ca_certificates()

    path = trust_path([cert(root), cert(leaf), cert(intermediate)], leaf_thumbprint=None, at=NOW)

    assert path.leaf == cert(leaf)


def test_an_ambiguous_leaf_is_an_error() -> None:
    pki = Hierarchy(intermediates=1)
    stranger = make_certificate("Stranger", is_ca=True)

    with pytest.raises(ChainError, match="cannot tell the leaf: 2 certificates"):
        trust_path(
            [cert(pki.issue("a.example")), *map(cert, pki.ca_certificates()), cert(stranger)],
            leaf_thumbprint=None,
            at=NOW,
        )


def test_the_named_leaf_must_be_in_the_secret() -> None:
    with pytest.raises(ChainError, match="not in its secret"):
        trust_path([cert(make_certificate("a.example"))], leaf_thumbprint="00" * 20, at=NOW)


def test_without_a_root_the_topmost_certificate_is_the_anchor_and_it_is_said() -> None:
    pki = Hierarchy(intermediates=2)
    leaf = pki.issue("backend.example")
    lower, upper, root = pki.ca_certificates()

    path = path_of(leaf, upper, lower)

    assert [a.certificate for a in path.authorities] == [cert(lower), cert(upper)]
    assert [a.role for a in path.authorities] == [Role.INTERMEDIATE, Role.ROOT]
    assert path.root_missing
    assert path.notes == (f"root missing: the secret stops at {cert(upper).subject}, issued by {cert(root).subject}",)


def test_a_leaf_whose_issuer_is_not_in_the_secret_has_no_path() -> None:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")

    reasons = rejected(leaf)

    assert reasons == (f"missing issuer: the secret holds no {cert(leaf).issuer} (issuer of {cert(leaf).subject})",)


def test_a_self_signed_leaf_is_its_own_anchor(kind: str) -> None:
    leaf = make_certificate("selfsigned.example")
    value, content_type = secret(kind, leaf.key, leaf.certificate, [])

    path = trust_path(read_secret(value, content_type), leaf_thumbprint=None, at=NOW)

    assert path.authorities == (Authority(cert(leaf), Role.ROOT),)
    assert path.notes == ()


def test_an_expired_self_signed_leaf_is_rejected() -> None:
    leaf = make_certificate("old.example", not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))

    assert rejected(leaf)[0] == f"leaf CN=old.example expired on {(NOW - timedelta(days=1)):%Y-%m-%dT%H:%M:%SZ}"


def test_a_leaf_that_is_an_issuing_ca_is_an_authority_itself() -> None:
    root = make_certificate("Issuing Root", is_ca=True)
    issuing = make_certificate(
        "Issuing CA held in Key Vault", issuer=root, is_ca=True, extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )

    path = path_of(issuing, root)

    assert roles(path) == [("Issuing CA held in Key Vault", Role.INTERMEDIATE), ("Issuing Root", Role.ROOT)]


def test_a_self_signed_ca_leaf_is_a_root() -> None:
    assert roles(path_of(make_certificate("Lonely CA", is_ca=True))) == [("Lonely CA", Role.ROOT)]


def test_a_leaf_ca_its_issuer_forbids_to_issue_is_not_trusted_as_a_ca() -> None:
    root = make_certificate("Tight Root", is_ca=True, path_length=0)
    issuing = make_certificate("Sub CA held in Key Vault", issuer=root, is_ca=True)

    path = path_of(issuing, root)

    assert roles(path) == [("Tight Root", Role.ROOT)]
    assert path.notes == (
        "CN=Sub CA held in Key Vault is a CA certificate but may not issue certificates: CN=Tight Root has "
        "pathLenConstraint 0, which allows no 1 CA(s) below it: it is not trusted as a CA",
    )


@pytest.mark.parametrize(
    ("shape", "why"),
    [
        ({"is_ca": False}, "basicConstraints cA=false"),
        ({"basic_constraints": False}, "basicConstraints absent"),
        (
            {"is_ca": True, "key_usage": x509.KeyUsage(True, False, True, False, False, False, True, False, False)},
            "keyUsage without keyCertSign",
        ),
    ],
)
def test_a_certificate_that_may_not_issue_is_never_on_a_path(shape: dict[str, object], why: str) -> None:
    root = make_certificate("Root", is_ca=True)
    foo = make_certificate("Foo", issuer=root, **shape)  # type: ignore[arg-type]
    leaf = make_certificate("leaf.example", issuer=foo)

    assert f"CN=Foo may not issue certificates: {why}" in rejected(leaf, foo, root)


def test_path_length_is_enforced_and_a_constrained_sub_ca_never_becomes_an_anchor() -> None:
    root = make_certificate("Root", is_ca=True)
    tight = make_certificate("Tight CA", issuer=root, is_ca=True, path_length=0)
    sub = make_certificate("Sub CA", issuer=tight, is_ca=True)
    leaf = make_certificate("leaf.example", issuer=sub)

    with_root = rejected(leaf, sub, tight, root)
    without_root = rejected(leaf, sub, tight)

    assert any("path length constraint violated" in reason for reason in with_root)
    assert any("path length constraint violated" in reason for reason in without_root)


def test_an_anchors_own_signature_is_not_judged() -> None:
    key = new_key("rsa")
    root = make_certificate("SHA-1 Root", is_ca=True, key=key)
    sha1_root = resigned_with_sha1(root, key)
    leaf = make_certificate("leaf.example", issuer=root)

    path = path_of(leaf, sha1_root)

    assert sha1_root.signature_hash_algorithm is not None
    assert sha1_root.signature_hash_algorithm.name == "sha1"
    assert roles(path) == [("SHA-1 Root", Role.ROOT)]


def test_sha1_below_the_anchor_is_accepted_as_openssl_verify_accepts_it() -> None:
    """No security level in OpenSSL's default verification: digests are not judged (a known limit
    of the model, docs/gateway-model.md)."""
    root = make_certificate("Root", is_ca=True)
    intermediate = make_certificate("SHA-1 Issuing CA", issuer=root, is_ca=True)
    sha1_intermediate = resigned_with_sha1(intermediate, root.key)
    leaf = make_certificate("leaf.example", issuer=intermediate)

    path = path_of(leaf, sha1_intermediate, root)

    assert [a.certificate for a in path.authorities] == [cert(sha1_intermediate), cert(root)]


def test_rollover_an_expired_self_signed_root_loses_to_a_valid_cross_signed_path() -> None:
    old_key = new_key(fresh=True)
    old_root = make_certificate(
        "Contoso Root",
        is_ca=True,
        key=old_key,
        not_before=NOW - timedelta(days=3650),
        not_after=NOW - timedelta(days=1),
    )
    new_root = make_certificate("Contoso Root G2", is_ca=True, key=new_key(fresh=True))
    cross = make_certificate("Contoso Root", issuer=new_root, is_ca=True, key=old_key)  # old key under the new root
    issuing = make_certificate("Contoso Issuing CA", issuer=old_root, is_ca=True)
    leaf = make_certificate("leaf.example", issuer=issuing)

    for order in ([old_root, cross, new_root], [new_root, cross, old_root]):
        path = path_of(leaf, issuing, *order)
        assert [a.certificate for a in path.authorities] == [cert(issuing), cert(cross), cert(new_root)]
        assert path.notes == (
            f"ignored 1 certificate(s) not on the chain: CN=Contoso Root (expired on {old_root.certificate.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})",
        )


def test_of_two_issuers_with_one_name_the_one_that_signed_wins() -> None:
    old_root = make_certificate("Contoso Root", is_ca=True, key=new_key(fresh=True))
    new_root = make_certificate("Contoso Root", is_ca=True, key=new_key(fresh=True))
    leaf = make_certificate("leaf.example", issuer=new_root)

    for order in ([old_root, new_root], [new_root, old_root]):
        path = path_of(leaf, *order)
        assert path.authorities == (Authority(cert(new_root), Role.ROOT),)
        assert path.notes == ("ignored 1 certificate(s) not on the chain: CN=Contoso Root",)


def test_a_forged_link_is_no_path() -> None:
    root = make_certificate("Real Root", is_ca=True, key=new_key(fresh=True))
    impostor = make_certificate("Impostor", is_ca=True, key=new_key(fresh=True))
    leaf = make_certificate("leaf.example", issuer_name=root.certificate.subject, signing_key=impostor.key)

    assert "CN=leaf.example names issuer CN=Real Root, but no certificate of that name signed it" in rejected(
        leaf, root
    )


@pytest.mark.parametrize("which", ["intermediate", "root"])
def test_expired_and_not_yet_valid_cas_are_never_trusted_and_are_reported(which: str) -> None:
    windows = {
        "expired": (NOW - timedelta(days=900), NOW - timedelta(days=1)),
        "future": (NOW + timedelta(days=1), NOW + timedelta(days=900)),
    }
    for state, (start, end) in windows.items():
        dated = {"not_before": start, "not_after": end}
        root = make_certificate("Root", is_ca=True, **(dated if which == "root" else {}))  # type: ignore[arg-type]
        issuing = make_certificate("Issuing", issuer=root, is_ca=True, **(dated if which == "intermediate" else {}))  # type: ignore[arg-type]
        leaf = make_certificate("leaf.example", issuer=issuing)
        name = "Root" if which == "root" else "Issuing"
        expected = (
            f"expired on {end:%Y-%m-%dT%H:%M:%SZ}"
            if state == "expired"
            else f"is not valid before {start:%Y-%m-%dT%H:%M:%SZ}"
        )

        assert f"CA CN={name} {expected}" in rejected(leaf, issuing, root), state


def test_a_leaf_not_yet_valid_is_judged_as_of_its_start_and_its_cas_as_of_now_too() -> None:
    root = make_certificate("Root", is_ca=True)
    leaf = make_certificate("next.example", issuer=root, not_before=NOW + timedelta(days=10))

    path = path_of(leaf, root)

    assert roles(path) == [("Root", Role.ROOT)]
    assert path.notes == (
        f"CN=next.example is not valid before {leaf.certificate.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}: validated as of then",
    )
    short_root = make_certificate("Short Root", is_ca=True, not_after=NOW + timedelta(days=5))
    late_leaf = make_certificate("late.example", issuer=short_root, not_before=NOW + timedelta(days=10))
    assert f"CA CN=Short Root expired on {short_root.certificate.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}" in rejected(
        late_leaf, short_root
    )
    staged_root = make_certificate("Staged Root", is_ca=True, not_before=NOW + timedelta(days=1))
    staged_leaf = make_certificate("staged.example", issuer=staged_root, not_before=NOW + timedelta(days=10))
    assert (
        f"CA CN=Staged Root is not valid before {staged_root.certificate.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"
        in rejected(staged_leaf, staged_root)
    )


@pytest.mark.parametrize(
    ("usages", "accepted"),
    [
        (None, True),
        ([ExtendedKeyUsageOID.SERVER_AUTH], True),
        ([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], False),  # OpenSSL's sslserver purpose wants serverAuth itself
        ([ExtendedKeyUsageOID.CLIENT_AUTH], False),
        ([ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION], False),
    ],
)
def test_a_leafs_extended_key_usage_must_allow_server_auth(
    usages: list[ObjectIdentifier] | None, accepted: bool
) -> None:
    root = make_certificate("Root", is_ca=True)
    leaf = make_certificate("leaf.example", issuer=root, extended_key_usage=usages or [])

    if accepted:
        assert roles(path_of(leaf, root)) == [("Root", Role.ROOT)]
    else:
        assert any(
            reason.startswith(
                "leaf CN=leaf.example: extendedKeyUsage allows no serverAuth, which a TLS client requires"
            )
            for reason in rejected(leaf, root)
        )


def test_an_unknown_critical_extension_is_refused() -> None:
    root = make_certificate("Root", is_ca=True)
    unknown = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    leaf = make_certificate("leaf.example", issuer=root, extensions=[(unknown, True)])
    tolerated = make_certificate("ok.example", issuer=root, extensions=[(unknown, False)])

    assert any("1.3.6.1.4.1.99999.1" in reason for reason in rejected(leaf, root))
    assert roles(path_of(tolerated, root)) == [("Root", Role.ROOT)]


def test_unrelated_and_duplicate_certificates_are_ignored_and_said(kind: str) -> None:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")
    intermediate, root = pki.ca_certificates()
    stranger = make_certificate("Unrelated CA", is_ca=True).certificate
    value, content_type = secret(kind, leaf.key, leaf.certificate, [stranger, intermediate, root, intermediate])
    leaf_cert = cert(leaf)

    path = trust_path(read_secret(value, content_type), leaf_thumbprint=leaf_cert.sha1_thumbprint, at=NOW)

    assert len(path.authorities) == 2
    assert path.notes == (
        "ignored 1 certificate(s) not on the chain: CN=Unrelated CA",
        "ignored 1 duplicate certificate(s)",
    )


# -- verdicts ----------------------------------------------------------------------------------------------


def test_verdict_accepts_what_trust_path_built() -> None:
    pki = Hierarchy(intermediates=2)
    leaf = pki.issue("backend.example")
    path = trust_path([cert(leaf), *map(cert, pki.ca_certificates())], leaf_thumbprint=None, at=NOW)
    everything = [a.certificate for a in path.authorities]

    as_anchors = verdict(path.leaf, trusted=everything, untrusted=[], at=NOW)
    root_only = verdict(path.leaf, trusted=[path.anchor], untrusted=everything[:-1], at=NOW)

    assert as_anchors.accepted
    assert as_anchors.reason == ""
    assert as_anchors.path[0] == path.leaf
    assert root_only.accepted
    assert root_only.path == (path.leaf, *everything)


def test_verdict_reasons() -> None:
    pki = Hierarchy(intermediates=1)
    leaf = cert(pki.issue("backend.example"))
    intermediate, root = map(cert, pki.ca_certificates())

    missing = verdict(leaf, trusted=[root], untrusted=[], at=NOW)
    untrusted_root = verdict(leaf, trusted=[], untrusted=[intermediate, root], at=NOW)
    later = verdict(leaf, trusted=[root], untrusted=[intermediate], at=NOW + timedelta(days=400))

    assert not missing.accepted
    assert missing.reason == f"missing intermediate {intermediate.subject} (issuer of {leaf.subject})"
    assert missing.path == ()
    assert untrusted_root.reason == f"no trusted anchor: {root.subject} is on the gateway with isTrusted=false"
    assert later.reason == f"leaf {leaf.subject} expired on {leaf.not_after:%Y-%m-%dT%H:%M:%SZ}"


def test_verdict_names_an_expired_ca_and_one_that_may_not_issue() -> None:
    root = make_certificate("Root", is_ca=True)
    expired = make_certificate(
        "Old CA", issuer=root, is_ca=True, not_before=NOW - timedelta(days=90), not_after=NOW - timedelta(days=1)
    )
    not_ca = make_certificate("Foo", issuer=root)

    stale = verdict(
        cert(make_certificate("a.example", issuer=expired)), trusted=[cert(root)], untrusted=[cert(expired)], at=NOW
    )
    wrong = verdict(
        cert(make_certificate("b.example", issuer=not_ca)), trusted=[cert(root)], untrusted=[cert(not_ca)], at=NOW
    )

    assert stale.reason == f"CA CN=Old CA expired on {expired.certificate.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
    assert wrong.reason == "CN=Foo may not issue certificates: basicConstraints cA=false"


def test_a_self_signed_leaf_is_accepted_iff_trusted_and_valid() -> None:
    leaf = cert(make_certificate("self.example"))

    assert verdict(leaf, trusted=[leaf], untrusted=[], at=NOW).accepted
    assert verdict(leaf, trusted=[], untrusted=[leaf], at=NOW).reason == (
        "no trusted anchor: CN=self.example is on the gateway with isTrusted=false"
    )
    assert (
        verdict(leaf, trusted=[], untrusted=[], at=NOW).reason
        == "no trusted anchor: CN=self.example is not on the gateway"
    )
    assert not verdict(leaf, trusted=[leaf], untrusted=[], at=NOW + timedelta(days=400)).accepted


def test_a_certificate_with_an_unknown_version_is_a_clear_error() -> None:
    issued = make_certificate("odd.example")
    der = issued.certificate.public_bytes(serialization.Encoding.DER)
    version = der.index(bytes.fromhex("a003020102"))  # [0] EXPLICIT INTEGER 2 (v3)
    odd = der[: version + 4] + b"\x6a" + der[version + 5 :]
    pem = "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(odd).decode() + "-----END CERTIFICATE-----\n"
    with pytest.raises(ChainError, match="cannot be parsed"):
        read_secret(pem, PEM_CONTENT_TYPE)
    with pytest.raises(ChainError, match="not a DER certificate"):
        Certificate.from_der(odd)


def test_an_issuer_whose_public_key_cannot_be_read_is_a_refusal_not_a_crash() -> None:
    root = make_certificate("Root", is_ca=True, key=new_key("ec"))
    leaf = make_certificate("leaf.example", issuer=root)
    der = root.certificate.public_bytes(serialization.Encoding.DER)
    point = root.certificate.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    broken = der.replace(point, b"\x04" + b"\x00" * (len(point) - 1))  # not a point on the curve
    certificates = [Certificate.from_x509(leaf.certificate), Certificate.from_der(broken)]
    with pytest.raises(ChainRejected):
        trust_path(certificates, leaf_thumbprint=certificates[0].sha1_thumbprint, at=datetime.now(UTC))


OPENSSL = shutil.which("openssl") or "openssl"


def openssl_pfx(tmp_path: Path, password: str) -> str:
    """A PFX as the `openssl` command writes one: the key in a shrouded key bag, the certificate in a
    plain (unencrypted) bag, the MAC under `password`. Base64, as Key Vault holds a PFX secret."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = make_certificate("pfx.example", is_ca=False).certificate
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    issued = x509.CertificateBuilder(
        issuer_name=certificate.subject,
        subject_name=certificate.subject,
        public_key=key.public_key(),
        serial_number=x509.random_serial_number(),
        not_valid_before=certificate.not_valid_before_utc,
        not_valid_after=certificate.not_valid_after_utc,
    ).sign(key, hashes.SHA256())
    (tmp_path / "cert.pem").write_bytes(issued.public_bytes(serialization.Encoding.PEM))
    subprocess.run(  # noqa: S603 - a fixed command over files this test wrote
        [
            OPENSSL,
            "pkcs12",
            "-export",
            "-inkey",
            "key.pem",
            "-in",
            "cert.pem",
            "-certpbe",
            "NONE",
            "-passout",
            f"pass:{password}",
            "-out",
            "out.pfx",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    return base64.b64encode((tmp_path / "out.pfx").read_bytes()).decode()


def test_a_pfx_whose_mac_needs_a_password_is_refused_as_password_protected(tmp_path: Path) -> None:
    """Its certificates are readable without any password (an unencrypted bag), but the MAC that vouches
    for them verifies only with the password: refused, as OpenSSL would refuse it, not read unchecked."""
    with pytest.raises(ChainError, match="password-protected or corrupt: its MAC does not verify"):
        read_secret(openssl_pfx(tmp_path, "s3cret"), PKCS12_CONTENT_TYPE)


def test_a_pfx_whose_mac_verifies_with_the_empty_password_is_read(tmp_path: Path) -> None:
    (found,) = read_secret(openssl_pfx(tmp_path, ""), PKCS12_CONTENT_TYPE)
    assert found.common_name == "pfx.example"


def test_a_key_vault_pfx_changed_after_its_mac_was_written_is_refused() -> None:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")
    data = bytearray(certs.keyvault_pfx(leaf.key, leaf.certificate, pki.ca_certificates()))
    pkcs8 = data.index(bytes.fromhex("060b2a864886f70d010c0a0102"))
    data[pkcs8 + 100] ^= 0x01  # one bit of the (encrypted) key: the MAC covers it

    with pytest.raises(ChainError, match="MAC does not verify"):
        read_secret(base64.b64encode(bytes(data)).decode(), PKCS12_CONTENT_TYPE)
