"""X.509 chains out of Key Vault certificate secrets.

Knows X.509 and nothing else: no I/O, nothing from ``azure.*``. The chain is built by names
*and verified signatures*, never by the order of certificates in the file, because Key Vault
keeps whatever order the PFX or PEM was imported with.

The private key is never needed: PEM key blocks are not even parsed, and the key that
``load_pkcs12`` has to decrypt along with the certificates is dropped on the spot.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

PKCS12_CONTENT_TYPE = "application/x-pkcs12"
PEM_CONTENT_TYPE = "application/x-pem-file"
MAX_CHAIN_LENGTH = 8  # far above any real PKI; stops loops and hostile bags
MAX_SECRET_CHARS = 1_000_000  # Key Vault secrets are at most 25 KB; refuse anything absurd before decoding

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)


# The certificates of one estate share a few CA certificates. Each is parsed, and each signature
# between two CAs verified, once per process instead of once per secret read: for a root →
# intermediate → leaf PFX that is most of the parsing after the PKCS#12 load itself (measured
# 2.5 → 1.6 ms a secret here). Leaves are unique to their secret and never kept. Both caches hold
# public facts keyed by exact DER (equal DER, equal answer), and are bounded.
_CA_CACHE_LIMIT = 4096
_cas_by_der: dict[bytes, Certificate] = {}
_ca_signatures: dict[tuple[bytes, bytes], bool] = {}  # (issuer DER, CA DER) → the signature verifies


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CA_CACHE_LIMIT:  # an estate this large is not one; start over rather than track age
        cache.clear()
    cache[key] = value


class ChainError(ValueError):
    """The secret does not hold a usable certificate chain; the message says why."""


class Role(enum.Enum):
    ROOT = "root"
    INTERMEDIATE = "intermediate"


@dataclass(frozen=True)
class Certificate:
    """A public certificate with the facts the sync needs, equal by DER."""

    der: bytes
    subject: str
    issuer: str
    sha1_thumbprint: str  # upper-case hex: what APIM reports as "thumbprint"
    sha256_fingerprint: str  # lower-case hex
    not_before: datetime
    not_after: datetime
    is_ca: bool
    common_name: str
    parsed: x509.Certificate = field(compare=False, repr=False)

    @classmethod
    def from_x509(cls, cert: x509.Certificate) -> Certificate:
        der = cert.public_bytes(serialization.Encoding.DER)
        known = _cas_by_der.get(der)
        if known is not None:
            return known
        certificate = cls(
            der=der,
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
        if certificate.is_ca:
            _remember(_cas_by_der, der, certificate)
        return certificate

    @classmethod
    def from_der(cls, der: bytes) -> Certificate:
        try:
            return cls.from_x509(x509.load_der_x509_certificate(der))
        except ValueError as error:
            raise ChainError(f"not a DER certificate: {error}") from None

    def is_expired(self, at: datetime) -> bool:
        return self.not_after <= at

    def signed(self, child: Certificate) -> bool:
        """True if this certificate's key signed `child` and its subject is `child`'s issuer."""
        if not child.is_ca:  # a leaf is unique to its secret: nothing to gain from remembering
            return self._verifies(child)
        key = (self.der, child.der)
        known = _ca_signatures.get(key)
        if known is None:
            known = self._verifies(child)
            _remember(_ca_signatures, key, known)
        return known

    def _verifies(self, child: Certificate) -> bool:
        try:
            child.parsed.verify_directly_issued_by(self.parsed)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            return False
        return True

    @property
    def is_self_signed(self) -> bool:
        return self.parsed.subject == self.parsed.issuer and self.signed(self)

    def public_pfx(self) -> bytes:
        """A PKCS#12 file holding this certificate alone: no key, empty password."""
        return pkcs12.serialize_key_and_certificates(
            name=None, key=None, cert=self.parsed, cas=None, encryption_algorithm=serialization.NoEncryption()
        )

    def __str__(self) -> str:
        return f"{self.subject} [{self.sha1_thumbprint}]"


@dataclass(frozen=True)
class Authority:
    """A CA certificate a gateway must know, with the role it plays in some chain."""

    certificate: Certificate
    role: Role


