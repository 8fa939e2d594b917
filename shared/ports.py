"""The engine's view of Azure: what it asks Key Vault and API Management, the plain values it gets
back, and the errors a call can end in.

Pure: Protocols, frozen values and exceptions, nothing from ``azure.*``. The adapters
(``shared.keyvault``, ``shared.apim``) implement the ports over the Azure SDK and translate its
types and exceptions into these at the edge; the tests implement them in memory.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


def normalised_id(name: str) -> str:
    """An ARM resource name as every `ApimPort` returns it: lower case.

    ARM compares resource names ignoring case, and so do APIM's certificate ids, gateway names
    and gateway certificate authority ids: ``MyRoot`` and ``myroot`` are one certificate, and a
    gateway's entry may be listed spelled otherwise than the certificate it names. The adapters
    pass every such name through this once, where it enters, so the core compares plain strings.
    The ids the app writes are already in this form (``plan.Ownership.certificate_id``).
    """
    return name.lower()


class AzureCallError(Exception):
    """An Azure call failed after the SDK's own retries; the message names the call and why.

    `status` is the HTTP status when the service answered, None when it did not (a transport failure).
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotFoundError(AzureCallError):
    """The thing asked for does not exist (HTTP 404)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, status=404, code=code)


class Throttled(AzureCallError):
    """Azure kept answering HTTP 429 until the run's time budget ran out: the request changed nothing,
    and what it was for is left to the next run."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=429)


class CredentialUnavailableError(AzureCallError):
    """No Azure credential could be had: no managed identity and no Azure CLI login."""


@dataclass(frozen=True)
class VersionInfo:
    """What Key Vault's version list says of one certificate version."""

    version: str
    enabled: bool
    created: datetime | None
    expires: datetime | None
    leaf_thumbprint: str | None  # upper-case SHA-1 hex of the leaf (Key Vault's x5t)
    not_before: datetime | None = None
    # The last change of the version's attributes. Key Vault keeps no "enabled at": this is the
    # latest moment it can have been enabled (a later change of a tag or date only moves it later).
    updated: datetime | None = None


@dataclass(frozen=True)
class Secret:
    """A certificate's backing secret: the PFX or PEM, private key included, so never logged or kept."""

    value: str = field(repr=False)
    content_type: str | None


@dataclass(frozen=True)
class ApimCertificate:
    """An APIM certificate as its list shows it: APIM never returns the certificate itself."""

    id: str  # normalised_id of its name
    thumbprint: str  # upper-case SHA-1 hex
    subject: str = ""
    expires: datetime | None = None


@dataclass(frozen=True)
class StoreEntry:
    """One entry of a classic service's CA store as ARM lists it: never the certificate itself."""

    thumbprint: str  # upper-case SHA-1 hex
    store: str  # "Root" (an anchor of the managed gateway) or "CertificateAuthority", as ARM spells them
    subject: str = ""
    expires: datetime | None = None


@dataclass(frozen=True)
class StoreWrite:
    """One entry of a CA store as the app writes it: a public certificate (DER), never a key."""

    der: bytes = field(repr=False)
    store: str


@dataclass(frozen=True)
class ServiceFacts:
    """What the service itself says: its tier, whether an update is running, its CA store."""

    sku: str  # ARM's sku.name: Developer, Basic, ..., BasicV2, Consumption
    provisioning_state: str = "Succeeded"
    ca_store: tuple[StoreEntry, ...] = ()


@dataclass(frozen=True)
class BackendTls:
    """A backend's pins (v2 tiers): the presented chain must match a thumbprint or a name + issuer."""

    x509_names: tuple[tuple[str, str | None], ...] = ()  # (name, issuerCertificateThumbprint)
    thumbprints: tuple[str, ...] = ()  # serverCertificateThumbprints


@dataclass(frozen=True)
class ApimBackend:
    """One backend of the service as listed: its URL and TLS pins (api-version 2025-03-01-preview)."""

    id: str
    url: str
    tls: BackendTls


@dataclass(frozen=True)
class ApimWorkspace:
    """One workspace of the service (api-version 2024-05-01) and the workspace gateways its link names:
    ``Microsoft.ApiManagement/gateways`` resources, which take no CA certificates."""

    id: str
    display_name: str = ""
    gateways: tuple[str, ...] = ()  # the gateways' names, from the service's workspaceLinks


