"""X.509 trust paths out of Key Vault certificate secrets.

Knows X.509 and nothing else: no I/O, nothing from ``azure.*``.

Reading: every certificate in a certificate's backing secret (PFX or PEM), never the private key.
PEM key blocks are skipped unread. A PFX is cut down to its certificate bags before it is opened:
Key Vault puts the key in a plain-Data SafeContents (a pkcs8ShroudedKeyBag) and the certificates
in a 3DES EncryptedData, so the key bags are dropped by DER structure alone and the rest, without
its MAC, goes to ``pkcs12.load_pkcs12``. Decrypting and checking an RSA key was nearly all the cost
of a secret (48 ms a secret with RSA-2048 keys, 1.8 ms with ECDSA P-256; now 1.6 and 1.9 ms with
its path validated: ``python -m bench.chain_cpu``). A key bag inside an EncryptedData
cannot be dropped unopened: such a PFX (and any PFX of an unexpected shape, BER included) is
opened whole, which is slower but just as correct, and the key is dropped on the spot.

Validating: paths are built and checked by ``cryptography.x509.verification`` (RFC 5280 path
building with the explicit extension policies below), never by hand. A trust anchor is taken as
RFC 5280 does: a name and a key, its own signature not judged. Issuer names choose what the
verifier gets as anchors (the self-signed certificates the leaf reaches, or else the topmost one);
one signature check outside it tells a self-signed root from a self-issued key-rollover link, and
a refusal's wording asks the verifier about single links to name the one that is broken.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

PKCS12_CONTENT_TYPE = "application/x-pkcs12"
PEM_CONTENT_TYPE = "application/x-pem-file"
MAX_CHAIN_DEPTH = 8  # intermediates between leaf and anchor: far above any real PKI, stops hostile bags
MAX_SECRET_CHARS = 1_000_000  # Key Vault secrets are at most 25 KB; refuse anything absurd before decoding
MINIMUM_RSA_BITS = 2048  # what the validator requires of every key that signs below the anchor

_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


class ChainError(ValueError):
    """The secret is unusable or its chain untrustable; the message says why."""


class ChainRejected(ChainError):
    """No valid path: `reasons` each name a certificate and say what is wrong with it."""

    def __init__(self, subject: str, reasons: Sequence[str]) -> None:
        self.reasons: tuple[str, ...] = tuple(dict.fromkeys(reasons))
        super().__init__(f"no valid trust path for {subject}: " + "; ".join(self.reasons))


class Role(enum.Enum):
    ROOT = "root"  # the trust anchor of a path (see TrustPath)
    INTERMEDIATE = "intermediate"


@dataclass(frozen=True)
class Certificate:
    """A public certificate with the facts the sync needs, equal by DER."""

    der: bytes = field(repr=False)
    subject: str = field(compare=False)
    issuer: str = field(compare=False)
    sha1_thumbprint: str = field(compare=False)  # upper-case hex: what APIM reports as "thumbprint"
    sha256_fingerprint: str = field(compare=False)  # lower-case hex
    not_before: datetime = field(compare=False)
    not_after: datetime = field(compare=False)
    is_ca: bool = field(compare=False)  # basicConstraints cA=true
    common_name: str = field(compare=False)
    parsed: x509.Certificate = field(compare=False, repr=False)

    @classmethod
    def from_x509(cls, cert: x509.Certificate) -> Certificate:
        try:
            return cls(
                der=cert.public_bytes(serialization.Encoding.DER),
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                sha1_thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - an identifier, not a signature
                sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                is_ca=_is_ca(cert),
                common_name=_common_name(cert),
                parsed=cert,
            )
        except x509.DuplicateExtension as error:  # not a ValueError; RFC 5280 4.2 forbids it
            raise ChainError(
                f"certificate {cert.subject.rfc4514_string()} repeats extension {error.oid.dotted_string} "
                "(RFC 5280 4.2 forbids it): cannot be parsed"
            ) from None
        except ValueError as error:
            raise ChainError(f"certificate cannot be parsed: {error}") from None

    @classmethod
    def from_der(cls, der: bytes) -> Certificate:
        try:
            cert = x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion) as error:
            raise ChainError(f"not a DER certificate: {error}") from None
        return cls.from_x509(cert)

    def is_expired(self, at: datetime) -> bool:
        return self.not_after < at

    def is_valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after

    def public_pfx(self) -> bytes:
        """A PKCS#12 file holding this certificate alone: no key, empty password."""
        return pkcs12.serialize_key_and_certificates(
            name=None, key=None, cert=self.parsed, cas=None, encryption_algorithm=serialization.NoEncryption()
        )

    def __str__(self) -> str:
        return f"{self.subject} [{self.sha1_thumbprint}]"