@dataclass(frozen=True)
class Chain:
    """leaf → intermediates → root, as proven by signatures."""

    leaf: Certificate
    intermediates: tuple[Certificate, ...]  # the leaf's issuer first
    root: Certificate | None  # None: the bag stops below a self-signed certificate
    unrelated: tuple[Certificate, ...] = ()  # in the secret but not on the path
    duplicates: int = 0

    @property
    def leaf_is_anchor(self) -> bool:
        return self.root is None and not self.intermediates and self.leaf.is_self_signed

    @property
    def root_missing(self) -> bool:
        return self.root is None and not self.leaf_is_anchor

    @property
    def authorities(self) -> tuple[Authority, ...]:
        """The CA certificates to upload and trust, leaf side first."""
        if self.leaf_is_anchor:
            return (Authority(self.leaf, Role.ROOT),)
        found: list[Authority] = []
        if self.leaf.is_ca:  # the vault holds an issuing CA: what it signs must chain to it
            found.append(Authority(self.leaf, Role.INTERMEDIATE))
        found.extend(Authority(cert, Role.INTERMEDIATE) for cert in self.intermediates)
        if self.root is not None:
            found.append(Authority(self.root, Role.ROOT))
        return tuple(found)

    @property
    def notes(self) -> tuple[str, ...]:
        """What an operator should know about this chain; not errors."""
        notes: list[str] = []
        if self.root_missing:
            top = self.intermediates[-1] if self.intermediates else self.leaf
            notes.append(f"root missing: the secret stops at {top.subject}, issued by {top.issuer}")
        if self.unrelated:
            names = "; ".join(cert.subject for cert in self.unrelated)
            notes.append(f"ignored {len(self.unrelated)} certificate(s) not on the chain: {names}")
        if self.duplicates:
            notes.append(f"ignored {self.duplicates} duplicate certificate(s)")
        notes.extend(
            f"{cert.subject} is used as a CA but its basic constraints do not allow it"
            for cert in (*self.intermediates, *([self.root] if self.root else []))
            if not cert.is_ca
        )
        return tuple(notes)


def parse_secret(value: str, content_type: str | None, *, leaf_thumbprint: str | None = None) -> Chain:
    """The chain in a Key Vault certificate's backing secret.

    `leaf_thumbprint` (SHA-1 hex, Key Vault's ``x5t``) names the certificate's own leaf; without it
    the leaf is the PFX's key certificate, or else the one certificate that signs no other.
    """
    certificates, key_certificate = read_certificates(value, content_type)
    if leaf_thumbprint is not None:
        wanted = leaf_thumbprint.upper()
        leaf = next((cert for cert in certificates if cert.sha1_thumbprint == wanted), None)
        if leaf is None:
            raise ChainError(f"the certificate's leaf {wanted} is not in its secret")
    else:
        leaf = key_certificate or find_leaf(certificates)
    return build_chain(leaf, certificates)


def read_certificates(value: str, content_type: str | None) -> tuple[list[Certificate], Certificate | None]:
    """Every certificate in the secret, and for a PFX the one that goes with its key."""
    if len(value) > MAX_SECRET_CHARS:
        raise ChainError(f"secret value is {len(value)} characters: too large to be a certificate")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == PKCS12_CONTENT_TYPE:
        return _read_pfx(value)
    if kind == PEM_CONTENT_TYPE:
        return _read_pem(value), None
    raise ChainError(
        f"secret content type {content_type!r} is not a certificate's "
        f"({PKCS12_CONTENT_TYPE} or {PEM_CONTENT_TYPE}): not a certificate-backed secret"
    )


def _read_pfx(value: str) -> tuple[list[Certificate], Certificate | None]:
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ChainError("PKCS#12 secret is not valid base64") from None
    try:
        bundle = pkcs12.load_pkcs12(data, b"")
    except ValueError:
        raise ChainError(
            "PKCS#12 secret cannot be opened with an empty password: it is password-protected or corrupt"
        ) from None
    except UnsupportedAlgorithm as error:
        raise ChainError(f"PKCS#12 secret uses an unsupported algorithm: {error}") from None
    key_cert = bundle.cert.certificate if bundle.cert is not None else None
    others = [item.certificate for item in bundle.additional_certs]
    del bundle  # drops the private key: nothing here needs it
    try:
        certificates = [Certificate.from_x509(cert) for cert in ([key_cert] if key_cert else []) + others]
    except ValueError as error:
        raise ChainError(f"PKCS#12 secret holds a certificate that cannot be parsed: {error}") from None
    if not certificates:
        raise ChainError("PKCS#12 secret holds no certificates")
    return certificates, certificates[0] if key_cert is not None else None


