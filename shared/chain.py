"""X.509 trust paths out of Key Vault certificate secrets.

Knows X.509 and nothing else: no I/O, nothing from ``azure.*``.

Reading: every certificate in a certificate's backing secret (PFX or PEM), never the private key.
PEM key blocks are skipped unread. A PFX is cut down to its certificate bags before it is opened:
Key Vault puts the key in a plain-Data SafeContents (a pkcs8ShroudedKeyBag) and the certificates
in a 3DES EncryptedData, so the key bags are dropped by DER structure alone and the rest, without
its MAC, goes to ``pkcs12.load_pkcs12``. Decrypting and checking an RSA key was nearly all the cost
of a secret (48 ms a secret with RSA-2048 keys, 1.8 ms with ECDSA P-256; now 1.1 and 1.3 ms with
its path validated: ``python -m bench.chain_cpu``). A key bag inside an EncryptedData
cannot be dropped unopened: such a PFX (and any PFX of an unexpected shape, BER included) is
opened whole, which is slower but just as correct, and the key is dropped on the spot.

Validating: one model of how the self-hosted gateway validates a backend's chain
(docs/gateway-model.md), run by OpenSSL's own X509_verify_cert, never by hand-written signature
linking. `verdict` asks it of a gateway's CA entries, `trust_path` of a secret's certificates.
Any certificate, no crash: whatever fails while reading or judging one becomes a ChainError.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from .pfx import mac_problem, without_key_bags

PKCS12_CONTENT_TYPE = "application/x-pkcs12"
PEM_CONTENT_TYPE = "application/x-pem-file"
MAX_SECRET_CHARS = 1_000_000  # Key Vault secrets are at most 25 KB; refuse anything absurd before decoding

_lib: Any = Binding.lib  # the libcrypto pyOpenSSL runs on, for what pyOpenSSL does not expose

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
        except Exception as error:  # any certificate, no crash (x400Address SANs, BIT STRING names)
            raise ChainError(f"certificate cannot be parsed: {type(error).__name__}: {error}") from None

    @classmethod
    def from_der(cls, der: bytes) -> Certificate:
        try:
            cert = x509.load_der_x509_certificate(der)
        except Exception as error:  # any bytes, no crash
            raise ChainError(f"not a DER certificate: {error}") from None
        return cls.from_x509(cert)

    @cached_property
    def openssl(self) -> crypto.X509:
        """The same certificate as OpenSSL's X509, made once per certificate."""
        return crypto.X509.from_cryptography(self.parsed)

    # Names are matched as OpenSSL matches them (its canonical encoding: case and whitespace folded,
    # string types alike), so that the names the leaf reaches are the issuers OpenSSL would find.
    @cached_property
    def subject_key(self) -> int:
        return int(_lib.X509_NAME_hash(_lib.X509_get_subject_name(self.openssl._x509)))  # no pyOpenSSL API

    @cached_property
    def issuer_key(self) -> int:
        return int(_lib.X509_NAME_hash(_lib.X509_get_issuer_name(self.openssl._x509)))  # no pyOpenSSL API

    @cached_property
    def is_self_signed(self) -> bool:
        """Self-issued and signed by its own key: a root, not a key-rollover link.

        A signature that cannot be checked (an algorithm cryptography does not verify) leaves the
        key identifiers to tell, as OpenSSL tells it: an anchor's own signature is not judged.
        """
        if not _is_self_issued(self):
            return False
        try:
            self.parsed.verify_directly_issued_by(self.parsed)
        except InvalidSignature:
            return False
        except ValueError as error:
            if "does not match issuer key type" in str(error):
                return False  # signed with a key of another type: by another key
            return self._key_identifiers_match()
        except Exception:  # an algorithm cryptography cannot check
            return self._key_identifiers_match()
        return True

    def _key_identifiers_match(self) -> bool:
        try:
            extensions = self.parsed.extensions
            authority = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
            subject = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except Exception:  # either is absent or unreadable: nothing says another key signed it
            return True
        return authority is None or authority == subject

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


