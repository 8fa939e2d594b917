"""One X.509 certificate and the facts the sync reads from it. Knows X.509 alone: no I/O, nothing
from ``azure.*``.

A `Certificate` is public: its DER, names, fingerprints, validity and CA-ness, and the same
certificate as OpenSSL's X509 for the path model (`chain.py`). Any certificate, no crash: whatever
fails while reading one becomes a `ChainError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from .library_errors import signed_with_another_key_type

_lib: Any = Binding.lib  # the libcrypto pyOpenSSL runs on, for what pyOpenSSL does not expose


class ChainError(ValueError):
    """The secret is unusable or its chain untrustable; the message says why."""


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
        if not is_self_issued(self):
            return False
        try:
            self.parsed.verify_directly_issued_by(self.parsed)
        except InvalidSignature:
            return False
        except ValueError as error:
            if signed_with_another_key_type(error):
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


def is_self_issued(cert: Certificate) -> bool:
    """Issuer name and subject name alike, as OpenSSL matches them: a root or a key-rollover link."""
    return cert.subject_key == cert.issuer_key


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = basic_constraints(cert)
    return constraints is not None and constraints.ca


def basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
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


def may_not_issue(cert: x509.Certificate) -> str:
    """Why this certificate's own extensions forbid it to issue certificates ("" if they allow it)."""
    constraints = basic_constraints(cert)
    if constraints is None:
        return "basicConstraints absent"
    if not constraints.ca:
        return "basicConstraints cA=false"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    return "" if usage.key_cert_sign else "keyUsage without keyCertSign"


__all__ = [
    "Certificate",
    "ChainError",
    "basic_constraints",
    "is_self_issued",
    "may_not_issue",
]
