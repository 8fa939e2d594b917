"""Test helpers: a trustme CA chain, key-less PFX uploads, raw HTTP for what SDKs never send."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from emulator import Emulator

# Fast SDK retries: no backoff sleeps, a few attempts.
FAST_RETRY: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.0, "retry_backoff_max": 0.0}


@dataclass(frozen=True)
class Chain:
    """root -> intermediate -> leaf, made by trustme."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    leaf: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate

    @property
    def certificates(self) -> list[x509.Certificate]:
        return [self.leaf, self.intermediate, self.root]

    def pfx(self, password: bytes | None = None) -> bytes:
        encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        return pkcs12.serialize_key_and_certificates(
            b"leaf", self.key, self.leaf, [self.intermediate, self.root], encryption
        )

    def pem(self) -> bytes:
        key = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return key + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.certificates)


def make_chain(common_name: str = "svc.example", *, rsa_keys: bool = False) -> Chain:
    key_type = trustme.KeyType.RSA if rsa_keys else trustme.KeyType.ECDSA
    root = trustme.CA(key_type=key_type)
    intermediate = root.create_child_ca(key_type=key_type)
    leaf = intermediate.issue_cert(common_name, common_name=common_name, key_type=key_type)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return Chain(
        key=key,
        leaf=x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()),
        intermediate=x509.load_pem_x509_certificate(leaf.cert_chain_pems[1].bytes()),
        root=x509.load_pem_x509_certificate(root.cert_pem.bytes()),
    )


def keyless_pfx(*certificates: x509.Certificate) -> bytes:
    """What the product uploads to APIM: CA certificates only, no private key."""
    return pkcs12.serialize_key_and_certificates(None, None, None, list(certificates), serialization.NoEncryption())


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw(
    emu: Emulator,
    method: str,
    path: str,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    base: str | None = None,
) -> RawResponse:
    """One request to the emulator, for what the SDKs never send (missing headers, invalid ids...)."""
    return send(method, (base or emu.url) + path, ca_bundle=emu.ca_bundle_path, token=token, headers=headers, body=body)


def send(
    method: str,
    url: str,
    *,
    ca_bundle: str,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> RawResponse:
    parts = urlsplit(url)
    connection = connect(ca_bundle, parts.port or 0, tls=parts.scheme == "https")
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        all_headers["Content-Type"] = "application/json"
    try:
        connection.request(
            method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=all_headers
        )
        response = connection.getresponse()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def connect(ca_bundle: str, port: int, *, tls: bool = True) -> http.client.HTTPConnection:
    if tls:
        context = ssl.create_default_context(cafile=ca_bundle)
        return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def token_for(emu: Emulator, resource: str, client_id: str | None = None) -> str:
    """A token from the emulator's identity endpoint, asked for the way App Service is asked."""
    query = f"?api-version=2019-08-01&resource={resource}" + (f"&client_id={client_id}" if client_id else "")
    response = raw(emu, "GET", query, headers={"X-IDENTITY-HEADER": emu.identity_header}, base=emu.identity_endpoint)
    assert response.status == 200, response.body
    token: str = response.json()["access_token"]
    return token