# -- reading secrets ---------------------------------------------------------------------------------


def read_secret(value: str, content_type: str | None) -> tuple[Certificate, ...]:
    """Every certificate in a Key Vault certificate's backing secret, in file order, duplicates kept.

    The private key is never decrypted or decoded (see the module docstring for the one PFX shape
    where it must be).
    """
    if len(value) > MAX_SECRET_CHARS:
        raise ChainError(f"secret value is {len(value)} characters: too large to be a certificate")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in (PKCS12_CONTENT_TYPE, PEM_CONTENT_TYPE):
        raise ChainError(
            f"secret content type {content_type!r} is not a certificate's "
            f"({PKCS12_CONTENT_TYPE} or {PEM_CONTENT_TYPE}): not a certificate-backed secret"
        )
    try:
        return _read_pfx(value) if kind == PKCS12_CONTENT_TYPE else _read_pem(value)
    except ChainError:
        raise
    except Exception as error:  # any secret, no crash; the type only: never the value
        raise ChainError(f"the secret cannot be read: {type(error).__name__}") from None


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
        except Exception as error:  # any certificate, no crash
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
    problem = mac_problem(data)
    if problem:
        raise ChainError(f"PKCS#12 secret {problem}")
    stripped = without_key_bags(data)
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


# -- the gateway's path model ----------------------------------------------------------------------------
# One engine for both questions: OpenSSL's own X509_verify_cert (pyOpenSSL's store and context, the
# purpose set through cryptography's binding of the same libcrypto), as the self-hosted gateway's
# .NET-on-Linux TLS client runs it. docs/gateway-model.md gives the model and its sources:
# - anchors are self-signed certificates only, and no partial chains: .NET's custom root trust
#   fails a chain that does not end at a self-signed root of its store;
# - purpose sslserver: extendedKeyUsage is honoured on the leaf, every CA and the root;
# - an anchor is judged as OpenSSL's default verification judges it: validity and CA-ness (a v1
#   self-signed certificate, cA=true, or keyUsage with keyCertSign), never its own signature;
# - no security level (OpenSSL's verify default): key sizes and digests are not judged.
# The wording of a refusal comes from OpenSSL's error code, depth and certificate, never from a
# second, hand-written judgement of the path.

CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of the worker's clock a CA's notBefore is tolerated
_SKEW_RETRIES = 8  # CAs of one path whose notBefore may move the judged moment: far above any real PKI

# OpenSSL's verify error codes, from the library that runs: their numbers differ between versions.
_V_UNABLE_TO_GET_ISSUER_CERT: int = _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
_V_CERT_SIGNATURE_FAILURE: int = _lib.X509_V_ERR_CERT_SIGNATURE_FAILURE
_V_CERT_NOT_YET_VALID: int = _lib.X509_V_ERR_CERT_NOT_YET_VALID
_V_CERT_HAS_EXPIRED: int = _lib.X509_V_ERR_CERT_HAS_EXPIRED
_V_DEPTH_ZERO_SELF_SIGNED_CERT: int = _lib.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
_V_SELF_SIGNED_CERT_IN_CHAIN: int = _lib.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
_V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: int = _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
_V_INVALID_CA: int = _lib.X509_V_ERR_INVALID_CA
_V_PATH_LENGTH_EXCEEDED: int = _lib.X509_V_ERR_PATH_LENGTH_EXCEEDED
_V_INVALID_PURPOSE: int = _lib.X509_V_ERR_INVALID_PURPOSE
_V_UNHANDLED_CRITICAL_EXTENSION: int = _lib.X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION


@dataclass(frozen=True)
class _Refusal:
    """What X509_verify_cert said: its error code, the depth and certificate it concerns."""

    code: int
    depth: int
    message: str
    certificate: Certificate | None


