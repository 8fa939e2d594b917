"""Property-based tests: the event parser and the secret reader never crash, and random bags never build a wrong path."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from emulator.certs import der_tlv, keyvault_pfx
from emulator.pki import Hierarchy, make_certificate, pem_secret, pfx_secret
from shared import der
from shared.backing_secret import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE, read_secret
from shared.chain import Certificate, ChainError, ChainRejected, TrustPath, trust_path, verdict
from shared.events import CERTIFICATE_NEW_VERSION_CREATED, EventError, Ignore, Reconcile, ReconcileBundle, route
from shared.handlers import parse_resync_body
from shared.settings import Settings, SettingsError, is_keyvault_object_name, load_settings

APIM_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim"
SETTINGS = load_settings(
    {
        "KEYVAULT_URL": "https://sample-kv.vault.azure.net",
        "APIM_RESOURCE_ID": APIM_ID,
        "CERTIFICATE_NAMES": "mycert",
        "TRUST_BUNDLES": "mybundle",
    }
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["Id", "id", " Id", "VaultName", "ObjectType", "ObjectName", "ObjectName ", "Version", "NBF", "EXP"]
)
event_types = (
    st.sampled_from(
        [
            CERTIFICATE_NEW_VERSION_CREATED,
            "Microsoft.KeyVault.CertificateNearExpiry",
            "Microsoft.KeyVault.CertificateExpired",
            "Microsoft.KeyVault.SecretNewVersionCreated",
            "Other.Type",
            "",
            " ",
        ]
    )
    | st.text(max_size=30)
    | json_scalars
)
ids = (
    st.sampled_from(
        [
            "https://sample-kv.vault.azure.net/certificates/mycert/a1b2",
            "https://sample-kv.vault.azure.net/certificates/mycert",
            "https://SAMPLE-KV.vault.azure.net/certificates/MyCert/v9",
            "https://other.vault.azure.net/certificates/mycert/v1",
            "https://sample-kv.vault.azure.net/secrets/mycert/v1",
            "https://sample-kv.vault.azure.net/secrets/mybundle/v1",
            "https://sample-kv.vault.azure.net/secrets/MyBundle",
            "https://sample-kv.vault.azure.net/certificates/my_cert/v1",
            "http://sample-kv.vault.azure.net/certificates/mycert/v1",
            "https://sample-kv.vault.azure.net/",
            "https://sample-kv.vault.azure.net:443/certificates/mycert/v1",
            "https://[sample-kv.vault.azure.net/certificates/mycert/v1",
            "https://sample-kv.vault.azure.net:99999/certificates/mycert/v1",
            "https://sample-kv.vault.azure.net:x/certificates/mycert/v1",
            "",
        ]
    )
    | st.text(max_size=60)
    | st.builds(lambda tail: "https://sample-kv.vault.azure.net" + tail, st.text(max_size=40))
)


@settings(max_examples=400, deadline=None)
@given(event_type=event_types, data=st.dictionaries(field_names, json_values | ids, max_size=8) | json_values)
def test_event_routing_never_crashes(event_type: object, data: Any) -> None:
    try:
        decision: Ignore | Reconcile | ReconcileBundle | EventError = route(event_type, "id", data, SETTINGS)
    except EventError as error:
        decision = error
    if isinstance(decision, EventError):
        assert str(decision)  # a message that says what is wrong
        return
    assert isinstance(decision, Ignore | Reconcile | ReconcileBundle)
    if isinstance(decision, Reconcile):
        assert decision.certificate_name.lower() == "mycert"
        assert decision.event.vault_host == "sample-kv.vault.azure.net"
    if isinstance(decision, ReconcileBundle):
        assert decision.secret_name == "mybundle"
        assert decision.event.object_name.lower() == "mybundle"
        assert decision.event.vault_host == "sample-kv.vault.azure.net"


@settings(max_examples=200, deadline=None)
@given(
    object_id=ids,
    object_type=st.sampled_from(["Certificate", "certificate", "Secret", None]),
    version=st.none() | st.text(max_size=10),
)
def test_well_formed_fields_route_consistently(object_id: str, object_type: str | None, version: str | None) -> None:
    data = {"Id": object_id, "ObjectType": object_type, "Version": version}
    try:
        decision = route(CERTIFICATE_NEW_VERSION_CREATED, "id", json.loads(json.dumps(data)), SETTINGS)
    except EventError:
        return
    if isinstance(decision, Reconcile):
        same_vault = object_id.lower().replace(".net:443/", ".net/", 1)  # the default port names the same vault
        assert same_vault.startswith("https://sample-kv.vault.azure.net/certificates/mycert")


# A pool of certificates for random bags: a three-level hierarchy, a second unrelated one,
# a self-signed leaf, and a forgery naming the real intermediate as issuer.
NOW = datetime.now(UTC)
_PKI = Hierarchy(intermediates=2, organization="Fuzz")
_LEAF = _PKI.issue("fuzz.example")
_CAS = _PKI.ca_certificates()  # intermediate nearest the leaf first, root last
_OTHER = Hierarchy(intermediates=1, organization="Other")
_OTHER_LEAF = _OTHER.issue("other.example")
_SELF_SIGNED = make_certificate("lonely.example", key_type="ec")
_FORGED = make_certificate("forged.example", issuer_name=_CAS[0].subject, signing_key=_SELF_SIGNED.key)
_NOISE = [*_OTHER.ca_certificates(), _OTHER_LEAF.certificate, _SELF_SIGNED.certificate]


def _der(cert: x509.Certificate) -> bytes:
    return Certificate.from_x509(cert).der


def expected_path(bag: list[x509.Certificate]) -> list[bytes]:
    """The true path of `_LEAF` given what is in the bag: up the hierarchy while each CA is there."""
    present = {_der(c) for c in bag}
    path = [_der(_LEAF.certificate)]
    for ca in _CAS:
        if _der(ca) not in present:
            break
        path.append(_der(ca))
    return path


def assert_linked(path: TrustPath) -> None:
    """Test-side check, outside the validator: each certificate is signed by the next."""
    chain = [path.leaf, *(a.certificate for a in path.authorities if a.certificate != path.leaf)]
    for child, parent in itertools.pairwise(chain):
        child.parsed.verify_directly_issued_by(parent.parsed)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chosen=st.lists(st.sampled_from(range(len(_CAS) + len(_NOISE))), max_size=8),
    kind=st.sampled_from(["pfx", "pem"]),
    with_thumbprint=st.booleans(),
    seed=st.randoms(use_true_random=False),
)
def test_random_bags_build_the_true_path(chosen: list[int], kind: str, with_thumbprint: bool, seed: Any) -> None:
    pool = [*_CAS, *_NOISE]
    bag = [pool[i] for i in chosen]
    seed.shuffle(bag)
    others = [*bag, _LEAF.certificate]
    seed.shuffle(others)
    if kind == "pfx":
        value, content_type = pfx_secret(_LEAF.key, _LEAF.certificate, bag), PKCS12_CONTENT_TYPE
    else:
        value, content_type = pem_secret(_LEAF.key, others), PEM_CONTENT_TYPE
    leaf_thumbprint = Certificate.from_x509(_LEAF.certificate).sha1_thumbprint if with_thumbprint else None
    expected = expected_path(bag)

    try:
        path = trust_path(read_secret(value, content_type), leaf_thumbprint=leaf_thumbprint, at=NOW)
    except ChainRejected:
        assert len(expected) == 1  # the leaf's issuer is not in the bag: nothing to anchor to
        return
    except ChainError:
        assert leaf_thumbprint is None  # the bag's shape leaves the leaf ambiguous
        return
    assert [path.leaf.der, *(a.certificate.der for a in path.authorities)] == expected
    assert path.root_missing == (len(expected) < len(_CAS) + 1)
    assert_linked(path)
    held = verdict(path.leaf, trusted=[a.certificate for a in path.authorities], untrusted=[], at=NOW)
    # No partial chains on the gateway: without its self-signed root the path is no trust.
    assert held.accepted == (not path.root_missing), held.reason
    if path.root_missing:
        assert "root missing" in held.reason


def _corrupt(value: str, kind: str, positions: list[int], seed: Any) -> str:
    raw = bytearray(base64.b64decode(value) if kind == "pfx" else value.encode())
    for position in positions:
        raw[position % len(raw)] = seed.randrange(256)
    return base64.b64encode(bytes(raw)).decode() if kind == "pfx" else raw.decode("latin-1")


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["pfx", "pem"]),
    positions=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=6),
    seed=st.randoms(use_true_random=False),
)
def test_corrupted_secrets_fail_cleanly_or_still_verify(kind: str, positions: list[int], seed: Any) -> None:
    full = [_LEAF.certificate, *_CAS]
    value = pfx_secret(_LEAF.key, _LEAF.certificate, _CAS) if kind == "pfx" else pem_secret(_LEAF.key, full)
    content_type = PKCS12_CONTENT_TYPE if kind == "pfx" else PEM_CONTENT_TYPE
    try:
        path = trust_path(
            read_secret(_corrupt(value, kind, positions, seed), content_type), leaf_thumbprint=None, at=NOW
        )
    except ChainError:
        return
    # Corruption that left the secret readable must not make anything trusted that was not there:
    # every authority is one of the originals and every link still verifies. The anchor's own
    # signature is not judged (as OpenSSL does not), so a root whose signature bytes changed is
    # still the same name and key: what it signs is the original's. A root whose own issuer name
    # was hit is no longer self-signed: it tops a root-missing path, the same name and key again,
    # and a path without its self-signed root is never trusted.
    originals = {_der(c) for c in full}
    original_tbs = {c.tbs_certificate_bytes for c in full}
    original_keys = {(c.subject.rfc4514_string(), _spki(c)) for c in full}
    *below, anchor = path.authorities
    assert all(authority.certificate.der in originals for authority in below)
    top = anchor.certificate
    if top.der not in originals and top.parsed.tbs_certificate_bytes not in original_tbs:
        assert path.root_missing
        assert not top.is_self_signed
        assert (top.parsed.subject.rfc4514_string(), _spki(top.parsed)) in original_keys
    assert_linked(path)


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=600) | st.builds(lambda cut, flip: (cut, flip), st.integers(0, 4000), st.integers(0, 255))
)
def test_any_bytes_as_a_pfx_are_read_or_refused_with_a_chain_error(data: bytes | tuple[int, int]) -> None:
    if isinstance(data, tuple):  # a Key Vault PFX cut short or with one byte changed: exercises the DER reader
        cut, flip = data
        pfx = bytearray(_KEYVAULT_PFX)
        pfx[cut % len(pfx)] ^= flip
        data = bytes(pfx[: len(pfx) - cut % 7])
    try:
        found = read_secret(base64.b64encode(data).decode(), PKCS12_CONTENT_TYPE)
    except ChainError as error:
        message = str(error)
    else:
        message = "read"
        assert all(isinstance(c, Certificate) for c in found)
    assert message  # any other exception fails the test; a ChainError says what is wrong


_KEYVAULT_PFX = keyvault_pfx(_LEAF.key, _LEAF.certificate, _CAS)


def test_forged_issuer_in_bag_is_never_chained() -> None:
    value = pem_secret(_FORGED.key, [_FORGED.certificate, *_CAS])
    forged = Certificate.from_x509(_FORGED.certificate)
    with pytest.raises(ChainRejected, match="but no certificate of that name signed it"):
        trust_path(read_secret(value, PEM_CONTENT_TYPE), leaf_thumbprint=forged.sha1_thumbprint, at=NOW)


bodies = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["certificates", "dryRun", "other"]) | st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    body=bodies.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=64)
    | st.integers(min_value=1, max_value=5_000).map(lambda depth: b"[" * depth + b"]" * depth)
)
def test_a_resync_body_is_accepted_whole_or_refused_with_a_reason(body: bytes) -> None:
    try:
        parsed: tuple[frozenset[str] | None, bool] | ValueError = parse_resync_body(body)
    except ValueError as error:
        parsed = error
    if isinstance(parsed, ValueError):
        assert str(parsed)  # a reason for the 400
        return
    names, dry_run = parsed
    assert isinstance(dry_run, bool)
    if names is not None:  # named certificates: a non-empty set of valid names, as the body listed them
        assert names
        assert names == frozenset(json.loads(body)["certificates"])
        assert all(is_keyvault_object_name(name) for name in names)
    elif body.strip():
        assert "certificates" not in json.loads(body)  # every certificate only when the field is left out


@settings(max_examples=300, deadline=None)
@given(
    url=st.sampled_from(["https://kv.vault.azure.net", "https://KV.vault.azure.net:443/", "https://127.0.0.1:8443"])
    | st.builds(
        lambda scheme, host, port, tail: f"{scheme}://{host}{port}{tail}",
        st.sampled_from(["https", "http", "HTTPS", ""]),
        st.sampled_from(["kv.vault.azure.net", "kv", "[::1]", "[bad", "kv.vault.azure.cn", ""]),
        st.sampled_from(["", ":443", ":8443", ":x", ":99999"]),
        st.sampled_from(["", "/", "/secrets", "?a=b", "#f"]),
    )
    | st.text(max_size=40),
    concurrency=st.sampled_from(["", "0", "1", "64", "65", "x", "-3"]),
)
def test_settings_are_normalized_or_refused_naming_each_bad_one(url: str, concurrency: str) -> None:
    env = {"KEYVAULT_URL": url, "APIM_RESOURCE_ID": APIM_ID, "MAX_CONCURRENCY": concurrency}
    try:
        loaded: Settings | SettingsError = load_settings(env)
    except SettingsError as error:
        loaded = error
    if isinstance(loaded, SettingsError):
        assert "KEYVAULT_URL" in str(loaded) or "MAX_CONCURRENCY" in str(loaded)
        return
    assert loaded.keyvault_url == loaded.keyvault_url.lower()
    assert not loaded.keyvault_url.endswith((":443", "/"))
    assert 1 <= loaded.max_concurrency <= 64


# -- any certificate DER: read, path, verdict, no crash -------------------------------------------------------
# Certificates assembled from DER parts (and signed, so that validation goes past the signatures):
# subject attributes of any ASN.1 type (BIT STRING, OCTET STRING, INTEGER, NULL, SEQUENCE...), and
# subjectAltName / nameConstraints general names of every form, x400Address and ediPartyName too.

_FUZZ_KEY = ec.generate_private_key(ec.SECP256R1())
_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
_ATTRIBUTE_OIDS = [
    "0603550403",  # commonName
    "060355040a",  # organizationName
    "0603550406",  # countryName
    "060355042d",  # x500UniqueIdentifier
    "06092a864886f70d010901",  # emailAddress
    "060a0992268993f22c640119",  # domainComponent
    "060a2b0601040182cd1f0101",  # a private OID
]
# UTF8String and PrintableString most often (so that most certificates parse and get judged), then
# the odd ones: BIT STRING, OCTET STRING, INTEGER, NULL, BOOLEAN, SEQUENCE, OID, UTCTime, BMPString...
_STRING_TAGS = [0x0C] * 8 + [0x13] * 4 + [0x16, 0x14, 0x1E, 0x1C, 0x03, 0x04, 0x02, 0x05, 0x01, 0x30, 0x06, 0x17]
_GENERAL_NAME_TAGS = [0xA0, 0x81, 0x82, 0xA3, 0xA4, 0xA5, 0x86, 0x87, 0x88]


def _tlv(tag: int, value: bytes) -> bytes:
    return der_tlv(tag, value)


_constructed = st.sampled_from([b"", _tlv(0x30, b""), _tlv(0x0C, b"x"), _tlv(0xA1, _tlv(0x0C, b"party"))])
_text = st.from_regex(r"[a-z][a-z .]{0,8}", fullmatch=True).map(str.encode)
_content = _text | _text | st.binary(max_size=12) | _constructed | st.sampled_from([b"\x00\xff", b"\x07\x80"])
attributes = st.builds(
    lambda oid, tag, value: _tlv(0x31, _tlv(0x30, bytes.fromhex(oid) + _tlv(tag, value))),
    st.sampled_from(_ATTRIBUTE_OIDS),
    st.sampled_from(_STRING_TAGS),
    _content,
)
names = st.lists(attributes, min_size=1, max_size=3).map(lambda rdns: _tlv(0x30, b"".join(rdns)))
general_names = st.lists(st.builds(_tlv, st.sampled_from(_GENERAL_NAME_TAGS), _content), min_size=1, max_size=3).map(
    lambda parts: _tlv(0x30, b"".join(parts))
)


def _extension(oid_hex: str, value: bytes, critical: bool) -> bytes:
    return _tlv(0x30, bytes.fromhex(oid_hex) + (b"\x01\x01\xff" if critical else b"") + _tlv(0x04, value))


def _certificate(subject: bytes, issuer: bytes, extensions: list[bytes], serial: int) -> bytes:
    spki = _FUZZ_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    validity = _tlv(0x30, _tlv(0x17, b"250101000000Z") + _tlv(0x17, b"491231000000Z"))
    tbs = _tlv(
        0x30,
        _tlv(0xA0, b"\x02\x01\x02")
        + _tlv(0x02, bytes([serial]))
        + _ECDSA_SHA256
        + issuer
        + validity
        + subject
        + spki
        + _tlv(0xA3, _tlv(0x30, b"".join(extensions))),
    )
    signature = _FUZZ_KEY.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + _ECDSA_SHA256 + _tlv(0x03, b"\x00" + signature))


def _pem(ders: list[bytes]) -> str:
    return "".join(
        "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der).decode() + "-----END CERTIFICATE-----\n"
        for der in ders
    )


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")  # cryptography on a short countryName
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=names,
    san=st.none() | general_names,
    constraints=st.none() | general_names,
    critical=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=2),
)
def test_any_certificate_der_is_judged_or_a_chain_error(
    subject: bytes, san: bytes | None, constraints: bytes | None, critical: bool, flips: list[tuple[int, int]]
) -> None:
    basic = _extension("0603551d13", _tlv(0x30, b"\x01\x01\xff"), True)  # cA=true
    extensions = [basic]
    if san is not None:
        extensions.append(_extension("0603551d11", san, critical))
    if constraints is not None:  # NameConstraints { permittedSubtrees [0] { GeneralSubtree { base } } }
        subtrees = _tlv(
            0xA0, b"".join(_tlv(0x30, name) for name in (part.encoded for part in der.element(constraints).children))
        )
        extensions.append(_extension("0603551d1e", _tlv(0x30, subtrees), True))
    ca = bytearray(_certificate(subject, subject, extensions, 1))
    for position, flip in flips:
        ca[position % len(ca)] ^= flip
    leaf_name = _tlv(0x30, _tlv(0x31, _tlv(0x30, bytes.fromhex("0603550403") + _tlv(0x0C, b"leaf.example.test"))))
    leaf = _certificate(
        leaf_name, subject, [_extension("0603551d11", _tlv(0x30, _tlv(0x82, b"leaf.example.test")), False)], 2
    )

    try:
        found = read_secret(_pem([leaf, bytes(ca)]), PEM_CONTENT_TYPE)
    except ChainError as error:
        event(f"unreadable: {str(error)[:80]}")
        message = str(error)
    else:
        message = ""
    if message:
        return
    try:
        path: TrustPath | ChainError = trust_path(found, leaf_thumbprint=found[0].sha1_thumbprint, at=NOW)
    except ChainError as error:
        path = error
    judged = verdict(found[0], trusted=found[1:], untrusted=[], at=NOW)
    event(f"judged: {'accepted' if judged.accepted else 'refused'}")
    assert judged.accepted or judged.reason
    if isinstance(path, TrustPath):
        assert judged.accepted == (not path.root_missing), judged.reason
