"""Reading a Key Vault certificate's backing secret (PFX or PEM): every certificate, never the key.

Knows X.509 and nothing else: no I/O, nothing from ``azure.*``.

PEM: the CERTIFICATE blocks are found by a linear scan and only they go to cryptography's loader
(``x509.load_pem_x509_certificates``); key blocks, other blocks and text between blocks are
skipped unread. PFX: cut down to its certificate bags before it is opened (`pfx.py`): Key Vault
puts the key in a plain-Data SafeContents (a pkcs8ShroudedKeyBag) and the certificates in a 3DES
EncryptedData, so the key bags are dropped by DER structure alone and the rest, without its MAC,
goes to ``pkcs12.load_pkcs12``. Decrypting and checking an RSA key was nearly all the cost of a
secret (48 ms a secret with RSA-2048 keys, 1.8 ms with ECDSA P-256; ``python -m bench.chain_cpu``
for today's figures). A key bag inside an EncryptedData cannot be dropped unopened: such a PFX
(and any PFX of an unexpected shape, BER included) is opened whole, which is slower but just as
correct, and the key is dropped on the spot. Any secret, no crash: whatever fails while reading
one becomes a ChainError that repeats nothing of the value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import pkcs12

from .certificate import Certificate, ChainError
from .library_errors import pem_undecodable
from .pfx import mac_problem, without_key_bags

PKCS12_CONTENT_TYPE = "application/x-pkcs12"
PEM_CONTENT_TYPE = "application/x-pem-file"
MAX_SECRET_CHARS = 1_000_000  # Key Vault secrets are at most 25 KB; refuse anything absurd before decoding

_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


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
    blocks = _certificate_blocks(value)
    if not blocks:
        raise ChainError("PEM secret holds no certificates")
    return load_certificate_blocks(blocks)


def _certificate_blocks(value: str) -> list[str]:
    """The CERTIFICATE blocks of `value`, as `certificate_block` makes them; key blocks, other
    blocks and text between blocks are skipped unread. A BEGIN line without its END is an error
    (the library's loader would skip it silently: a secret cut short would read as whole).

    str.find from where the last block ended keeps the scan linear in the value, whatever it holds
    (a lazy regex rescans to the end from every BEGIN line without an END: quadratic on hostile input).
    """
    blocks: list[str] = []
    position = 0
    while (begin := value.find(_PEM_BEGIN, position)) >= 0:
        body_start = begin + len(_PEM_BEGIN)
        end = value.find(_PEM_END, body_start)
        if end < 0:
            raise ChainError(f"PEM certificate #{len(blocks) + 1} has no END CERTIFICATE line")
        blocks.append(certificate_block(len(blocks) + 1, value[body_start:end]))
        position = end + len(_PEM_END)
    return blocks


def certificate_block(number: int, body: str) -> str:
    """CERTIFICATE block #`number` of a PEM text, from what lies between its BEGIN and END lines,
    rebuilt as cryptography's loader is handed it: BEGIN line, the base64 on one line, END line.

    Any whitespace anywhere in the base64 is dropped, as base64 readers allow (the loader alone
    refuses a blank line in it). A body that cannot be base64 (a dash: another block inside this
    one, a key perhaps) is refused here and handed to nothing.
    """
    base64_text = "".join(body.split())
    if "-" in base64_text or not base64_text.isascii():
        raise ChainError(f"PEM certificate #{number} is not valid base64")
    return f"{_PEM_BEGIN}\n{base64_text}\n{_PEM_END}\n"


def load_certificate_blocks(blocks: Sequence[str]) -> tuple[Certificate, ...]:
    """The certificates of blocks made by `certificate_block`, in order, by cryptography's PEM
    loader; a ChainError names the first block that fails and repeats nothing of it."""
    try:
        loaded = x509.load_pem_x509_certificates("".join(blocks).encode("ascii"))
    except Exception:  # any certificate, no crash (x509.InvalidVersion is no ValueError)
        raise ChainError(_pem_problem(blocks)) from None
    certificates: list[Certificate] = []
    for number, cert in enumerate(loaded, start=1):
        try:
            certificates.append(Certificate.from_x509(cert))
        except ChainError as error:
            raise ChainError(f"PEM certificate #{number} cannot be parsed: {error}") from None
    return tuple(certificates)


def _pem_problem(blocks: Sequence[str]) -> str:
    """Which block the loader refused, and why, in words that repeat nothing of it."""
    for number, block in enumerate(blocks, start=1):
        try:
            x509.load_pem_x509_certificate(block.encode("ascii"))
        except Exception as error:  # any certificate, no crash
            if pem_undecodable(error):
                return f"PEM certificate #{number} is not valid base64"
            return f"PEM certificate #{number} cannot be parsed: {error}"
    return "PEM certificates cannot be read"


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


__all__ = [
    "MAX_SECRET_CHARS",
    "PEM_CONTENT_TYPE",
    "PKCS12_CONTENT_TYPE",
    "certificate_block",
    "load_certificate_blocks",
    "read_secret",
]