GatewayCas = Mapping[str, bool]  # normalised certificate id → isTrusted, as one gateway's list shows them


class VaultPort(Protocol):
    """The reads of one Key Vault."""

    def certificate_names(self) -> AsyncIterator[list[str]]:
        """The names of every certificate, one page at a time."""
        ...

    async def versions(self, name: str) -> list[VersionInfo]:
        """Every version of a certificate; `NotFoundError` when the certificate does not exist."""
        ...

    async def secret(self, name: str, version: str) -> Secret: ...

    async def deleted(self, name: str) -> bool | None:
        """Whether Key Vault holds the certificate as deleted (soft-deleted, recoverable): True it
        does, False it does not, None when the identity may not ask (HTTP 403)."""
        ...

    async def bundle(self, name: str) -> Secret:
        """The current version of a plain secret named in TRUST_BUNDLES; `NotFoundError` when the
        vault holds no such secret (or only as deleted)."""
        ...


class ApimPort(Protocol):
    """The certificates and gateway certificate authorities of one API Management service.

    Certificate ids, gateway names and gateway certificate authority ids come back normalised
    (`normalised_id`); the writes take them in that form, as ARM matches names ignoring case.
    """

    async def certificates(self) -> dict[str, ApimCertificate]:
        """Every certificate, by its normalised id."""
        ...

    async def gateways(self) -> list[str]:
        """The names (normalised) of the service's gateways."""
        ...

    async def service_tier(self) -> str:
        """The service's pricing tier (ARM's ``sku.name``: Developer, Premium, BasicV2, ...)."""
        ...

    async def service_facts(self) -> ServiceFacts:
        """The service's tier, provisioning state and CA store (one GET)."""
        ...

    async def write_ca_store(self, entries: tuple[StoreWrite, ...]) -> None:
        """Start replacing the CA store with `entries` (a PATCH of ``properties.certificates`` alone).

        The update runs on for many minutes after the call returns; it is not awaited."""
        ...

    async def backends(self) -> list[ApimBackend]:
        """The service's backends with their TLS pins (a preview api-version: BACKEND_TLS=manage only)."""
        ...

    async def set_backend_tls(self, backend_id: str, tls: BackendTls) -> None:
        """Replace the backend's TLS pins under its current ETag; everything else is sent back as found."""
        ...

    async def workspaces(self) -> list[ApimWorkspace]:
        """The service's workspaces and their workspace gateways (read only on tiers that offer workspaces)."""
        ...

    async def workspace_backends(self, workspace: str) -> list[ApimBackend]:
        """The backends inside one workspace: reported, never changed."""
        ...

    async def gateway_cas(self, gateway: str) -> dict[str, bool]:
        """A gateway's certificate authorities: normalised certificate id → isTrusted."""
        ...

    async def upload_certificate(self, certificate_id: str, pfx: bytes) -> None: ...

    async def set_gateway_ca(self, gateway: str, certificate_id: str, trusted: bool, *, replace: bool) -> None:
        """Create the entry, or (`replace`) update it under its current ETag so a concurrent change fails."""
        ...

    async def remove_gateway_ca(self, gateway: str, certificate_id: str) -> None: ...

    async def delete_certificate(self, certificate_id: str) -> None: ...


class Work(enum.StrEnum):
    """What a run's progress counts."""

    KEYVAULT_READS = "Key Vault reads"  # version lists and secrets
    WRITES = "writes"  # APIM uploads, gateway CA puts, removals, deletions


class Progress(Protocol):
    """Told, as a run goes, how much work it has found to do and how much is done.

    `planned` grows as the run discovers work (a certificate's versions tell how many secrets to
    read); `done` follows each call that finished, failed or not. The engine calls these only;
    what shows them (the CLI's progress bar) is an adapter.
    """

    def planned(self, work: Work, count: int = 1) -> None: ...

    def done(self, work: Work, count: int = 1) -> None: ...


class NoProgress:
    """Progress nobody watches: the functions, the tests."""

    def planned(self, work: Work, count: int = 1) -> None:
        pass

    def done(self, work: Work, count: int = 1) -> None:
        pass