@dataclass(frozen=True)
class Authority:
    """A CA certificate a gateway must know, with the role it plays in a path."""

    certificate: Certificate
    role: Role


@dataclass(frozen=True)
class TrustPath:
    """A validated path from a leaf to its trust anchor, as the CAs a gateway must hold.

    `authorities` runs leaf side first, anchor last; the anchor has Role.ROOT: a self-signed root,
    the leaf itself when it is self-signed, or, when the secret holds no root, the topmost
    certificate of the secret (see `notes`). A leaf that is an issuing CA is itself the first
    authority. The leaf is never an authority otherwise.
    """

    leaf: Certificate
    authorities: tuple[Authority, ...]
    notes: tuple[str, ...] = ()  # root missing, certificates in the secret not on the path, duplicates

    @property
    def anchor(self) -> Certificate:
        return self.authorities[-1].certificate

    @property
    def root_missing(self) -> bool:
        return any(note.startswith("root missing") for note in self.notes)


@dataclass(frozen=True)
class Verdict:
    """Would a TLS client accept a backend presenting `leaf` alone, given a gateway's CAs?"""

    accepted: bool
    reason: str  # "" when accepted
    path: tuple[Certificate, ...]  # the accepted path, leaf first; () when refused


# Why no path was found: (leaf, anchors, intermediates, at, validation time, verifier's error) → reasons.
_Explanation = Callable[[Certificate, Sequence[Certificate], Sequence[Certificate], datetime, datetime, str], list[str]]


# -- reading secrets ---------------------------------------------------------------------------------


def read_secret(value: str, content_type: str | None) -> tuple[Certificate, ...]:
    """Every certificate in a Key Vault certificate's backing secret, in file order, duplicates kept.

    The private key is never decrypted or decoded (see the module docstring for the one PFX shape
    where it must be).
    """
    if len(value) > MAX_SECRET_CHARS:
        raise ChainError(f"secret value is {len(value)} characters: too large to be a certificate")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == PKCS12_CONTENT_TYPE:
        return _read_pfx(value)
    if kind == PEM_CONTENT_TYPE:
        return _read_pem(value)
    raise ChainError(
        f"secret content type {content_type!r} is not a certificate's "
        f"({PKCS12_CONTENT_TYPE} or {PEM_CONTENT_TYPE}): not a certificate-backed secret"
    )


def _read_pem(value: str) -> tuple[Certificate, ...]:
    # str.find from where the last block ended: linear in the value, whatever it holds (a lazy
    # regex rescans to the end from every BEGIN line without an END: quadratic on hostile input).
    # Only CERTIFICATE blocks are decoded; key blocks are skipped unread.
    certificates: list[Certificate] = []
    position = 0
    while (begin := value.find(_PEM_BEGIN, position)) >= 0:
        number = len(certificates) + 1
        body_start = begin + len(_PEM_BEGIN)
        end = value.find(_PEM_END, body_start)
        if end < 0:
            raise ChainError(f"PEM certificate #{number} has no END CERTIFICATE line")
        try:
            der = base64.b64decode("".join(value[body_start:end].split()), validate=True)
        except (binascii.Error, ValueError):
            raise ChainError(f"PEM certificate #{number} is not valid base64") from None
        try:
            certificates.append(Certificate.from_x509(x509.load_der_x509_certificate(der)))
        except (ValueError, x509.InvalidVersion) as error:
            raise ChainError(f"PEM certificate #{number} cannot be parsed: {error}") from None
        position = end + len(_PEM_END)
    if not certificates:
        raise ChainError("PEM secret holds no certificates")
    return tuple(certificates)