def _openssl_verify(
    leaf: Certificate,
    anchors: Sequence[Certificate],
    intermediates: Sequence[Certificate],
    when: datetime,
    *,
    server: bool,
    partial: bool,
) -> list[Certificate] | _Refusal:
    """The path OpenSSL builds leaf → anchor at `when`, leaf first, or its refusal."""
    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(anchor.openssl)
    store.set_time(when)  # before the purpose: it replaces the store's parameters
    if server:
        _require(_lib.X509_STORE_set_purpose(store._store, _lib.X509_PURPOSE_SSL_SERVER))  # no pyOpenSSL API
    if partial:
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    context = crypto.X509StoreContext(store, leaf.openssl, [cert.openssl for cert in intermediates])
    by_der = {cert.der: cert for cert in (leaf, *anchors, *intermediates)}
    try:
        built = context.get_verified_chain()
    except crypto.X509StoreContextError as error:
        code, depth, message = int(error.errors[0]), int(error.errors[1]), str(error.errors[2])
        return _Refusal(code, depth, message, by_der.get(_der_of(error.certificate)))
    return [by_der[_der_of(cert)] for cert in built]


def _der_of(cert: crypto.X509) -> bytes:
    return cert.to_cryptography().public_bytes(serialization.Encoding.DER)


def _require(result: int) -> None:
    if result != 1:
        raise ChainError("OpenSSL refused the verification parameters")


def _verify(
    leaf: Certificate,
    anchors: Sequence[Certificate],
    intermediates: Sequence[Certificate],
    at: datetime,
    *,
    server: bool,
    partial: bool = False,
) -> list[Certificate] | _Refusal:
    """`_openssl_verify` as of the moment the leaf is judged, with the two clock rules.

    A leaf Key Vault holds before its notBefore is judged as of then, so that its CAs can be
    trusted ahead of the rotation; its CAs must be valid now as well. A CA whose notBefore is at
    most CLOCK_SKEW ahead of the worker's clock is judged as of its notBefore (its issuer's clock
    runs ahead of ours), never past the leaf's notAfter.
    """
    when = max(at, leaf.not_before)
    for _ in range(_SKEW_RETRIES):
        outcome = _openssl_verify(leaf, anchors, intermediates, when, server=server, partial=partial)
        if not isinstance(outcome, _Refusal) or outcome.code != _V_CERT_NOT_YET_VALID:
            break
        early = outcome.certificate
        if early is None or outcome.depth == 0 or not when < early.not_before <= at + CLOCK_SKEW:
            break
        if early.not_before > leaf.not_after:
            break
        when = early.not_before
    if isinstance(outcome, _Refusal):
        return outcome
    for depth, cert in enumerate(outcome[1:], start=1):
        if cert.not_after < at:
            return _Refusal(_V_CERT_HAS_EXPIRED, depth, "certificate has expired", cert)
        if cert.not_before > at + CLOCK_SKEW:
            return _Refusal(_V_CERT_NOT_YET_VALID, depth, "certificate is not yet valid", cert)
    return outcome


# -- trust paths ---------------------------------------------------------------------------------------


def trust_path(certificates: Sequence[Certificate], *, leaf_thumbprint: str | None, at: datetime) -> TrustPath:
    """The validated path of a secret's leaf, as the CAs to upload and trust.

    `leaf_thumbprint` (SHA-1 hex, Key Vault's x5t) names the leaf; None: the one certificate that
    issues no other in the bag. The anchors are the self-signed certificates of the secret that
    the leaf reaches by issuer names; only when the names reach none is the path validated up to
    the topmost certificate reached (root missing). Raises ChainError if the leaf cannot be told
    or a certificate cannot be judged, ChainRejected if no path is valid.
    """
    try:
        return _trust_path(certificates, leaf_thumbprint=leaf_thumbprint, at=at)
    except ChainError:
        raise
    except Exception as error:  # any certificate, no crash: this version is unusable, said so
        raise ChainError(f"the secret's certificates cannot be validated: {type(error).__name__}: {error}") from None


