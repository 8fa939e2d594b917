"""Private PKIs for tests and the demo: hierarchies, and hand-made certificates of any shape.

Also renders what Key Vault stores in a certificate's backing secret: a PFX as Key Vault writes it
(see ``emulator.certs.keyvault_pfx``), or PEM with the PKCS#8 key first and then the certificates.

Keys are RSA-2048 by default, as Key Vault makes them. Generating one takes ~50-100 ms, so they come
from a pool: the first POOL_SIZE RSA keys are generated, later ones reuse them round-robin (any
POOL_SIZE consecutive keys are distinct). A test that needs a key no other certificate has, e.g. an
impostor's, asks for ``new_key(fresh=True)``. ECDSA P-256 keys (``key_type="ec"``) are always fresh.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulator.certs import der_tlv, keyvault_pfx

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyType = Literal["rsa", "ec"]
DEFAULT_KEY_TYPE: KeyType = "rsa"
POOL_SIZE = 16


class _KeyPool:
    """RSA-2048 keys made on first use and then handed out again round-robin."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: list[rsa.RSAPrivateKey] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def take(self) -> rsa.RSAPrivateKey:
        with self._lock:
            turn = next(self._turn) % self._size
            if turn == len(self._keys):
                self._keys.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
            return self._keys[turn]


_RSA_POOL = _KeyPool(POOL_SIZE)


def new_key(key_type: KeyType = DEFAULT_KEY_TYPE, *, fresh: bool = False) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if fresh:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _RSA_POOL.take()


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
    """root → intermediates → leaves. Names carry a random tag, so two hierarchies never share one."""

    def __init__(
        self, intermediates: int = 1, organization: str = "Contoso", *, key_type: KeyType = DEFAULT_KEY_TYPE
    ) -> None:
        self.organization = organization
        self.key_type = key_type
        self.root = make_certificate(
            f"{organization} Root CA {secrets.token_hex(4)}", is_ca=True, organization=organization, key_type=key_type
        )
        self.cas = [self.root]
        self._grow(intermediates)

    def _grow(self, intermediates: int) -> None:
        for number in range(1, intermediates + 1):
            self.cas.append(
                make_certificate(
                    f"{self.organization} Issuing CA {number} {secrets.token_hex(4)}",
                    issuer=self.cas[-1],
                    is_ca=True,
                    organization=self.organization,
                    key_type=self.key_type,
                )
            )

    def sibling(self) -> Hierarchy:
        """Another hierarchy under the same root: new intermediates (as many), same root certificate."""
        other = Hierarchy.__new__(Hierarchy)
        other.organization, other.key_type, other.root, other.cas = (
            self.organization,
            self.key_type,
            self.root,
            [self.root],
        )
        other._grow(len(self.cas) - 1)
        return other

    @property
    def issuer(self) -> Issued:
        return self.cas[-1]

    def issue(self, hostname: str, *, not_after: datetime | None = None) -> Issued:
        return make_certificate(
            hostname,
            issuer=self.issuer,
            not_after=not_after,
            organization=self.organization,
            dns_names=[hostname],
            key_type=self.key_type,
        )

    def ca_certificates(self) -> list[x509.Certificate]:
        """Intermediates (nearest the leaf first), then the root."""
        return [ca.certificate for ca in reversed(self.cas)]


def make_certificate(
    common_name: str,
    *,
    issuer: Issued | None = None,
    is_ca: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key: PrivateKey | None = None,
    key_type: KeyType = DEFAULT_KEY_TYPE,
    issuer_name: x509.Name | None = None,
    signing_key: PrivateKey | None = None,
    organization: str | None = None,
    basic_constraints: bool = True,
    path_length: int | None = None,
    key_usage: x509.KeyUsage | Literal["default"] | None = "default",
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = None,
    dns_names: Sequence[str] = (),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> Issued:
    """One certificate of any shape: self-signed when `issuer` is None; `issuer_name`/`signing_key` forge
    links. `key_usage` "default": keyCertSign+cRLSign for a CA, digitalSignature+keyEncipherment for a leaf;
    None: no keyUsage extension. `extensions` are added as given (extension, critical)."""
    key = key or new_key(key_type)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(attributes)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or (issuer.certificate.subject if issuer else subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer = signing_key or (issuer.key if issuer else key)
    if issuer is not None or signing_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None), critical=True
        )
    if key_usage == "default":
        key_usage = _key_usage(ca=is_ca)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if extended_key_usage is None and not is_ca:
        extended_key_usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    if extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]), critical=False
        )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def resigned_with_sha1(issued: Issued, signer: PrivateKey) -> x509.Certificate:
    """`issued`'s certificate signed again with sha1WithRSAEncryption, which cryptography no longer writes
    (legacy roots still carry it). Only the two AlgorithmIdentifiers and the signature change."""
    assert isinstance(signer, rsa.RSAPrivateKey)
    sha256_with_rsa = bytes.fromhex("06092a864886f70d01010b")
    sha1_with_rsa = bytes.fromhex("06092a864886f70d010105")
    tbs = issued.certificate.tbs_certificate_bytes
    assert tbs.count(sha256_with_rsa) == 1, "an RSA certificate signed with SHA-256"
    tbs = tbs.replace(sha256_with_rsa, sha1_with_rsa)
    signature = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - the legacy form under test
    algorithm = bytes.fromhex("300d") + sha1_with_rsa + bytes.fromhex("0500")
    bits = der_tlv(0x03, b"\x00" + signature)
    return x509.load_der_x509_certificate(der_tlv(0x30, tbs + algorithm + bits))


def pfx_secret(
    key: PrivateKey | None, leaf: x509.Certificate, cas: Sequence[x509.Certificate] = (), *, password: bytes = b""
) -> str:
    """A Key Vault ``application/x-pkcs12`` secret value: standard base64 of the PFX as Key Vault writes it.

    With a `password`, cryptography's best available encryption instead: what Key Vault never serves.
    """
    if password:
        data = pkcs12.serialize_key_and_certificates(
            b"certificate", key, leaf, list(cas) or None, serialization.BestAvailableEncryption(password)
        )
    else:
        data = keyvault_pfx(key, leaf, cas)
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
