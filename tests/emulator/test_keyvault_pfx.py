"""The emulator serves certificate secrets as Key Vault does: a PFX of Key Vault's exact layout."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from emulator import Emulator
from emulator.certs import keyvault_pfx, pkcs12_kdf
from emulator.keyvault import CertificateVersion
from emulator.pki import Hierarchy, KeyType, pfx_secret
from shared.der import Element, element, integer
from shared.der import object_identifier as oid

PBE_3DES = "1.2.840.113549.1.12.1.3"
DATA, ENCRYPTED_DATA = "1.2.840.113549.1.7.1", "1.2.840.113549.1.7.6"


def pbe(algorithm: Element) -> tuple[str, int, int]:
    """(algorithm, salt length, iterations) of a PKCS#12 PBE AlgorithmIdentifier."""
    params = algorithm.child(1)
    return oid(algorithm.child(0)), len(params.child(0).value), integer(params.child(1))


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_the_layout_is_key_vaults(key_type: KeyType) -> None:
    pki = Hierarchy(intermediates=1, key_type=key_type)
    leaf = pki.issue("backend.example")
    data = keyvault_pfx(leaf.key, leaf.certificate, pki.ca_certificates())

    pfx = element(data)
    version, auth_info, mac_data = pfx.children
    assert integer(version) == 3
    assert oid(auth_info.child(0)) == DATA
    auth_safe = auth_info.child(1).child(0).value
    key_info, certificates_info = element(auth_safe).children
    # 1: a plain Data holding one pkcs8ShroudedKeyBag, 3DES, 2,000 iterations, Key Vault's attributes
    assert oid(key_info.child(0)) == DATA
    (key_bag,) = element(key_info.child(1).child(0).value).children
    assert oid(key_bag.child(0)) == "1.2.840.113549.1.12.10.1.2"
    assert pbe(key_bag.child(1).child(0).child(0)) == (PBE_3DES, 8, 2000)
    attributes = {oid(attribute.child(0)): attribute.child(1).child(0) for attribute in key_bag.child(2).children}
    assert attributes["1.2.840.113549.1.9.21"].value == bytes.fromhex("01000000")  # localKeyID
    assert attributes["1.2.840.113549.1.9.20"].tag == 0x1E  # friendlyName: a BMPString (a GUID)
    assert len(attributes["1.2.840.113549.1.9.20"].value.decode("utf-16-be")) == 36
    if key_type == "rsa":
        assert attributes["1.3.6.1.4.1.311.17.1"].value.decode("utf-16-be") == (
            "Microsoft Enhanced RSA and AES Cryptographic Provider"
        )
    # 2: an EncryptedData (version 0) of the certificate bags, 3DES, 2,000 iterations
    assert oid(certificates_info.child(0)) == ENCRYPTED_DATA
    encrypted = certificates_info.child(1).child(0)
    assert integer(encrypted.child(0)) == 0
    content = encrypted.child(1)
    assert oid(content.child(0)) == DATA
    assert pbe(content.child(1)) == (PBE_3DES, 8, 2000)
    assert content.child(2).tag == 0x80  # [0] IMPLICIT, primitive
    # 3: a SHA-1 HMAC (DigestInfo without NULL parameters), 20-byte salt, 2,000 iterations, and the
    # password is absent (zero-length), not the two-zero-byte BMPString "".
    digest_info, salt, iterations = mac_data.children
    assert [oid(node) for node in digest_info.child(0).children] == ["1.3.14.3.2.26"]
    assert (len(digest_info.child(1).value), len(salt.value), integer(iterations)) == (20, 20, 2000)
    for password, verifies in ((b"", True), (b"\0\0", False)):
        key = pkcs12_kdf(password, salt.value, purpose=3, iterations=2000, size=20)
        assert (hmac.new(key, auth_safe, hashlib.sha1).digest() == digest_info.child(1).value) is verifies
    # OpenSSL (through cryptography) verifies the MAC, decrypts both parts and pairs key and leaf.
    bundle = pkcs12.load_pkcs12(data, b"")
    assert bundle.cert is not None
    assert bundle.cert.certificate == leaf.certificate
    assert [item.certificate for item in bundle.additional_certs] == pki.ca_certificates()
    assert bundle.key is not None
    assert bundle.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == leaf.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_openssl_describes_it_as_it_describes_key_vaults(tmp_path: Path) -> None:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")
    path = tmp_path / "secret.pfx"
    path.write_bytes(keyvault_pfx(leaf.key, leaf.certificate, pki.ca_certificates()))

    info = subprocess.run(  # noqa: S603 - a fixed command on a file this test wrote
        ["openssl", "pkcs12", "-info", "-in", str(path), "-passin", "pass:", "-noout"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )

    assert info.stderr.splitlines() + info.stdout.splitlines() == [
        "MAC: sha1, Iteration 2000",
        "MAC length: 20, salt length: 20",
        "PKCS7 Data",
        "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2000",
        "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2000",
        "Certificate bag",
        "Certificate bag",
        "Certificate bag",
    ]


def test_the_vault_serves_its_secrets_in_that_layout(emu: Emulator) -> None:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("backend.example")
    version = emu.vault.import_certificate("orders", pfx_secret(leaf.key, leaf.certificate, pki.ca_certificates()))

    stored = emu.vault.secret("orders", version)
    assert isinstance(stored, CertificateVersion)
    served = base64.b64decode(stored.secret_value)

    key_info = element(element(served).child(1).child(1).child(0).value).child(0)
    (key_bag,) = element(key_info.child(1).child(0).value).children
    assert pbe(key_bag.child(1).child(0).child(0)) == (PBE_3DES, 8, 2000)
    assert pkcs12.load_pkcs12(served, b"").cert is not None