def _read_pem(value: str) -> list[Certificate]:
    # Only CERTIFICATE blocks are decoded; the key block is skipped unread.
    blocks = _PEM_CERTIFICATE.findall(value.encode("utf-8", errors="replace"))
    if not blocks:
        raise ChainError("PEM secret holds no certificates")
    certificates = []
    for number, block in enumerate(blocks, start=1):
        try:
            der = base64.b64decode(b"".join(block.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ChainError(f"PEM certificate #{number} is not valid base64") from None
        try:
            certificates.append(Certificate.from_x509(x509.load_der_x509_certificate(der)))
        except ValueError as error:
            raise ChainError(f"PEM certificate #{number} cannot be parsed: {error}") from None
    return certificates


def find_leaf(certificates: Sequence[Certificate]) -> Certificate:
    """The one certificate that signed no other in the bag."""
    unique = _unique(certificates)
    if len(unique) == 1:
        return unique[0]
    leaves = [cert for cert in unique if not any(cert.signed(other) for other in unique if other != cert)]
    if len(leaves) != 1:
        names = "; ".join(cert.subject for cert in leaves) or "none"
        raise ChainError(f"cannot tell the leaf: {len(leaves)} certificates sign no other ({names})")
    return leaves[0]


def build_chain(leaf: Certificate, certificates: Iterable[Certificate]) -> Chain:
    """Walk from `leaf` up through issuers whose signatures verify."""
    bag = list(certificates)
    unique = _unique(bag)
    pool = [cert for cert in unique if cert != leaf]
    path = [leaf]
    current = leaf
    root: Certificate | None = None
    while True:
        if current.is_self_signed:
            root = current if current != leaf else None
            break
        if current.parsed.subject == current.parsed.issuer:
            raise ChainError(f"{current} is self-issued but its signature does not verify")
        named = [cert for cert in pool if cert.parsed.subject == current.parsed.issuer]
        if not named:
            break  # the issuer is simply not in the secret: the root (or more) is missing
        signers = [cert for cert in named if cert.signed(current)]
        if not signers:
            raise ChainError(f"{current} names issuer {current.issuer}, but no certificate of that name signed it")
        # Several signers happen with a renewed or cross-signed CA: prefer a self-signed one, then the longest-lived.
        issuer = max(signers, key=lambda cert: (cert.is_self_signed, cert.not_after))
        if len(path) >= MAX_CHAIN_LENGTH:
            raise ChainError(f"chain is longer than {MAX_CHAIN_LENGTH} certificates")
        pool.remove(issuer)
        path.append(issuer)
        current = issuer
    intermediates = tuple(path[1:-1] if root is not None else path[1:])
    return Chain(
        leaf=leaf,
        intermediates=intermediates,
        root=root,
        unrelated=tuple(pool),
        duplicates=len(bag) - len(unique),
    )


def _unique(certificates: Iterable[Certificate]) -> list[Certificate]:
    return list(dict.fromkeys(certificates))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
    except x509.DuplicateExtension as error:  # not a ValueError: callers reject unparsable certificates by that
        raise ValueError(f"extension {error.oid.dotted_string} appears twice (RFC 5280 4.2 forbids it)") from None


def _common_name(cert: x509.Certificate) -> str:
    """The most telling name in the subject: CN, else OU, else O (CA certificates often lack a CN)."""
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.ORGANIZATION_NAME):
        names = cert.subject.get_attributes_for_oid(oid)
        if names:
            value = names[0].value
            return value if isinstance(value, str) else value.decode("utf-8", errors="replace")
    return cert.subject.rfc4514_string()


# Interim: the validated-path API the engine consumes, over the chain builder above until path
# validation moves to cryptography's verifier.
@dataclass(frozen=True)
class TrustPath:
    leaf: Certificate
    authorities: tuple[Authority, ...]
    notes: tuple[str, ...]


def read_secret(value: str, content_type: str | None) -> tuple[Certificate, ...]:
    certificates, _ = read_certificates(value, content_type)
    return tuple(certificates)


def trust_path(certificates: Sequence[Certificate], *, leaf_thumbprint: str | None, at: datetime) -> TrustPath:
    if leaf_thumbprint is not None:
        wanted = leaf_thumbprint.upper()
        leaf = next((cert for cert in certificates if cert.sha1_thumbprint == wanted), None)
        if leaf is None:
            raise ChainError(f"the certificate's leaf {wanted} is not in its secret")
    else:
        leaf = find_leaf(certificates)
    chain = build_chain(leaf, certificates)
    authorities = tuple(a for a in chain.authorities if not a.certificate.is_expired(at))
    expired = tuple(
        f"{a.role.value} {a.certificate.subject} expired on {a.certificate.not_after:%Y-%m-%d}; it is not trusted"
        for a in chain.authorities
        if a.certificate.is_expired(at)
    )
    return TrustPath(leaf, authorities, chain.notes + expired)