def _read_pfx(value: str) -> tuple[Certificate, ...]:
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ChainError("PKCS#12 secret is not valid base64") from None
    certificates: list[x509.Certificate] | None = None
    stripped = _without_key_bags(data)
    if stripped is not None:
        try:
            certificates = _pfx_certificates(stripped)
        except (ValueError, UnsupportedAlgorithm):
            # Without a MAC, OpenSSL decrypts with the absent password (as Key Vault encrypts); a
            # PFX encrypted with the two-zero-byte empty password needs its MAC check to say so.
            certificates = None
    if certificates is None:
        try:
            certificates = _pfx_certificates(data)
        except ValueError:
            raise ChainError(
                "PKCS#12 secret cannot be opened with an empty password: it is password-protected or corrupt"
            ) from None
        except UnsupportedAlgorithm as error:
            raise ChainError(f"PKCS#12 secret uses an unsupported algorithm: {error}") from None
    if not certificates:
        raise ChainError("PKCS#12 secret holds no certificates")
    return tuple(Certificate.from_x509(cert) for cert in certificates)


def _pfx_certificates(data: bytes) -> list[x509.Certificate]:
    bundle = pkcs12.load_pkcs12(data, b"")
    found = ([bundle.cert.certificate] if bundle.cert is not None else []) + [
        item.certificate for item in bundle.additional_certs
    ]
    del bundle  # a key decrypted along with the certificates (key bag in an EncryptedData) goes here
    return found


# PKCS#12 by DER structure alone (RFC 7292): PFX → authSafe ContentInfo → AuthenticatedSafe (a
# SEQUENCE OF ContentInfo) → for id-data ones, SafeContents (a SEQUENCE OF SafeBag). No crypto here.
_OID_DATA = bytes.fromhex("06092a864886f70d010701")
_OID_KEY_BAGS = {
    bytes.fromhex("060b2a864886f70d010c0a0101"),  # keyBag
    bytes.fromhex("060b2a864886f70d010c0a0102"),  # pkcs8ShroudedKeyBag
}
_SEQUENCE, _OCTET_STRING, _INTEGER, _EXPLICIT_0 = 0x30, 0x04, 0x02, 0xA0


class _Unexpected(Exception):
    """Not the plain-DER PKCS#12 shape this reader cuts: open the PFX whole instead."""


