"""PKCS#12 by its DER structure (RFC 7292), for reading a Key Vault certificate's secret without its key.

Key Vault puts the key in a plain-Data SafeContents (a pkcs8ShroudedKeyBag) and the certificates in a
3DES EncryptedData: `without_key_bags` drops the key bags by structure alone, so the key is never
decrypted, and `mac_problem` checks the integrity the MAC gives (the cut PFX has none) with the
empty and the absent password, as OpenSSL tries them. Bytes in, bytes out; nothing here knows X.509.
"""

from __future__ import annotations

import hashlib
import hmac

from . import der

MAX_MAC_ITERATIONS = 1_000_000  # Key Vault uses 2,000; far above any real PFX, stops hostile secrets

# PKCS#12 by DER structure alone (RFC 7292): PFX → authSafe ContentInfo → AuthenticatedSafe (a
# SEQUENCE OF ContentInfo) → for id-data ones, SafeContents (a SEQUENCE OF SafeBag). No crypto here.
_OID_DATA = bytes.fromhex("06092a864886f70d010701")
_OID_KEY_BAGS = {
    bytes.fromhex("060b2a864886f70d010c0a0101"),  # keyBag
    bytes.fromhex("060b2a864886f70d010c0a0102"),  # pkcs8ShroudedKeyBag
}
_VERSION_3 = bytes.fromhex("020103")
_EXPLICIT_0 = 0xA0


def _data_content(info: der.Element) -> bytes | None:
    """The octets of an id-data ContentInfo, or None for another content type."""
    parts = info.children
    if len(parts) != 2 or parts[0].tag != der.OBJECT_IDENTIFIER or parts[1].tag != _EXPLICIT_0:
        raise der.DerError("not a ContentInfo")
    if parts[0].encoded != _OID_DATA:
        return None
    return parts[1].only(der.OCTET_STRING).value


def _data_info(content: bytes) -> bytes:
    return der.encode(der.SEQUENCE, _OID_DATA + der.encode(_EXPLICIT_0, der.encode(der.OCTET_STRING, content)))


def without_key_bags(pfx: bytes) -> bytes | None:
    """The PFX without its plain-Data key bags and without its MAC; None if there is nothing to drop
    or the shape is not the plain DER expected."""
    try:
        parts = der.single(pfx, der.SEQUENCE).children
        if len(parts) not in (2, 3) or parts[0].encoded != _VERSION_3:
            return None  # version 3 only
        auth = _data_content(parts[1])
        if auth is None:
            return None  # public-key integrity mode: signed, not ours to re-encode
        kept_infos: list[bytes] = []
        dropped = 0
        for info in der.single(auth, der.SEQUENCE).children:
            if info.tag != der.SEQUENCE:
                return None
            safe = _data_content(info)
            if safe is None:  # EncryptedData or EnvelopedData: kept as it is
                kept_infos.append(info.encoded)
                continue
            kept_bags: list[bytes] = []
            for bag in der.single(safe, der.SEQUENCE).children:
                if bag.tag != der.SEQUENCE:
                    return None
                if bag.child(0).encoded in _OID_KEY_BAGS:
                    dropped += 1
                else:
                    kept_bags.append(bag.encoded)
            if kept_bags:
                kept_infos.append(_data_info(der.encode(der.SEQUENCE, b"".join(kept_bags))))
        if not dropped:
            return None
        return der.encode(der.SEQUENCE, _VERSION_3 + _data_info(der.encode(der.SEQUENCE, b"".join(kept_infos))))
    except (der.DerError, IndexError):
        return None


# MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER DEFAULT 1 }
_MAC_DIGESTS = {  # DER of the digest OID → (hashlib name, the digest's block size in bytes)
    bytes.fromhex("06052b0e03021a"): ("sha1", 64),
    bytes.fromhex("0609608648016503040201"): ("sha256", 64),
    bytes.fromhex("0609608648016503040202"): ("sha384", 128),
    bytes.fromhex("0609608648016503040203"): ("sha512", 128),
}
_EMPTY_PASSWORD = b"\x00\x00"  # "" as a BMPString with its terminator
_ABSENT_PASSWORD = b""  # no password at all: how Key Vault writes its PFX


def mac_problem(pfx: bytes) -> str:
    """Why the PFX's MAC does not vouch for it with an empty or absent password ("" when it does,
    when there is no MAC, or when the shape is one this module does not read: the PFX is then
    opened whole, and the library checks the MAC itself)."""
    try:
        parts = der.single(pfx, der.SEQUENCE).children
        if len(parts) != 3:
            return ""
        content = _data_content(parts[1])
        if content is None:
            return ""
        mac_parts = parts[2].children
        if len(mac_parts) not in (2, 3) or mac_parts[0].tag != der.SEQUENCE or mac_parts[1].tag != der.OCTET_STRING:
            return ""
        digest_info = mac_parts[0].children
        if len(digest_info) != 2 or digest_info[1].tag != der.OCTET_STRING:
            return ""
        algorithm = digest_info[0].children
        digest = _MAC_DIGESTS.get(algorithm[0].encoded) if algorithm else None
        if digest is None:
            return ""
        iterations = 1
        if len(mac_parts) == 3:
            if mac_parts[2].tag != der.INTEGER:
                return ""
            iterations = der.integer(mac_parts[2])
    except (der.DerError, IndexError):
        return ""
    if not 1 <= iterations <= MAX_MAC_ITERATIONS:
        return f"has a MAC with {iterations} iterations: not a certificate's secret this app reads"
    name, block = digest
    salt = mac_parts[1].value
    expected = digest_info[1].value
    for password in (_ABSENT_PASSWORD, _EMPTY_PASSWORD):
        key = _pkcs12_mac_key(name, block, password, salt, iterations)
        if hmac.compare_digest(hmac.new(key, content, name).digest(), expected):
            return ""
    return "is password-protected or corrupt: its MAC does not verify with an empty password"


def _pkcs12_mac_key(name: str, block: int, password: bytes, salt: bytes, iterations: int) -> bytes:
    """RFC 7292 B.2 with ID 3 (MAC key), as long as the digest: the KDF PKCS#12 uses for its MAC."""
    digest = getattr(hashlib, name)  # the named constructor: hashlib.new's lookup doubled the loop's cost
    size = digest().digest_size

    def repeated(data: bytes) -> bytes:
        """Copies of `data` to fill whole blocks, the last copy cut short (empty stays empty)."""
        length = block * -(-len(data) // block)
        return (data * (length // len(data) + 1))[:length] if data else b""

    # One block of output is all a MAC key needs (it is as long as the digest), so the KDF's update of
    # its input between blocks never runs: the key is the digest iterated over D || S || P.
    result: bytes = digest(bytes([3]) * block + repeated(salt) + repeated(password)).digest()
    for _ in range(iterations - 1):
        result = digest(result).digest()
    return result[:size]
