"""End-to-end harness: the Function App's real functions, driven through real binding objects,
against the emulator over HTTPS with the real Azure SDK clients.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import azure.functions as func
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from emulator import Emulator
from emulator.pki import Hierarchy, Issued, pem_secret, pfx_secret
from local.host import cloud_event, event_grid_event, functions, post, queue_message, timer
from shared.backing_secret import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE
from shared.chain import Certificate
from shared.plan import certificate_id_for, encoded_thumbprint
from shared.settings import SETTINGS


def point_app_at(emu: Emulator, patch: pytest.MonkeyPatch) -> None:
    """The process environment of a Function App configured for the emulator (and nothing else)."""
    for setting in SETTINGS:
        patch.delenv(setting.name, raising=False)
    # No telemetry leaves the tests: without a connection string the app exports nothing.
    for name in (
        "AZURE_CLIENT_ID",
        "MSI_ENDPOINT",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    ):
        patch.delenv(name, raising=False)
    for name, value in emu.environ().items():
        patch.setenv(name, value)


def deliver(event: Mapping[str, Any], *, schema: str = "eventgrid") -> None:
    """Event Grid → on_keyvault_event."""
    binding = event_grid_event(event) if schema == "eventgrid" else cloud_event(event)
    functions()["on_keyvault_event"](binding)


def deliver_queued(event: Mapping[str, Any] | bytes, *, base64_encoded: bool = False) -> None:
    """Event Grid → storage queue → on_keyvault_event_queue (private network mode)."""
    functions()["on_keyvault_event_queue"](queue_message(event, base64_encoded=base64_encoded))


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def resync(body: bytes | dict[str, Any] | None = None) -> Answer:
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    response = cast(func.HttpResponse, functions()["resync"](post("resync", raw)))
    return Answer(response.status_code, json.loads(response.get_body()))


def audit() -> None:
    functions()["drift_audit"](timer())


@dataclass
class Backend:
    """A backend certificate in the vault: its CA hierarchy and current leaf."""

    name: str
    pki: Hierarchy
    leaf: Issued

    @property
    def authorities(self) -> list[Certificate]:
        return [Certificate.from_x509(cert) for cert in self.pki.ca_certificates()]

    @property
    def authority_ids(self) -> set[str]:
        return {certificate_id_for(cert) for cert in self.authorities}


def import_version(
    emu: Emulator,
    name: str,
    pki: Hierarchy,
    *,
    content_type: str = PKCS12_CONTENT_TYPE,
    created: datetime | None = None,
    hostname: str = "backend.internal.example",
) -> Backend:
    """A new certificate version in the vault (leaf + full chain + key), as an operator would import it."""
    leaf = pki.issue(hostname)
    cas = pki.ca_certificates()
    if content_type == PKCS12_CONTENT_TYPE:
        emu.vault.import_certificate(name, pfx_secret(leaf.key, leaf.certificate, cas), content_type, created=created)
    else:
        emu.vault.import_certificate(
            name, pem_secret(leaf.key, [leaf.certificate, *cas]), content_type, created=created
        )
    return Backend(name, pki, leaf)


OPENSSL = shutil.which("openssl") or "openssl"


def gateway_accepts(emu: Emulator, gateway: str, leaf: Certificate) -> bool:
    """What OpenSSL's verifier says of a backend presenting `leaf` to `gateway` as the emulator holds it:
    its trusted self-signed entries as anchors, every entry for chain building, no partial chains."""
    anchors: list[bytes] = []
    entries: list[bytes] = []
    for certificate_id, is_trusted in emu.apim.gateway_cas(gateway).items():
        cert = stored_certificate(emu, certificate_id)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        entries.append(pem)
        if is_trusted and _self_signed(cert):
            anchors.append(pem)
    with tempfile.TemporaryDirectory() as folder:
        files = {
            "anchors.pem": anchors,
            "entries.pem": entries,
            "leaf.pem": [leaf.parsed.public_bytes(serialization.Encoding.PEM)],
        }
        for name, pems in files.items():
            Path(folder, name).write_bytes(b"".join(pems))
        untrusted = ["-untrusted", "entries.pem"] if entries else []
        verified = subprocess.run(  # noqa: S603 - a fixed command over files this test wrote
            [
                OPENSSL,
                "verify",
                "-purpose",
                "sslserver",
                "-no-CApath",
                "-no-CAstore",
                "-CAfile",
                "anchors.pem",
                *untrusted,
                "leaf.pem",
            ],
            cwd=folder,
            capture_output=True,
            check=False,
        )
    return verified.returncode == 0


def stored_certificate(emu: Emulator, certificate_id: str) -> x509.Certificate:
    """The certificate APIM holds under `certificate_id`, from the public PFX the app uploaded."""
    stored = emu.apim.certificate(certificate_id)
    if stored.upload_format == "der":  # arranged by a test rather than uploaded by the app
        return x509.load_der_x509_certificate(stored.uploaded_pfx)
    if stored.upload_format == "pem":
        return x509.load_pem_x509_certificate(stored.uploaded_pfx)
    bundle = pkcs12.load_pkcs12(stored.uploaded_pfx, stored.password.encode())
    (cert,) = [item.certificate for item in (bundle.cert, *bundle.additional_certs) if item is not None]
    return cert


def expected_entries(emu: Emulator, ids: Iterable[str], *, intermediates_trusted: bool = False) -> dict[str, bool]:
    """Each id with the isTrusted the app gives it: true for a self-signed root, and for the other CAs
    only with TRUST_INTERMEDIATES=true (they build chains; a gateway anchors at a root)."""
    return {
        certificate_id: intermediates_trusted or _self_signed(stored_certificate(emu, certificate_id))
        for certificate_id in ids
    }


def holds(emu: Emulator, gateway: str, ids: Iterable[str], *, intermediates_trusted: bool = False) -> bool:
    """`gateway` has an entry for every id, trusted wherever the app trusts it."""
    cas = emu.apim.gateway_cas(gateway)
    if not all(certificate_id in cas and certificate_id in emu.apim.certificates for certificate_id in ids):
        return False
    wanted = expected_entries(emu, ids, intermediates_trusted=intermediates_trusted)
    return all(certificate_id in cas and (cas[certificate_id] or not trust) for certificate_id, trust in wanted.items())


def _self_signed(cert: x509.Certificate) -> bool:
    return Certificate.from_x509(cert).is_self_signed


def trusted(emu: Emulator) -> dict[str, dict[str, bool]]:
    """Every gateway's certificate authorities, as APIM holds them."""
    return {gateway.id: emu.apim.gateway_cas(gateway.id) for gateway in emu.apim.gateways}


def assert_no_private_keys(emu: Emulator) -> None:
    """Every PFX the app uploaded (ids it owns) holds certificates only."""
    for stored in emu.apim.certificates.values():
        if encoded_thumbprint(stored.id) is None:
            continue  # arranged by the test itself, as another team would
        assert not stored.had_private_key, stored.id
        if stored.upload_format == "pkcs12":
            assert pkcs12.load_pkcs12(stored.uploaded_pfx, stored.password.encode()).key is None, stored.id


def writes(emu: Emulator) -> int:
    return emu.count(writes=True)


__all__ = ["PEM_CONTENT_TYPE", "PKCS12_CONTENT_TYPE"]