def _element(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at `offset`."""
    if offset + 2 > end:
        raise _Unexpected
    tag, length, start = data[offset], data[offset + 1], offset + 2
    if tag & 0x1F == 0x1F:
        raise _Unexpected  # a high tag number: nothing in PKCS#12
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or start + count > end:
            raise _Unexpected  # 0: BER indefinite length
        length, start = int.from_bytes(data[start : start + count], "big"), start + count
    if start + length > end:
        raise _Unexpected
    return tag, start, start + length


def _elements(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(tag, element start, value start, value end) of each element in data[start:end]."""
    while start < end:
        tag, value_start, value_end = _element(data, start, end)
        yield tag, start, value_start, value_end
        start = value_end


def _only(data: bytes, start: int, end: int, tag: int) -> tuple[int, int]:
    found = list(_elements(data, start, end))
    if len(found) != 1 or found[0][0] != tag:
        raise _Unexpected
    return found[0][2], found[0][3]


def _encode(tag: int, value: bytes) -> bytes:
    size = len(value)
    if size < 0x80:
        return bytes((tag, size)) + value
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + value


def _data_content(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The octets of an id-data ContentInfo at data[start:end], or None for another content type."""
    parts = list(_elements(data, start, end))
    if len(parts) != 2 or parts[0][0] != 0x06 or parts[1][0] != _EXPLICIT_0:
        raise _Unexpected
    if data[parts[0][1] : parts[0][3]] != _OID_DATA:
        return None
    return _only(data, parts[1][2], parts[1][3], _OCTET_STRING)


def _data_info(content: bytes) -> bytes:
    return _encode(_SEQUENCE, _OID_DATA + _encode(_EXPLICIT_0, _encode(_OCTET_STRING, content)))


def _without_key_bags(pfx: bytes) -> bytes | None:
    """The PFX without its plain-Data key bags and without its MAC; None if there is nothing to drop
    or the shape is not the plain DER expected."""
    try:
        start, end = _only(pfx, 0, len(pfx), _SEQUENCE)
        parts = list(_elements(pfx, start, end))
        if len(parts) not in (2, 3) or pfx[parts[0][1] : parts[0][3]] != bytes.fromhex("020103"):
            raise _Unexpected  # version 3 only
        auth = _data_content(pfx, parts[1][2], parts[1][3])
        if auth is None:
            raise _Unexpected  # public-key integrity mode: signed, not ours to re-encode
        infos_start, infos_end = _only(pfx, auth[0], auth[1], _SEQUENCE)
        kept_infos: list[bytes] = []
        dropped = 0
        for tag, info_start, value_start, value_end in _elements(pfx, infos_start, infos_end):
            if tag != _SEQUENCE:
                raise _Unexpected
            safe = _data_content(pfx, value_start, value_end)
            if safe is None:  # EncryptedData or EnvelopedData: kept as it is
                kept_infos.append(pfx[info_start:value_end])
                continue
            bags_start, bags_end = _only(pfx, safe[0], safe[1], _SEQUENCE)
            kept_bags: list[bytes] = []
            for bag_tag, bag_start, bag_value_start, bag_end in _elements(pfx, bags_start, bags_end):
                if bag_tag != _SEQUENCE:
                    raise _Unexpected
                bag_id = next(_elements(pfx, bag_value_start, bag_end))
                if pfx[bag_id[1] : bag_id[3]] in _OID_KEY_BAGS:
                    dropped += 1
                else:
                    kept_bags.append(pfx[bag_start:bag_end])
            if kept_bags:
                kept_infos.append(_data_info(_encode(_SEQUENCE, b"".join(kept_bags))))
        if not dropped:
            return None
        return _encode(_SEQUENCE, bytes.fromhex("020103") + _data_info(_encode(_SEQUENCE, b"".join(kept_infos))))
    except (_Unexpected, StopIteration):
        return None


# -- validation policy -------------------------------------------------------------------------------
# RFC 5280 rather than the CA/Browser Forum profile (webpki_defaults_*): private PKIs often lack
# AKIs, SANs and critical key usages. What cryptography keeps in any policy: v3 only, validity, path
# length (counting self-issued intermediates too), name constraints, unknown critical extensions
# refused, RSA keys of at least 2048 bits and SHA-2 (or PSS, ECDSA) signatures below the anchor.


def _ca_basic_constraints(policy: Policy, cert: x509.Certificate, value: x509.BasicConstraints) -> None:
    if not value.ca:
        raise ValueError("basicConstraints cA=false")


def _ca_key_usage(policy: Policy, cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
    if value is not None and not value.key_cert_sign:
        raise ValueError("keyUsage without keyCertSign")


def _server_auth(policy: Policy, cert: x509.Certificate, value: x509.ExtendedKeyUsage | None) -> None:
    if value is not None and not _allows_server_auth(value):
        raise ValueError("extendedKeyUsage allows no serverAuth")


def _allows_server_auth(usage: x509.ExtendedKeyUsage) -> bool:
    return bool({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(usage))


_CA_POLICY = (
    ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
)
_SERVER_POLICY = ExtensionPolicy.permit_all().may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_auth)
_CA_LEAF_POLICY = ExtensionPolicy.permit_all()  # an issuing CA held in Key Vault: no serverAuth needed


# -- trust paths ---------------------------------------------------------------------------------------


def trust_path(certificates: Sequence[Certificate], *, leaf_thumbprint: str | None, at: datetime) -> TrustPath:
    """The validated path of a secret's leaf, as the CAs to upload and trust.

    `leaf_thumbprint` (SHA-1 hex, Key Vault's x5t) names the leaf; None: the one certificate that
    issues no other in the bag. The anchor is a self-signed certificate of the secret that the leaf
    reaches by issuer names; only when the names reach none is it the topmost certificate reached
    (root missing). Raises ChainError if the leaf cannot be told, ChainRejected if no path is valid.
    """
    if not certificates:
        raise ChainError("the secret holds no certificates")
    unique = list(dict.fromkeys(certificates))
    leaf = _pick_leaf(unique, leaf_thumbprint)
    others = [cert for cert in unique if cert != leaf]
    notes: list[str] = []
    if _is_self_issued(leaf):
        anchors, intermediates = [leaf], []
    else:
        reached = _reached_by_names(leaf, others)
        roots = [cert for cert in reached if _is_root(cert)]
        subjects = {_name(cert.parsed.subject) for cert in unique}
        tops = [cert for cert in reached if not _is_self_issued(cert) and _name(cert.parsed.issuer) not in subjects]
        if not reached:
            raise ChainRejected(
                leaf.subject, [f"missing issuer: the secret holds no {leaf.issuer} (issuer of {leaf.subject})"]
            )
        if not roots and not tops:
            raise ChainRejected(leaf.subject, [f"the issuers of {leaf.subject} in the secret lead to no root"])
        # A root the names reach is the anchor, and failing against it is failing: a lower CA is
        # never promoted to anchor past its own issuer's constraints.
        anchors = roots or tops
        intermediates = [cert for cert in reached if cert not in anchors]
    path = _validate(leaf, anchors, intermediates, at, explain=_bag_explanation)

    authorities: list[Authority] = []
    if len(path) > 1 and leaf.is_ca:
        refusal = _ca_leaf_refusal(path)
        if refusal is None:
            authorities.append(Authority(leaf, Role.INTERMEDIATE))
        else:
            notes.append(f"{leaf.subject} is a CA certificate but {refusal}: it is not trusted as a CA")
    authorities.extend(Authority(cert, Role.INTERMEDIATE) for cert in path[1:-1])
    authorities.append(Authority(path[-1], Role.ROOT))

    top = path[-1]
    if top != leaf and not _is_self_issued(top):
        notes.append(f"root missing: the secret stops at {top.subject}, issued by {top.issuer}")
    if leaf.not_before > at:
        notes.append(f"{leaf.subject} is not valid before {leaf.not_before:%Y-%m-%d %H:%M}Z: validated as of then")
    unused = [cert for cert in others if cert not in path]
    if unused:
        names = "; ".join(cert.subject + _validity_remark(cert, at) for cert in unused)
        notes.append(f"ignored {len(unused)} certificate(s) not on the chain: {names}")
    if len(certificates) > len(unique):
        notes.append(f"ignored {len(certificates) - len(unique)} duplicate certificate(s)")
    return TrustPath(leaf=leaf, authorities=tuple(authorities), notes=tuple(notes))


def verdict(
    leaf: Certificate, *, trusted: Iterable[Certificate], untrusted: Iterable[Certificate], at: datetime
) -> Verdict:
    """Would a TLS client accept a backend presenting `leaf` alone, with `trusted` as its anchors
    (gateway CAs with isTrusted=true) and `untrusted` as intermediates for chain building?

    The validator and policy of `trust_path`: a self-signed leaf is accepted iff it is trusted and
    valid; a leaf not yet valid is judged as of its notBefore, its CAs as of `at` too.
    """
    anchors = list(dict.fromkeys(trusted))
    intermediates = [cert for cert in dict.fromkeys(untrusted) if cert not in anchors]
    try:
        path = _validate(leaf, anchors, intermediates, at, explain=_gateway_explanation)
    except ChainRejected as error:
        return Verdict(accepted=False, reason=error.reasons[0] if error.reasons else str(error), path=())
    return Verdict(accepted=True, reason="", path=tuple(path))


# -- validation ------------------------------------------------------------------------------------------


def _validate(
    leaf: Certificate,
    anchors: Sequence[Certificate],
    intermediates: Sequence[Certificate],
    at: datetime,
    *,
    explain: _Explanation,
) -> list[Certificate]:
    """The path leaf → anchor that cryptography's verifier builds, or ChainRejected with reasons."""
    # A version Key Vault holds before its notBefore is judged as of then, so that its CAs can be
    # trusted ahead of the rotation; those CAs must be valid now as well.
    when = max(at, leaf.not_before)
    if not anchors:
        raise ChainRejected(leaf.subject, explain(leaf, anchors, intermediates, at, when, ""))
    by_der = {cert.der: cert for cert in (leaf, *anchors, *intermediates)}
    verifier = (
        PolicyBuilder()
        .store(Store([cert.parsed for cert in anchors]))
        .time(when)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_CA_LEAF_POLICY if leaf.is_ca else _SERVER_POLICY)
        .build_client_verifier()
    )
    try:
        built = verifier.verify(leaf.parsed, [cert.parsed for cert in intermediates])
    except VerificationError as error:
        raise ChainRejected(leaf.subject, explain(leaf, anchors, intermediates, at, when, str(error))) from None
    path = [by_der[cert.public_bytes(serialization.Encoding.DER)] for cert in built.chain]
    stale = [f"CA {cert.subject} {_invalidity(cert, at)}" for cert in path[1:] if not cert.is_valid_at(at)]
    if stale:
        raise ChainRejected(leaf.subject, stale)
    return path


def _ca_leaf_refusal(path: Sequence[Certificate]) -> str | None:
    """Why the leaf CA of a valid path may not issue certificates itself, or None if it may.

    The verifier judged it as the end of the path; issuing puts it one level lower, so each CA
    above it must allow one more CA below (the verifier's depth count: every intermediate).
    """
    leaf = path[0]
    issue = _may_not_issue(leaf.parsed)
    if issue:
        return f"may not issue certificates: {issue}"
    for depth, cert in enumerate(path[1:], start=1):
        constraints = _basic_constraints(cert.parsed)
        if constraints is not None and constraints.path_length is not None and constraints.path_length < depth:
            return (
                f"may not issue certificates: {cert.subject} has pathLenConstraint {constraints.path_length}, "
                f"which allows no {depth} CA(s) below it"
            )
    return None


def _bag_explanation(
    leaf: Certificate,
    anchors: Sequence[Certificate],
    intermediates: Sequence[Certificate],
    at: datetime,
    when: datetime,
    verifier_error: str,
) -> list[str]:
    reasons = _certificate_problems(leaf, [*intermediates, *anchors], at, when)
    return _with_verifier_error(reasons, verifier_error, leaf, [*intermediates, *anchors], when)


def _gateway_explanation(
    leaf: Certificate,
    anchors: Sequence[Certificate],
    intermediates: Sequence[Certificate],
    at: datetime,
    when: datetime,
    verifier_error: str,
) -> list[str]:
    """Why a gateway's CAs do not let a TLS client accept the leaf: the likeliest cause first."""
    leaf_problems = _certificate_problems(leaf, [], at, when)
    if leaf_problems:
        return leaf_problems
    reached = _reached_by_names(leaf, [*anchors, *intermediates])
    if not any(cert in anchors for cert in reached) and leaf not in anchors:
        untrusted_roots = [cert for cert in reached if _is_self_issued(cert)]
        if untrusted_roots or _is_self_issued(leaf):
            top = untrusted_roots[0] if untrusted_roots else leaf
            state = "on the gateway with isTrusted=false" if top in intermediates else "not on the gateway"
            return [f"no trusted anchor: {top.subject} is {state}"]
        known = {_name(cert.parsed.subject) for cert in (*reached, leaf)}
        for cert in (leaf, *reached):
            if _name(cert.parsed.issuer) not in known:
                return [f"missing intermediate {cert.issuer} (issuer of {cert.subject})"]
    reasons = _certificate_problems(leaf, reached, at, when)
    return _with_verifier_error(reasons, verifier_error, leaf, reached, when)


def _certificate_problems(leaf: Certificate, cas: Sequence[Certificate], at: datetime, when: datetime) -> list[str]:
    """What is wrong with the leaf and each candidate CA on its own, without linking any two."""
    problems: list[str] = []
    if not leaf.is_valid_at(when):
        problems.append(f"leaf {leaf.subject} {_invalidity(leaf, when)}")
    if not leaf.is_ca:
        try:
            usage = leaf.parsed.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not _allows_server_auth(usage):
            problems.append(f"leaf {leaf.subject}: extendedKeyUsage allows no serverAuth, which a TLS client requires")
    signer_issue = "" if _is_self_issued(leaf) else _signature_problem(leaf)  # a self-signed leaf is an anchor
    if signer_issue:
        problems.append(signer_issue)
    for cert in cas:
        for moment in dict.fromkeys((when, at)):
            if not cert.is_valid_at(moment):
                problems.append(f"CA {cert.subject} {_invalidity(cert, moment)}")
                break
        issue = _may_not_issue(cert.parsed)
        if issue:
            problems.append(f"{cert.subject} may not issue certificates: {issue}")
        key_issue = _key_problem(cert)
        if key_issue:
            problems.append(key_issue)
        if not _is_self_issued(cert):
            signer_issue = _signature_problem(cert)
            if signer_issue:
                problems.append(signer_issue)
    return problems


def _may_not_issue(cert: x509.Certificate) -> str:
    """Why this certificate's own extensions forbid it to issue certificates ("" if they allow it)."""
    constraints = _basic_constraints(cert)
    if constraints is None:
        return "basicConstraints absent"
    if not constraints.ca:
        return "basicConstraints cA=false"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    return "" if usage.key_cert_sign else "keyUsage without keyCertSign"


def _key_problem(cert: Certificate) -> str:
    try:
        key = cert.parsed.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return f"{cert.subject} has a public key that cannot be read"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MINIMUM_RSA_BITS:
        return f"{cert.subject} has a {key.key_size}-bit RSA key: at least {MINIMUM_RSA_BITS} bits are required to sign"
    if isinstance(key, dsa.DSAPublicKey):
        return f"{cert.subject} has a DSA key, which the validator does not accept for signing certificates"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        return f"{cert.subject} has an EC key on {key.curve.name}, which the validator does not accept"
    return ""


def _signature_problem(cert: Certificate) -> str:
    try:
        algorithm = cert.parsed.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return f"{cert.subject} is signed with an unsupported algorithm"
    if isinstance(algorithm, hashes.SHA1 | hashes.MD5):
        return f"{cert.subject} is signed with {algorithm.name.upper()}, which the validator refuses below the trust anchor"
    return ""


_PROCESSING = re.compile(r" ?\(encountered processing <Certificate\(subject=<Name\((?P<subject>.*?)\)>, \.\.\.\)>\)")


# Verifier errors that name no certificate and that the per-certificate checks already explain.
_EXPLAINED = ("not valid at validation time", "must be asserted", "validator failed", "missing required extension")


def _with_verifier_error(
    reasons: list[str], error: str, leaf: Certificate, candidates: Sequence[Certificate], when: datetime
) -> list[str]:
    if not error or (reasons and not _PROCESSING.search(error) and any(text in error for text in _EXPLAINED)):
        return reasons
    return [*reasons, _readable(error, leaf, candidates, when)]


def _readable(error: str, leaf: Certificate, candidates: Sequence[Certificate], when: datetime) -> str:
    """cryptography's VerificationError text without its wrapping, naming the certificate it concerns."""
    if "signature does not match" in error:
        broken = _unsigned_link(leaf, candidates, when)
        if broken:
            return broken
    text = error.removeprefix("validation failed: ")
    subject = leaf.subject
    match = _PROCESSING.search(text)
    if match:
        subject, text = match.group("subject"), _PROCESSING.sub("", text)
    for prefix in ("candidates exhausted: ", "Python extension validator failed: ValueError: "):
        text = text.replace(prefix, "")
    text = text.split(" AlgorithmIdentifier {")[0].split(": DefinedByMarker")[0]  # no Rust debug dumps
    if text == "all candidates exhausted with no interior errors":
        text = "no issuer in the secret with the name it names"
    return f"{subject}: {text}"


def _unsigned_link(leaf: Certificate, candidates: Sequence[Certificate], when: datetime) -> str:
    """The first certificate above the leaf that none of its namesake issuers signed, found by asking
    the verifier about one link at a time (each issuer alone as the anchor): wording only, after the
    path was refused."""
    by_subject: dict[bytes, list[Certificate]] = {}
    for cert in candidates:
        by_subject.setdefault(_name(cert.parsed.subject), []).append(cert)
    seen: set[Certificate] = set()
    pending = [leaf]
    while pending:
        child = pending.pop(0)
        if child in seen or (child is not leaf and _is_self_issued(child)):
            continue
        seen.add(child)
        issuers = [cert for cert in by_subject.get(_name(child.parsed.issuer), ()) if cert != child]
        outcomes = [_link_error(child, issuer, when) for issuer in issuers]
        if issuers and all("signature does not match" in outcome for outcome in outcomes):
            return f"{child.subject} names issuer {child.issuer}, but no certificate of that name signed it"
        pending.extend(issuer for issuer, outcome in zip(issuers, outcomes, strict=True) if not outcome)
    return ""


def _link_error(child: Certificate, issuer: Certificate, when: datetime) -> str:
    verifier = (
        PolicyBuilder()
        .store(Store([issuer.parsed]))
        .time(when)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_CA_LEAF_POLICY)
        .build_client_verifier()
    )
    try:
        verifier.verify(child.parsed, [])
    except VerificationError as error:
        return str(error)
    return ""


def _invalidity(cert: Certificate, at: datetime) -> str:
    if cert.not_after < at:
        return f"expired on {cert.not_after:%Y-%m-%d}"
    return f"is not valid before {cert.not_before:%Y-%m-%d}"


def _validity_remark(cert: Certificate, at: datetime) -> str:
    return "" if cert.is_valid_at(at) else f" ({_invalidity(cert, at)})"


# -- names -----------------------------------------------------------------------------------------------


def _pick_leaf(unique: Sequence[Certificate], leaf_thumbprint: str | None) -> Certificate:
    if leaf_thumbprint is not None:
        wanted = leaf_thumbprint.upper()
        leaf = next((cert for cert in unique if cert.sha1_thumbprint == wanted), None)
        if leaf is None:
            raise ChainError(f"the certificate's leaf {wanted} is not in its secret")
        return leaf
    if len(unique) == 1:
        return unique[0]
    issuers = {
        _name(cert.parsed.issuer) for cert in unique if not _is_self_issued(cert)
    }  # names that issue some other certificate
    leaves = [cert for cert in unique if _name(cert.parsed.subject) not in issuers]
    if len(leaves) != 1:
        names = "; ".join(cert.subject for cert in leaves) or "none"
        raise ChainError(f"cannot tell the leaf: {len(leaves)} certificates issue no other ({names})")
    return leaves[0]


def _reached_by_names(leaf: Certificate, others: Sequence[Certificate]) -> list[Certificate]:
    """Every certificate the leaf reaches by following issuer names upwards, nearest first."""
    by_subject: dict[bytes, list[Certificate]] = {}
    for cert in others:
        by_subject.setdefault(_name(cert.parsed.subject), []).append(cert)
    reached: dict[Certificate, None] = {}
    frontier = [leaf]
    while frontier:
        following: list[Certificate] = []
        for cert in frontier:
            if cert is not leaf and _is_self_issued(cert):
                continue  # a root: its issuer is itself
            for issuer in by_subject.get(_name(cert.parsed.issuer), ()):
                if issuer != leaf and issuer not in reached:
                    reached[issuer] = None
                    following.append(issuer)
        frontier = following
    return list(reached)


def _is_self_issued(cert: Certificate) -> bool:
    return _name(cert.parsed.subject) == _name(cert.parsed.issuer)


def _is_root(cert: Certificate) -> bool:
    """Self-issued and not provably signed by another key.

    Only tells a root from a key-rollover link (a self-issued certificate of one key signed by
    another, which is an intermediate). A signature that cannot be checked (SHA-1 with an old
    algorithm, say) still makes a root: an anchor's own signature is not judged.
    """
    if not _is_self_issued(cert):
        return False
    try:
        cert.parsed.verify_directly_issued_by(cert.parsed)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return True
    return True


def _name(name: x509.Name) -> bytes:
    # Names chain by their encoding, as the verifier compares them (no RFC 4518 case folding).
    return name.public_bytes()


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _basic_constraints(cert)
    return constraints is not None and constraints.ca


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _common_name(cert: x509.Certificate) -> str:
    """The most telling name in the subject: CN, else OU, else O (CA certificates often lack a CN)."""
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.ORGANIZATION_NAME):
        names = cert.subject.get_attributes_for_oid(oid)
        if names:
            value = names[0].value
            return value if isinstance(value, str) else value.decode("utf-8", errors="replace")
    return cert.subject.rfc4514_string()


__all__ = [
    "MAX_CHAIN_DEPTH",
    "PEM_CONTENT_TYPE",
    "PKCS12_CONTENT_TYPE",
    "Authority",
    "Certificate",
    "ChainError",
    "ChainRejected",
    "Role",
    "TrustPath",
    "Verdict",
    "read_secret",
    "trust_path",
    "verdict",
]
