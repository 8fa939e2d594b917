"""A plain-DER walker for tests that look inside PKCS#7 and PKCS#12 files (definite lengths only)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Node:
    tag: int
    data: bytes  # the whole element
    value: bytes  # its contents

    @property
    def children(self) -> list[Node]:
        return elements(self.value)

    def child(self, index: int) -> Node:
        return self.children[index]


def element(data: bytes, offset: int = 0) -> Node:
    tag, length, start = data[offset], data[offset + 1], offset + 2
    if length & 0x80:
        count = length & 0x7F
        assert 1 <= count <= 4, "definite length"
        length, start = int.from_bytes(data[start : start + count], "big"), start + count
    return Node(tag, data[offset : start + length], data[start : start + length])


def elements(data: bytes) -> list[Node]:
    found, offset = [], 0
    while offset < len(data):
        node = element(data, offset)
        found.append(node)
        offset += len(node.data)
    return found


def oid(node: Node) -> str:
    assert node.tag == 0x06, hex(node.tag)
    first, *rest = node.value
    numbers, value = [first // 40, first % 40], 0
    for byte in rest:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    return ".".join(map(str, numbers))


def integer(node: Node) -> int:
    assert node.tag == 0x02, hex(node.tag)
    return int.from_bytes(node.value, "big", signed=True)
