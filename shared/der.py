"""DER, the encoding of X.509 and PKCS#12 (X.690): elements read and written, definite lengths only.

The product's one reader and writer of DER: the PKCS#12 cut (`pfx.py`) and the tests that look
inside certificates and PFX files use it. BER's indefinite lengths and high tag numbers (nothing in
PKCS#12 or X.509 uses them) are refused, as is a length that runs past its data: `DerError`.
Bytes in, bytes out; no crypto.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE, SET, INTEGER, OCTET_STRING, OBJECT_IDENTIFIER = 0x30, 0x31, 0x02, 0x04, 0x06


class DerError(ValueError):
    """Not DER with definite lengths: truncated, indefinite, or of a tag form this reader refuses."""


@dataclass(frozen=True)
class Element:
    """One DER element: its tag, its whole encoding (tag, length, value) and its value."""

    tag: int
    encoded: bytes
    value: bytes

    @property
    def children(self) -> list[Element]:
        """The elements of a constructed element's value, in order."""
        return elements(self.value)

    def child(self, index: int) -> Element:
        return self.children[index]

    def only(self, tag: int) -> Element:
        """The one element this element's value holds, which must have `tag`."""
        found = self.children
        if len(found) != 1 or found[0].tag != tag:
            raise DerError(f"expected one element of tag {tag:#04x}")
        return found[0]


def element(data: bytes, offset: int = 0) -> Element:
    """The element that starts at `offset` (what follows it is not looked at)."""
    if offset + 2 > len(data):
        raise DerError("truncated element")
    tag, length, start = data[offset], data[offset + 1], offset + 2
    if tag & 0x1F == 0x1F:
        raise DerError("high tag number")
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or start + count > len(data):
            raise DerError("indefinite or oversized length")  # count 0: BER's indefinite length
        length, start = int.from_bytes(data[start : start + count], "big"), start + count
    if start + length > len(data):
        raise DerError("length runs past the data")
    return Element(tag, data[offset : start + length], data[start : start + length])


def single(data: bytes, tag: int) -> Element:
    """`data` as exactly one element of `tag`, nothing before or after it."""
    found = element(data)
    if found.tag != tag or len(found.encoded) != len(data):
        raise DerError(f"expected exactly one element of tag {tag:#04x}")
    return found


def elements(data: bytes) -> list[Element]:
    """Every element of `data`, back to back."""
    found: list[Element] = []
    offset = 0
    while offset < len(data):
        item = element(data, offset)
        found.append(item)
        offset += len(item.encoded)
    return found


def encode(tag: int, value: bytes) -> bytes:
    """One element: tag, definite length (short form below 128), value."""
    size = len(value)
    if size < 0x80:
        return bytes((tag, size)) + value
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + value


def object_identifier(item: Element) -> str:
    """An OBJECT IDENTIFIER in dotted form."""
    if item.tag != OBJECT_IDENTIFIER or not item.value:
        raise DerError(f"not an OBJECT IDENTIFIER: tag {item.tag:#04x}")
    numbers: list[int] = []
    value = 0
    for byte in item.value:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    if item.value[-1] & 0x80:
        raise DerError("OBJECT IDENTIFIER ends inside a number")
    arc = min(numbers[0] // 40, 2)  # the first number holds the first two arcs
    return ".".join(map(str, [arc, numbers[0] - 40 * arc, *numbers[1:]]))


def integer(item: Element) -> int:
    """An INTEGER's value (two's complement)."""
    if item.tag != INTEGER:
        raise DerError(f"not an INTEGER: tag {item.tag:#04x}")
    return int.from_bytes(item.value, "big", signed=True)
