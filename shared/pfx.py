"""PKCS#12 by its DER structure (RFC 7292), for reading a Key Vault certificate's secret without its key.

Key Vault puts the key in a plain-Data SafeContents (a pkcs8ShroudedKeyBag) and the certificates in a
3DES EncryptedData: `without_key_bags` drops the key bags by structure alone, so the key is never
decrypted, and `mac_problem` checks the integrity the MAC gives (the cut PFX has none) with the
empty and the absent password, as OpenSSL tries them. Bytes in, bytes out; nothing here knows X.509.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

MAX_MAC_ITERATIONS = 1_000_000  # Key Vault uses 2,000; far above any real PFX, stops hostile secrets

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


def without_key_bags(pfx: bytes) -> bytes | None:
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
        start, end = _only(pfx, 0, len(pfx), _SEQUENCE)
        parts = list(_elements(pfx, start, end))
        if len(parts) != 3:
            return ""
        auth = _data_content(pfx, parts[1][2], parts[1][3])
        if auth is None:
            return ""
        mac_parts = list(_elements(pfx, parts[2][2], parts[2][3]))
        if len(mac_parts) not in (2, 3) or mac_parts[0][0] != _SEQUENCE or mac_parts[1][0] != _OCTET_STRING:
            return ""
        digest_info = list(_elements(pfx, mac_parts[0][2], mac_parts[0][3]))
        if len(digest_info) != 2 or digest_info[1][0] != _OCTET_STRING:
            return ""
        algorithm = list(_elements(pfx, digest_info[0][2], digest_info[0][3]))
        digest = _MAC_DIGESTS.get(pfx[algorithm[0][1] : algorithm[0][3]]) if algorithm else None
        if digest is None:
            return ""
        iterations = 1
        if len(mac_parts) == 3:
            if mac_parts[2][0] != _INTEGER:
                return ""
            iterations = int.from_bytes(pfx[mac_parts[2][2] : mac_parts[2][3]], "big", signed=True)
    except (_Unexpected, StopIteration, IndexError):
        return ""
    if not 1 <= iterations <= MAX_MAC_ITERATIONS:
        return f"has a MAC with {iterations} iterations: not a certificate's secret this app reads"
    name, block = digest
    salt = pfx[mac_parts[1][2] : mac_parts[1][3]]
    expected = pfx[digest_info[1][2] : digest_info[1][3]]
    content = pfx[auth[0] : auth[1]]
    for password in (_ABSENT_PASSWORD, _EMPTY_PASSWORD):
        key = _pkcs12_mac_key(name, block, password, salt, iterations)
        if hmac.compare_digest(hmac.new(key, content, name).digest(), expected):
            return ""
    return "is password-protected or corrupt: its MAC does not verify with an empty password"


def _pkcs12_mac_key(name: str, block: int, password: bytes, salt: bytes, iterations: int) -> bytes:
    """RFC 7292 B.2 with ID 3 (MAC key), as long as the digest: the KDF PKCS#12 uses for its MAC."""
    size = hashlib.new(name).digest_size

    def repeated(data: bytes) -> bytes:
        """Copies of `data` to fill whole blocks, the last copy cut short (empty stays empty)."""
        length = block * -(-len(data) // block)
        return (data * (length // len(data) + 1))[:length] if data else b""

    # One block of output is all a MAC key needs (it is as long as the digest), so the KDF's update of
    # its input between blocks never runs: the key is the digest iterated over D || S || P.
    # The named constructor (hashlib.sha1): hashlib.new's lookup per call was about half
    # the cost of these 2,000 digests, the largest part of opening Key Vault's PFX.
    digest = getattr(hashlib, name)  # the names of _MAC_DIGESTS: sha1 and the SHA-2s
    result: bytes = digest(bytes([3]) * block + repeated(salt) + repeated(password)).digest()
    for _ in range(iterations - 1):
        result = digest(result).digest()
    return result[:size]
