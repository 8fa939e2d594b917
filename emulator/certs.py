"""Certificate material as Key Vault and APIM see it: parsing PFX/PEM/DER, the leaf, fingerprints."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"
CONTENT_TYPES = (PKCS12, PEM)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey  # the key types Key Vault certificates use

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


class CertificateFormatError(ValueError):
    """The data is not a certificate in the expected format (or the password is wrong)."""


@dataclass(frozen=True)
class CertificateMaterial:
    key: PrivateKey | None
    leaf: x509.Certificate  # the certificate of the private key; without a key, the first one
    certificates: tuple[x509.Certificate, ...]  # leaf first, then the others in the order supplied

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return self.certificates[1:]


def load_pkcs12(data: bytes, password: str | None) -> CertificateMaterial:
    try:
        key, cert, others = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError as error:
        raise CertificateFormatError(f"not a PKCS#12 (PFX) file, or the password is wrong: {error}") from None
    certificates = ([cert] if cert is not None else []) + list(others)
    if not certificates:
        raise CertificateFormatError("the PKCS#12 (PFX) file holds no certificate")
    return _assemble(_supported_key(key), certificates)


def load_pem(data: bytes) -> CertificateMaterial:
    keys: list[PrivateKey] = []
    certificates: list[x509.Certificate] = []
    for match in _PEM_BLOCK.finditer(data):
        label, block = match.group(1), match.group(0)
        if label == b"CERTIFICATE":
            certificates.append(x509.load_pem_x509_certificate(block))
        elif label.endswith(b"PRIVATE KEY"):
            try:
                loaded = serialization.load_pem_private_key(block, password=None)
            except (ValueError, TypeError) as error:
                raise CertificateFormatError(f"unreadable or encrypted private key: {error}") from None
            key = _supported_key(loaded)
            if key is not None:
                keys.append(key)
    if not certificates:
        raise CertificateFormatError("no PEM certificate found")
    if len(keys) > 1:
        raise CertificateFormatError("more than one private key")
    return _assemble(keys[0] if keys else None, certificates)


def load_der_certificate(data: bytes) -> CertificateMaterial:
    try:
        return _assemble(None, [x509.load_der_x509_certificate(data)])
    except ValueError:
        raise CertificateFormatError("not a DER certificate") from None


def _supported_key(key: object) -> PrivateKey | None:
    if key is None or isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    raise CertificateFormatError(f"unsupported private key type {type(key).__name__} (RSA and EC only)")


def _assemble(key: PrivateKey | None, certificates: Sequence[x509.Certificate]) -> CertificateMaterial:
    leaf = certificates[0]
    if key is not None:
        wanted = _public_der(key)
        matching = [c for c in certificates if _public_der(c) == wanted]
        if not matching:
            raise CertificateFormatError("the private key matches none of the certificates")
        leaf = matching[0]
    others = tuple(c for c in certificates if c is not leaf)
    return CertificateMaterial(key, leaf, (leaf, *others))


def _public_der(holder: PrivateKey | x509.Certificate) -> bytes:
    public = holder.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def to_pkcs12(material: CertificateMaterial, friendly_name: str) -> bytes:
    """A PFX with an empty password, the way Key Vault hands out certificate secrets."""
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode(), material.key, material.leaf, list(material.chain), serialization.NoEncryption()
    )


def to_pem(material: CertificateMaterial) -> str:
    """Unencrypted PKCS#8 key first, then the leaf and the rest of the chain."""
    parts: list[bytes] = []
    if material.key is not None:
        parts.append(
            material.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    parts.extend(c.public_bytes(serialization.Encoding.PEM) for c in material.certificates)
    return b"".join(parts).decode()


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def sha1_thumbprint(cert: x509.Certificate) -> str:
    """Upper-case hex SHA-1 of the DER, as APIM reports ``thumbprint``."""
    return hashlib.sha1(der(cert), usedforsecurity=False).hexdigest().upper()


def x5t(cert: x509.Certificate) -> str:
    """Base64url (unpadded) SHA-1 of the DER, as Key Vault reports ``x5t``."""
    digest = hashlib.sha1(der(cert), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def subject_string(name: x509.Name) -> str:
    """Most specific RDN first, comma-space separated, like .NET's X500DistinguishedName ("CN=a, O=b")."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def not_before(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc


def not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


def epoch(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp())
