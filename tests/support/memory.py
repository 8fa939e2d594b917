"""In-memory Key Vault and APIM behind the engine's ports: for ordering, gating and error-classification
tests of the engine alone. No HTTP, no threads: a test holds a call with `hold` and lets it go with
`release`, so the order of events is decided by the test, not by timing.

The end-to-end tests run the same engine through the real SDK clients against the emulator; this is
not a stand-in for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from emulator.pki import Hierarchy, pem_secret
from shared.backing_secret import PEM_CONTENT_TYPE
from shared.chain import Certificate
from shared.plan import certificate_id_for
from shared.ports import (
    ApimBackend,
    ApimCertificate,
    ApimWorkspace,
    AzureCallError,
    BackendTls,
    NotFoundError,
    Secret,
    ServiceFacts,
    StoreEntry,
    StoreWrite,
    VersionInfo,
    normalised_id,
)
from shared.settings import Settings, load_settings

NOW = datetime.now(UTC)


@dataclass
class Calls:
    """What the engine asked, in order, with a way to hold any call until the test releases it."""

    log: list[str] = field(default_factory=list)
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    reached: dict[str, asyncio.Event] = field(default_factory=dict)
    failures: dict[str, Exception] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)  # by service: "kv" (Key Vault), else ARM
    peak: int = 0  # the most calls of any one service in flight at once (each has its own limit)

    def hold(self, call: str) -> None:
        self.held[call] = asyncio.Event()
        self.reached[call] = asyncio.Event()

    async def when_reached(self, call: str) -> None:
        await self.reached[call].wait()

    def release(self, call: str) -> None:
        self.held[call].set()

    def fail(self, call: str, error: Exception) -> None:
        self.failures[call] = error

    async def __call__(self, call: str) -> None:
        service = "kv" if call.startswith("kv ") else "arm"
        self.in_flight[service] = self.in_flight.get(service, 0) + 1
        self.peak = max(self.peak, self.in_flight[service])
        try:
            if call in self.held:
                self.reached[call].set()
                await self.held[call].wait()
            await asyncio.sleep(0)  # a real call yields to the loop at least once
            if call in self.failures:
                raise self.failures.pop(call)
            self.log.append(call)
        finally:
            self.in_flight[service] -= 1

    def index(self, call: str) -> int:
        return self.log.index(call)


@dataclass
class MemoryVault:
    """A Key Vault of certificates, each a list of (version, secret), oldest first."""

    calls: Calls
    certificates: dict[str, list[tuple[VersionInfo, Secret]]] = field(default_factory=dict)
    page_size: int = 25
    deleted_names: set[str] = field(default_factory=set)  # soft-deleted certificates
    forbidden: set[str] = field(default_factory=set)  # names the identity has no role on: 403
    may_read_deleted: bool = True  # False: roles on named certificates only, the deleted list answers 403
    bundles: dict[str, Secret] = field(default_factory=dict)  # plain secrets named in TRUST_BUNDLES

    def add_version(
        self,
        name: str,
        pki: Hierarchy,
        *,
        created: datetime | None = None,
        updated: datetime | None = None,
        enabled: bool = True,
        secret: Secret | None = None,
    ) -> Certificate:
        """A new version: a leaf from `pki`, its chain in a PEM secret. Returns the leaf."""
        issued = pki.issue(f"{name}.example")
        leaf = Certificate.from_x509(issued.certificate)
        number = len(self.certificates.get(name, [])) + 1
        version = VersionInfo(
            version=f"{name}v{number}",
            enabled=enabled,
            created=created or NOW - timedelta(minutes=60 - number),
            expires=leaf.not_after,
            leaf_thumbprint=leaf.sha1_thumbprint,
            not_before=leaf.not_before,
            updated=updated,
        )
        value = secret or Secret(pem_secret(issued.key, [issued.certificate, *pki.ca_certificates()]), PEM_CONTENT_TYPE)
        self.certificates.setdefault(name, []).append((version, value))
        return leaf

    def disable(self, name: str, number: int) -> None:
        version, secret = self.certificates[name][number - 1]
        self.certificates[name][number - 1] = (dataclasses.replace(version, enabled=False), secret)

    def delete(self, name: str) -> None:
        """Soft-deletes the certificate, as Key Vault does: gone from the list, found among the deleted."""
        del self.certificates[name]
        self.deleted_names.add(name)

    async def certificate_names(self) -> AsyncIterator[list[str]]:
        names = sorted(self.certificates)
        for start in range(0, max(len(names), 1), self.page_size):
            await self.calls("kv list")
            yield names[start : start + self.page_size]

    async def versions(self, name: str) -> list[VersionInfo]:
        await self.calls(f"kv versions {name}")
        if name in self.forbidden:
            raise AzureCallError(
                f"list versions of certificate {name}: HTTP 403 Forbidden", status=403, code="Forbidden"
            )
        if name not in self.certificates:
            raise NotFoundError(f"certificate {name} does not exist")
        return [version for version, _ in self.certificates[name]]

    async def deleted(self, name: str) -> bool | None:
        await self.calls(f"kv deleted {name}")
        if not self.may_read_deleted:
            return None
        return name in self.deleted_names

    async def secret(self, name: str, version: str) -> Secret:
        await self.calls(f"kv secret {version}")
        return next(secret for info, secret in self.certificates[name] if info.version == version)

    async def bundle(self, name: str) -> Secret:
        await self.calls(f"kv bundle {name}")
        if name not in self.bundles:
            raise NotFoundError(f"secret {name} does not exist")
        return self.bundles[name]


@dataclass
class MemoryApim:
    """APIM as ARM behaves: names match ignoring case and keep the spelling they were created with;
    the reads list them normalised, as the port promises. Tests arrange entries under any spelling."""

    calls: Calls
    gateways_listed: list[str] = field(default_factory=list)
    held_certificates: dict[str, ApimCertificate] = field(default_factory=dict)
    cas: dict[str, dict[str, bool]] = field(default_factory=dict)
    tier: str = "Developer"
    roots: set[str] = field(default_factory=set)  # ids of the self-signed certificates held
    ca_store: list[StoreEntry] = field(default_factory=list)

    def add_gateways(self, *names: str) -> None:
        for name in names:
            self.gateways_listed.append(name)
            self.cas[name] = {}

    def trust(self, certificates: Iterable[x509.Certificate], *, gateways: Iterable[str] | None = None) -> set[str]:
        """Our copies of `certificates` on `gateways` (all by default), as the app leaves them: the roots
        trusted, the other CAs for chain building."""
        ids = set()
        for cert in map(Certificate.from_x509, certificates):
            certificate_id = certificate_id_for(cert)
            self._hold(certificate_id, cert)
            for gateway in self.cas if gateways is None else gateways:
                self.cas[gateway][certificate_id] = certificate_id in self.roots
            ids.add(certificate_id)
        return ids

    def trusted_ids(self, gateway: str) -> set[str]:
        """The ids a gateway holds as chains need them: the roots trusted, the other CAs in either state."""
        return {cid for cid, trusted in self.cas[gateway].items() if trusted or cid not in self.roots}

    def _hold(self, certificate_id: str, cert: Certificate) -> None:
        self.held_certificates[certificate_id] = ApimCertificate(certificate_id, cert.sha1_thumbprint, cert.subject)
        if cert.is_self_signed:
            self.roots.add(certificate_id)

    async def certificates(self) -> dict[str, ApimCertificate]:
        await self.calls("apim certificates")
        return {
            normalised_id(cid): dataclasses.replace(held, id=normalised_id(held.id))
            for cid, held in self.held_certificates.items()
        }

    async def gateways(self) -> list[str]:
        await self.calls("apim gateways")
        return [normalised_id(name) for name in self.gateways_listed]

    async def service_tier(self) -> str:
        await self.calls("apim service")
        return self.tier

    async def service_facts(self) -> ServiceFacts:
        await self.calls("apim service")
        return ServiceFacts(self.tier, "Succeeded", tuple(self.ca_store))

    async def backends(self) -> list[ApimBackend]:
        await self.calls("apim backends")
        return []

    async def workspaces(self) -> list[ApimWorkspace]:
        await self.calls("apim workspaces")
        return []

    async def workspace_backends(self, workspace: str) -> list[ApimBackend]:
        await self.calls(f"apim workspace backends {workspace}")
        return []

    async def set_backend_tls(self, backend_id: str, tls: BackendTls) -> None:
        await self.calls(f"backend tls {backend_id}")

    async def write_ca_store(self, entries: tuple[StoreWrite, ...]) -> None:
        await self.calls("apim ca store")
        self.ca_store = [
            StoreEntry(
                Certificate.from_der(entry.der).sha1_thumbprint, entry.store, Certificate.from_der(entry.der).subject
            )
            for entry in entries
        ]

    async def gateway_cas(self, gateway: str) -> dict[str, bool]:
        await self.calls(f"apim cas {gateway}")
        return {normalised_id(cid): trusted for cid, trusted in self._cas(gateway).items()}

    async def upload_certificate(self, certificate_id: str, pfx: bytes) -> None:
        await self.calls(f"upload {certificate_id}")
        self._hold(_named(self.held_certificates, certificate_id), Certificate.from_der(_first_certificate(pfx)))

    async def set_gateway_ca(self, gateway: str, certificate_id: str, trusted: bool, *, replace: bool) -> None:
        await self.calls(f"put {gateway} {certificate_id}")
        if _named(self.held_certificates, certificate_id) not in self.held_certificates:
            raise AzureCallError(f"set {certificate_id} on {gateway}: HTTP 404", status=404)
        cas = self._cas(gateway)
        cas[_named(cas, certificate_id)] = trusted

    async def remove_gateway_ca(self, gateway: str, certificate_id: str) -> None:
        await self.calls(f"remove {gateway} {certificate_id}")
        cas = self._cas(gateway)
        cas.pop(_named(cas, certificate_id), None)

    async def delete_certificate(self, certificate_id: str) -> None:
        await self.calls(f"delete {certificate_id}")
        self.held_certificates.pop(_named(self.held_certificates, certificate_id), None)

    def _cas(self, gateway: str) -> dict[str, bool]:
        return self.cas[_named(self.cas, gateway)]


def _named(entries: Iterable[str], name: str) -> str:
    """The key `entries` holds `name` under, ignoring case as ARM does (`name` itself when none)."""
    return next((key for key in entries if normalised_id(key) == normalised_id(name)), name)


def _first_certificate(pfx: bytes) -> bytes:
    bundle = pkcs12.load_pkcs12(pfx, b"")
    assert bundle.key is None, "an upload must never hold a private key"
    (only,) = [*([bundle.cert] if bundle.cert else []), *bundle.additional_certs]
    return only.certificate.public_bytes(Encoding.DER)


def settings(**overrides: str) -> Settings:
    return load_settings(
        {
            "KEYVAULT_URL": "https://memory.vault.azure.net",
            "APIM_RESOURCE_ID": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
            "/providers/Microsoft.ApiManagement/service/memory",
            **overrides,
        }
    )