def _trust_path(certificates: Sequence[Certificate], *, leaf_thumbprint: str | None, at: datetime) -> TrustPath:
    if not certificates:
        raise ChainError("the secret holds no certificates")
    unique = list(dict.fromkeys(certificates))
    leaf = _pick_leaf(unique, leaf_thumbprint)
    others = [cert for cert in unique if cert != leaf]
    notes: list[str] = []
    partial = False
    if leaf.is_self_signed:
        anchors, intermediates = [leaf], []
    else:
        reached = _reached_by_names(leaf, others)
        roots = [cert for cert in reached if cert.is_self_signed]
        subjects = {cert.subject_key for cert in unique}
        tops = [cert for cert in reached if not _is_self_issued(cert) and cert.issuer_key not in subjects]
        if not reached:
            raise ChainRejected(
                leaf.subject, [f"missing issuer: the secret holds no {leaf.issuer} (issuer of {leaf.subject})"]
            )
        if not roots and not tops:
            raise ChainRejected(leaf.subject, [f"the issuers of {leaf.subject} in the secret lead to no root"])
        # A root the names reach is the anchor, and failing against it is failing: a lower CA is
        # never promoted to anchor past its own issuer's constraints.
        # Of several roots, only the valid ones are anchors when there are some: an expired root is
        # never uploaded, and OpenSSL would stop at it rather than take a cross-signed way round.
        valid_roots = [cert for cert in roots if cert.is_valid_at(at)]
        anchors, partial = (valid_roots or roots, False) if roots else (tops, True)
        intermediates = [cert for cert in reached if cert not in anchors and cert not in roots]
    # An issuing CA held in Key Vault is the end of its own path: it serves no TLS, so no purpose.
    outcome = _verify(leaf, anchors, intermediates, at, server=not leaf.is_ca, partial=partial)
    if isinstance(outcome, _Refusal):
        raise ChainRejected(leaf.subject, _bag_reasons(outcome, leaf, [*intermediates, *anchors], at))
    path = outcome

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
    if top != leaf and not top.is_self_signed:
        notes.append(f"root missing: the secret stops at {top.subject}, issued by {top.issuer}")
    if leaf.not_before > at:
        notes.append(f"{leaf.subject} is not valid before {_timestamp(leaf.not_before)}: validated as of then")
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
    """Would the gateway accept a backend presenting `leaf` alone, with `trusted` (its CA entries
    with isTrusted=true) and `untrusted` (those with isTrusted=false)?

    The path must end at a self-signed entry with isTrusted=true; every entry, trusted or not, is
    available as an intermediate (docs/gateway-model.md). A self-signed leaf is accepted iff its
    own entry is trusted and it is valid. A leaf not yet valid is judged as of its notBefore.

    OpenSSL takes the first fitting issuer among the intermediates, and the order in which the
    gateway hands over its entries is not known: when two entries share a name (cross-signing, a
    rollover), the leaf is judged with the entries in both orders and accepted only if both accept.
    """
    trusted_set = list(dict.fromkeys(trusted))
    untrusted_set = [cert for cert in dict.fromkeys(untrusted) if cert not in trusted_set]
    try:
        anchors = [cert for cert in trusted_set if cert.is_self_signed]
        entries = [cert for cert in (*trusted_set, *untrusted_set) if cert != leaf]
        orders = [entries]
        if len({cert.subject_key for cert in entries}) < len(entries):
            orders.append(entries[::-1])
        outcomes = [_verify(leaf, anchors, order, at, server=True) for order in orders]
        refusals = [outcome for outcome in outcomes if isinstance(outcome, _Refusal)]
        if refusals:
            reason = _gateway_reason(refusals[0], leaf, trusted_set, untrusted_set, at)
            if len(refusals) < len(outcomes):
                reason += " (with the gateway's entries in another order, a path is found: the order decides)"
            return Verdict(False, reason, ())
    except Exception as error:  # any certificate, no crash: a refusal that says why
        return Verdict(False, f"{leaf.subject} cannot be validated: {type(error).__name__}: {error}", ())
    path = outcomes[0]
    assert not isinstance(path, _Refusal)
    return Verdict(True, "", tuple(path))


