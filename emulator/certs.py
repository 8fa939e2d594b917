"""Certificate material as Key Vault and APIM see it: parsing PFX/PEM/DER, the leaf, fingerprints,
and PFX files written the way Key Vault writes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes
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


def to_pkcs12(material: CertificateMaterial) -> bytes:
    """A PFX with an empty password, the way Key Vault hands out certificate secrets."""
    return keyvault_pfx(material.key, material.leaf, material.chain)


# -- Key Vault's PFX -----------------------------------------------------------------------------------
# What GET /secrets/{name}/{version} answers for an application/x-pkcs12 certificate, byte for byte in
# structure (checked against a recording of the real service with `openssl pkcs12 -info`): a PFX v3
# whose AuthenticatedSafe holds a plain PKCS#7 Data with one pkcs8ShroudedKeyBag, then a PKCS#7
# EncryptedData with the certificate bags; both encrypted with pbeWithSHA1And3-KeyTripleDES-CBC,
# 2,000 iterations, 8-byte salts; a SHA-1 HMAC over the AuthenticatedSafe, 2,000 iterations, 20-byte
# salt. The password is *absent* (RFC 7292 B.2 with a zero-length P), not the BMPString "" (two zero
# bytes): the recorded MAC verifies only that way. cryptography writes no such file (it refuses an
# empty password for encryption), so it is assembled here: test tooling, never product code.

KEYVAULT_PBE_ITERATIONS = 2000
_OID_DATA = "1.2.840.113549.1.7.1"
_OID_ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
_OID_PBE_SHA1_3DES = "1.2.840.113549.1.12.1.3"
_OID_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
_OID_CERT_BAG = "1.2.840.113549.1.12.10.1.3"
_OID_X509_CERTIFICATE = "1.2.840.113549.1.9.22.1"
_OID_FRIENDLY_NAME = "1.2.840.113549.1.9.20"
_OID_LOCAL_KEY_ID = "1.2.840.113549.1.9.21"
_OID_MS_CSP_NAME = "1.3.6.1.4.1.311.17.1"
_OID_SHA1 = "1.3.14.3.2.26"
_KEYVAULT_LOCAL_KEY_ID = bytes.fromhex("01000000")
_RSA_PROVIDER = "Microsoft Enhanced RSA and AES Cryptographic Provider"


def keyvault_pfx(
    key: PrivateKey | None,
    leaf: x509.Certificate,
    cas: Sequence[x509.Certificate] = (),
    *,
    password: bytes = b"",
    iterations: int = KEYVAULT_PBE_ITERATIONS,
    key_with_certificates: bool = False,
) -> bytes:
    """A PFX as Key Vault writes it. `password` is the KDF's raw P: b"" is Key Vault's absent password;
    b"\\0\\0" the BMPString "" that some other tools use for an "empty" one. `key_with_certificates`
    puts the key bag inside the EncryptedData (as some other tools do), not in a Data of its own."""
    bags = [
        _safe_bag(
            _OID_CERT_BAG,
            _der_sequence(_der_oid(_OID_X509_CERTIFICATE), _der_explicit(0, _der_octets(der(leaf)))),
            [(_OID_LOCAL_KEY_ID, _der_octets(_KEYVAULT_LOCAL_KEY_ID))] if key is not None else [],
        )
    ]
    bags.extend(
        _safe_bag(
            _OID_CERT_BAG, _der_sequence(_der_oid(_OID_X509_CERTIFICATE), _der_explicit(0, _der_octets(der(ca)))), []
        )
        for ca in cas
    )
    infos = []
    if key is not None:
        pkcs8 = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        algorithm, encrypted = _pbe_encrypt(pkcs8, password, iterations)
        attributes = [
            (_OID_LOCAL_KEY_ID, _der_octets(_KEYVAULT_LOCAL_KEY_ID)),
            (_OID_FRIENDLY_NAME, _der_bmp(str(uuid.uuid4()))),
        ]
        if isinstance(key, rsa.RSAPrivateKey):  # the CSP Key Vault names for RSA; none assumed for EC
            attributes.append((_OID_MS_CSP_NAME, _der_bmp(_RSA_PROVIDER)))
        key_bag = _safe_bag(_OID_SHROUDED_KEY_BAG, _der_sequence(algorithm, _der_octets(encrypted)), attributes)
        if key_with_certificates:
            bags.append(key_bag)
        else:
            infos.append(_der_sequence(_der_oid(_OID_DATA), _der_explicit(0, _der_octets(_der_sequence(key_bag)))))
    algorithm, encrypted = _pbe_encrypt(_der_sequence(*bags), password, iterations)
    encrypted_data = _der_sequence(
        _der_integer(0), _der_sequence(_der_oid(_OID_DATA), algorithm, der_tlv(0x80, encrypted))
    )
    infos.append(_der_sequence(_der_oid(_OID_ENCRYPTED_DATA), _der_explicit(0, encrypted_data)))
    auth_safe = _der_sequence(*infos)
    mac_salt = os.urandom(20)
    mac_key = pkcs12_kdf(password, mac_salt, purpose=3, iterations=iterations, size=20)
    mac = hmac.new(mac_key, auth_safe, hashlib.sha1).digest()
    mac_data = _der_sequence(
        # Key Vault's DigestInfo names SHA-1 without the NULL parameter
        _der_sequence(_der_sequence(_der_oid(_OID_SHA1)), _der_octets(mac)),
        _der_octets(mac_salt),
        _der_integer(iterations),
    )
    return _der_sequence(
        _der_integer(3), _der_sequence(_der_oid(_OID_DATA), _der_explicit(0, _der_octets(auth_safe))), mac_data
    )


def pkcs12_kdf(password: bytes, salt: bytes, *, purpose: int, iterations: int, size: int) -> bytes:
    """RFC 7292 Appendix B.2 with SHA-1 (u=20, v=64); `password` is the raw P (already BMPString)."""
    u, v = 20, 64

    def stretch(data: bytes) -> bytes:  # repeated to a whole number of v-byte blocks
        length = v * ((len(data) + v - 1) // v)
        return (data * (length // len(data) + 1))[:length] if data else b""

    diversifier = bytes([purpose]) * v
    block = bytearray(stretch(salt) + stretch(password))
    out = b""
    while len(out) < size:
        digest = hashlib.sha1(diversifier + bytes(block), usedforsecurity=False).digest()
        for _ in range(iterations - 1):
            digest = hashlib.sha1(digest, usedforsecurity=False).digest()
        out += digest
        increment = int.from_bytes((digest * (v // u + 1))[:v], "big") + 1
        for offset in range(0, len(block), v):
            value = (int.from_bytes(block[offset : offset + v], "big") + increment) % (1 << (8 * v))
            block[offset : offset + v] = value.to_bytes(v, "big")
    return out[:size]


def _pbe_encrypt(plaintext: bytes, password: bytes, iterations: int) -> tuple[bytes, bytes]:
    """pbeWithSHA1And3-KeyTripleDES-CBC (RFC 7292 C): its AlgorithmIdentifier and the ciphertext."""
    salt = os.urandom(8)
    key = pkcs12_kdf(password, salt, purpose=1, iterations=iterations, size=24)
    iv = pkcs12_kdf(password, salt, purpose=2, iterations=iterations, size=8)
    padder = padding.PKCS7(64).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(TripleDES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    algorithm = _der_sequence(_der_oid(_OID_PBE_SHA1_3DES), _der_sequence(_der_octets(salt), _der_integer(iterations)))
    return algorithm, ciphertext


def _safe_bag(bag_id: str, value: bytes, attributes: Sequence[tuple[str, bytes]]) -> bytes:
    parts = [_der_oid(bag_id), _der_explicit(0, value)]
    if attributes:
        parts.append(
            der_tlv(0x31, b"".join(_der_sequence(_der_oid(oid), der_tlv(0x31, item)) for oid, item in attributes))
        )
    return _der_sequence(*parts)


def der_tlv(tag: int, value: bytes) -> bytes:
    """One DER element: tag, definite length, value."""
    size = len(value)
    if size < 0x80:
        return bytes((tag, size)) + value
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + value


def _der_sequence(*items: bytes) -> bytes:
    return der_tlv(0x30, b"".join(items))


def _der_explicit(number: int, value: bytes) -> bytes:
    return der_tlv(0xA0 | number, value)


def _der_octets(value: bytes) -> bytes:
    return der_tlv(0x04, value)


def _der_integer(value: int) -> bytes:
    return der_tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _der_bmp(text: str) -> bytes:
    return der_tlv(0x1E, text.encode("utf-16-be"))


def _der_oid(dotted: str) -> bytes:
    first, second, *rest = (int(part) for part in dotted.split("."))
    body = bytearray()
    for number in (40 * first + second, *rest):
        chunk = [number & 0x7F]
        while number > 0x7F:
            number >>= 7
            chunk.append(0x80 | (number & 0x7F))
        body.extend(reversed(chunk))
    return der_tlv(0x06, bytes(body))


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
