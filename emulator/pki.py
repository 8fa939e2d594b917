"""Private PKIs for tests and the demo: trustme hierarchies, and hand-made certificates for odd shapes.

Also renders what Key Vault stores in a certificate's backing secret: a PFX with an empty
password, or PEM with the PKCS#8 key first and then the certificates.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate with its key."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


class Hierarchy:
    """root → intermediates → leaves, made by trustme."""

    def __init__(self, intermediates: int = 1, organization: str = "Contoso") -> None:
        self.root = trustme.CA(organization_name=organization, organization_unit_name=f"{organization} Root CA")
        self.cas = [self.root]
        for _ in range(intermediates):
            self.cas.append(self.cas[-1].create_child_ca())

    def sibling(self) -> Hierarchy:
        """Another hierarchy under the same root: new intermediates (as many), same root certificate."""
        other = Hierarchy.__new__(Hierarchy)
        other.root = self.root
        other.cas = [self.root]
        for _ in range(len(self.cas) - 1):
            other.cas.append(other.cas[-1].create_child_ca())
        return other

    @property
    def issuer(self) -> trustme.CA:
        return self.cas[-1]

    def issue(self, hostname: str, *, not_after: datetime | None = None) -> Issued:
        leaf = self.issuer.issue_cert(hostname, common_name=hostname, not_after=not_after)
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return Issued(x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()), key)

    def ca_certificates(self) -> list[x509.Certificate]:
        """Intermediates (nearest the leaf first), then the root."""
        return [x509.load_pem_x509_certificate(ca.cert_pem.bytes()) for ca in reversed(self.cas)]


def make_certificate(
    common_name: str,
    *,
    issuer: Issued | None = None,
    is_ca: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key: PrivateKey | None = None,
    issuer_name: x509.Name | None = None,
    signing_key: PrivateKey | None = None,
) -> Issued:
    """One certificate of any shape: self-signed when `issuer` is None; `issuer_name`/`signing_key` forge links."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or (issuer.certificate.subject if issuer else subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    signer = signing_key or (issuer.key if issuer else key)
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def pfx_secret(
    key: PrivateKey | None, leaf: x509.Certificate, cas: Sequence[x509.Certificate] = (), *, password: bytes = b""
) -> str:
    """A Key Vault ``application/x-pkcs12`` secret value: standard base64 of the PFX."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    data = pkcs12.serialize_key_and_certificates(b"certificate", key, leaf, list(cas) or None, encryption)
    return base64.b64encode(data).decode("ascii")


def pem_secret(key: PrivateKey | None, certificates: Sequence[x509.Certificate]) -> str:
    """A Key Vault ``application/x-pem-file`` secret value: the PKCS#8 key, then the certificates."""
    parts = []
    if key is not None:
        parts.append(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode("ascii")
        )
    parts.extend(cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in certificates)
    return "".join(parts)