def _ca_leaf_refusal(path: Sequence[Certificate]) -> str | None:
    """Why the leaf CA of a valid path may not issue certificates itself, or None if it may.

    OpenSSL judged it as the end of the path; issuing puts it one level lower, so each CA above it
    must allow one more CA below, counted as OpenSSL counts (self-issued CAs do not count).
    """
    leaf = path[0]
    issue = _may_not_issue(leaf.parsed)
    if issue:
        return f"may not issue certificates: {issue}"
    below = 1  # the leaf CA itself, once it issues
    for cert in path[1:]:
        constraints = _basic_constraints(cert.parsed)
        if constraints is not None and constraints.path_length is not None and constraints.path_length < below:
            return (
                f"may not issue certificates: {cert.subject} has pathLenConstraint {constraints.path_length}, "
                f"which allows no {below} CA(s) below it"
            )
        if not _is_self_issued(cert):
            below += 1
    return None


# -- wording ---------------------------------------------------------------------------------------------


def _bag_reasons(refusal: _Refusal, leaf: Certificate, candidates: Sequence[Certificate], at: datetime) -> list[str]:
    """Why the secret's certificates give its leaf no path: the leaf's own defect first."""
    reasons = _leaf_problems(leaf, at)
    cert = refusal.certificate or leaf
    if refusal.code in (_V_UNABLE_TO_GET_ISSUER_CERT, _V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY):
        namesakes = [c for c in candidates if c != cert and c.subject_key == cert.issuer_key]
        if namesakes:
            reasons.append(f"{cert.subject} names issuer {cert.issuer}, but no certificate of that name signed it")
        else:
            reasons.append(f"missing issuer: the secret holds no {cert.issuer} (issuer of {cert.subject})")
    else:
        reasons.append(_common_reason(refusal, leaf, at))
    return reasons


def _gateway_reason(
    refusal: _Refusal, leaf: Certificate, trusted: Sequence[Certificate], untrusted: Sequence[Certificate], at: datetime
) -> str:
    """Why the gateway's CA entries do not let it accept the leaf, naming the entry concerned."""
    leaf_problems = _leaf_problems(leaf, at)
    if leaf_problems:
        return leaf_problems[0]
    cert = refusal.certificate or leaf
    if refusal.code in (_V_DEPTH_ZERO_SELF_SIGNED_CERT, _V_SELF_SIGNED_CERT_IN_CHAIN):
        return f"no trusted anchor: {cert.subject} is {_entry_state(cert, trusted, untrusted)}"
    if refusal.code in (_V_UNABLE_TO_GET_ISSUER_CERT, _V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY):
        if cert == leaf and cert.is_self_signed:
            return f"no trusted anchor: {cert.subject} is {_entry_state(cert, trusted, untrusted)}"
        namesakes = [c for c in (*trusted, *untrusted) if c != cert and c.subject_key == cert.issuer_key]
        if namesakes:
            return (
                f"{cert.subject} names issuer {cert.issuer}, but no certificate of that name on the gateway signed it"
            )
        if cert == leaf:
            return f"missing intermediate {leaf.issuer} (issuer of {leaf.subject})"
        remark = ""
        if cert in trusted:
            remark = f"; {cert.subject} has isTrusted=true but is not a self-signed root, so it is no anchor"
        return f"root missing: {cert.issuer} (issuer of {cert.subject}) is not on the gateway{remark}"
    return _common_reason(refusal, leaf, at)


def _entry_state(cert: Certificate, trusted: Sequence[Certificate], untrusted: Sequence[Certificate]) -> str:
    if cert in untrusted:
        return "on the gateway with isTrusted=false"
    if cert in trusted:
        return "on the gateway with isTrusted=true but not a usable anchor"
    return "not on the gateway"


