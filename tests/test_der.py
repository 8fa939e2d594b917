"""shared/der.py: the product's one DER reader and writer."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from emulator.certs import der_tlv
from emulator.pki import make_certificate
from shared import der


@pytest.mark.parametrize("size", [0, 1, 127, 128, 255, 256, 65_535, 70_000])
def test_encode_and_read_agree_on_every_length_form(size: int) -> None:
    value = bytes(range(256)) * (size // 256) + bytes(size % 256)

    encoded = der.encode(der.OCTET_STRING, value)
    read = der.single(encoded, der.OCTET_STRING)

    assert (read.tag, read.value, read.encoded) == (der.OCTET_STRING, value, encoded)
    assert encoded == der_tlv(der.OCTET_STRING, value)  # the emulator's writer: the same bytes


def test_a_certificate_reads_as_tbs_algorithm_signature_and_re_encodes_byte_for_byte() -> None:
    certificate = make_certificate("der.example", key_type="ec")

    tbs, algorithm, signature = der.single(certificate.der, der.SEQUENCE).children

    assert tbs.encoded == certificate.certificate.tbs_certificate_bytes
    assert (algorithm.tag, signature.tag) == (der.SEQUENCE, 0x03)
    assert der.encode(der.SEQUENCE, b"".join(child.encoded for child in tbs.children)) == tbs.encoded


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x04", "a tag without a length"),
        (b"\x04\x80\x00\x00", "BER's indefinite length"),
        (b"\x1f\x81\x01\x00", "a high tag number"),
        (b"\x04\x85\x00\x00\x00\x00\x01\x00", "a five-byte length"),
        (b"\x04\x82\x01", "a length cut short"),
        (b"\x04\x03ab", "a value shorter than its length"),
        (b"\x04\x01a\x04", "a second element cut short"),
    ],
)
def test_anything_but_definite_length_elements_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(der.DerError):
        der.elements(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [(b"", "nothing"), (b"\x04\x01a\x04\x00", "something after the element"), (b"\x02\x01\x01", "another tag")],
)
def test_single_wants_exactly_one_element_of_its_tag(data: bytes, why: str) -> None:
    assert der.elements(data) or not data  # well-formed: refused for what single() asks alone
    with pytest.raises(der.DerError):
        der.single(data, der.OCTET_STRING)


def test_only_refuses_none_several_or_another_tag() -> None:
    one = der.single(der.encode(der.SEQUENCE, der.encode(der.INTEGER, b"\x05")), der.SEQUENCE)
    two = der.single(der.encode(der.SEQUENCE, der.encode(der.INTEGER, b"\x05") * 2), der.SEQUENCE)

    assert der.integer(one.only(der.INTEGER)) == 5
    with pytest.raises(der.DerError):
        one.only(der.OCTET_STRING)
    with pytest.raises(der.DerError):
        two.only(der.INTEGER)


@pytest.mark.parametrize("dotted", ["1.2.840.113549.1.12.10.1.2", "2.5.4.3", "0.9.2342.19200300.100.1.25", "2.999.3"])
def test_object_identifiers_read_as_cryptography_writes_them(dotted: str) -> None:
    name = x509.Name([x509.NameAttribute(ObjectIdentifier(dotted), "x")]).public_bytes()

    attribute = der.single(name, der.SEQUENCE).only(der.SET).only(der.SEQUENCE)  # RDNSequence → RDN → attribute

    assert der.object_identifier(attribute.child(0)) == dotted


def test_integers_are_twos_complement() -> None:
    assert der.integer(der.element(b"\x02\x01\xff")) == -1
    assert der.integer(der.element(b"\x02\x02\x00\x80")) == 128
    with pytest.raises(der.DerError):
        der.integer(der.element(b"\x04\x01\x01"))