def _common_reason(refusal: _Refusal, leaf: Certificate, at: datetime) -> str:
    """OpenSSL's refusal in words that name the certificate (the wording both callers share)."""
    cert = refusal.certificate or leaf
    role = "leaf" if cert == leaf else "CA"
    code = refusal.code
    if code == _V_CERT_HAS_EXPIRED:
        return f"{role} {cert.subject} expired on {_timestamp(cert.not_after)}"
    if code == _V_CERT_NOT_YET_VALID:
        return f"{role} {cert.subject} is not valid before {_timestamp(cert.not_before)}"
    if code == _V_INVALID_CA:
        return f"{cert.subject} may not issue certificates: {_may_not_issue(cert.parsed) or refusal.message}"
    if code == _V_PATH_LENGTH_EXCEEDED:
        return f"{cert.subject}: path length constraint violated (pathLenConstraint allows fewer CAs below it)"
    if code == _V_INVALID_PURPOSE:
        return f"{role} {cert.subject}: {_purpose_problem(cert, is_leaf=cert == leaf)}"
    if code == _V_CERT_SIGNATURE_FAILURE:
        return f"{cert.subject} names issuer {cert.issuer}, but no certificate of that name signed it"
    if code == _V_UNHANDLED_CRITICAL_EXTENSION:
        return f"{cert.subject}: unhandled critical extension {', '.join(_unknown_critical(cert)) or ''}".rstrip()
    return f"{cert.subject}: {refusal.message}"


def _purpose_problem(cert: Certificate, *, is_leaf: bool) -> str:
    """Which extension makes OpenSSL's sslserver purpose refuse this certificate."""
    extensions = cert.parsed.extensions
    try:
        usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and ExtendedKeyUsageOID.SERVER_AUTH not in usage:
        why = "extendedKeyUsage allows no serverAuth, which a TLS client requires"
        return why + (
            " (anyExtendedKeyUsage is not enough)" if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usage else ""
        )
    try:
        key_usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if (
        is_leaf
        and key_usage is not None
        and not (key_usage.digital_signature or key_usage.key_encipherment or key_usage.key_agreement)
    ):
        return "keyUsage allows none of digitalSignature, keyEncipherment, keyAgreement: no TLS server key"
    return "unsuitable certificate purpose for a TLS server (OpenSSL's sslserver purpose)"


def _leaf_problems(leaf: Certificate, at: datetime) -> list[str]:
    """The leaf's own validity, judged first: the likeliest cause when it fails."""
    when = max(at, leaf.not_before)
    return [] if leaf.not_after >= when else [f"leaf {leaf.subject} expired on {_timestamp(leaf.not_after)}"]


def _unknown_critical(cert: Certificate) -> list[str]:
    try:
        extensions = cert.parsed.extensions
    except Exception:  # wording only
        return []
    return [
        ext.oid.dotted_string
        for ext in extensions
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension)
    ]


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


def _timestamp(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _invalidity(cert: Certificate, at: datetime) -> str:
    if cert.not_after < at:
        return f"expired on {_timestamp(cert.not_after)}"
    return f"is not valid before {_timestamp(cert.not_before)}"


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
        cert.issuer_key for cert in unique if not _is_self_issued(cert)
    }  # names that issue some other certificate
    leaves = [cert for cert in unique if cert.subject_key not in issuers]
    if len(leaves) != 1:
        names = "; ".join(cert.subject for cert in leaves) or "none"
        raise ChainError(f"cannot tell the leaf: {len(leaves)} certificates issue no other ({names})")
    return leaves[0]


def _reached_by_names(leaf: Certificate, others: Sequence[Certificate]) -> list[Certificate]:
    """Every certificate the leaf reaches by following issuer names upwards, nearest first."""
    by_subject: dict[int, list[Certificate]] = {}
    for cert in others:
        by_subject.setdefault(cert.subject_key, []).append(cert)
    reached: dict[Certificate, None] = {}
    frontier = [leaf]
    while frontier:
        following: list[Certificate] = []
        for cert in frontier:
            if cert is not leaf and _is_self_issued(cert):
                continue  # a root: its issuer is itself
            for issuer in by_subject.get(cert.issuer_key, ()):
                if issuer != leaf and issuer not in reached:
                    reached[issuer] = None
                    following.append(issuer)
        frontier = following
    return list(reached)


def _is_self_issued(cert: Certificate) -> bool:
    return cert.subject_key == cert.issuer_key


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
    "CLOCK_SKEW",
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
