"""An emulated API Management service: certificates, self-hosted gateways and their certificate authorities.

Every write gives the entity a new ETag (base64 of a per-service counter, like ``AAAAAADmodU=``).
Entity ids are case-insensitive and case-preserving, as ARM names are.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from . import certs
from .certs import CertificateFormatError, CertificateMaterial

MANAGED_GATEWAY: Final = "managed"
CERTIFICATE_ID_PATTERN: Final = re.compile(r"^[^*#&+:<>?]{1,80}$")

# Resolves a Key Vault secret identifier to the certificate it holds (None: not this emulator's vault).
KeyVaultResolver = Callable[[str], CertificateMaterial | None]


class ApimError(Exception):
    """A request APIM refuses; rendered as the ARM error envelope."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target


@dataclass(frozen=True)
class StoredCertificate:
    id: str
    subject: str
    thumbprint: str  # upper-case hex SHA-1, as APIM reports it
    expiration: datetime
    uploaded_pfx: bytes  # the raw decoded `data` as uploaded (a PFX normally; DER/PEM accepted); b"" for keyVault
    upload_format: str  # "pkcs12" | "der" | "pem" | "keyVault"
    password: str
    had_private_key: bool  # whether the upload contained a private key
    etag: str
    key_vault: Mapping[str, Any] | None = None  # the keyVault property of Key Vault-referenced certificates


@dataclass(frozen=True)
class Gateway:
    id: str
    description: str
    location: str
    etag: str


@dataclass(frozen=True)
class GatewayCertificateAuthority:
    certificate_id: str
    is_trusted: bool
    etag: str


@dataclass(frozen=True)
class CaStoreEntry:
    """One entry of the service's CA store (``properties.certificates[]``)."""

    der: bytes
    store_name: str  # "Root" | "CertificateAuthority"
    subject: str
    thumbprint: str
    expiry: datetime


CA_STORE_LIMIT: Final = 10  # the most entries the service's CA store takes
CA_STORE_NAMES: Final = ("Root", "CertificateAuthority")


@dataclass(frozen=True)
class Backend:
    """A backend as ARM stores it: its contract's ``properties`` (url, protocol, and the nested
    ``properties`` that hold ``tls`` at 2025-03-01-preview) and its ETag."""

    id: str
    properties: Mapping[str, Any]
    etag: str


@dataclass
class Workspace:
    """A workspace of the service, the workspace gateways its link names (``Microsoft.ApiManagement/gateways``
    resources, outside the service), and its own backends."""

    id: str
    display_name: str
    gateways: tuple[str, ...] = ()
    backends: dict[str, Backend] = field(default_factory=dict)  # by lower-case id


@dataclass
class _GatewayState:
    gateway: Gateway
    authorities: dict[str, GatewayCertificateAuthority] = field(default_factory=dict)  # by lower-case id


def parse_upload(data: bytes, password: str) -> tuple[CertificateMaterial, str]:
    """What APIM accepts as certificate ``data``: a PFX (with ``password``), or a DER/PEM certificate."""
    try:
        return certs.load_pkcs12(data, password), "pkcs12"
    except CertificateFormatError as pfx_error:
        if password:
            raise CertificateFormatError(f"could not open the PFX with the given password ({pfx_error})") from None
    try:
        return certs.load_der_certificate(data), "der"
    except CertificateFormatError:
        pass
    if b"-----BEGIN" in data:
        return certs.load_pem(data), "pem"
    raise CertificateFormatError("data is neither a PFX (with the given password) nor a DER or PEM certificate")


class ApimService:
    """Thread-safe; the Python API tests use to arrange and inspect one APIM instance."""

    def __init__(self, subscription_id: str, resource_group: str, name: str, *, location: str = "West Europe") -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.name = name
        self.location = location
        self.sku = "Developer"  # ARM's sku.name; a test sets e.g. "BasicV2", a tier without self-hosted gateways
        self.key_vault_resolver: KeyVaultResolver = lambda _identifier: None
        self._lock = threading.RLock()
        self._etag_counter = 0x00E6A1D0  # any start; only changes matter
        self._certificates: dict[str, StoredCertificate] = {}
        self._gateways: dict[str, _GatewayState] = {}
        self._include_managed = False
        self.etag = self._next_etag()
        # The service itself: its CA store, and an update that runs until a test says it is done
        # (real ones take 15 minutes or more; nothing here waits on a clock).
        self.ca_store: list[CaStoreEntry] = []
        self.provisioning_state = "Succeeded"
        self._pending: dict[str, Any] | None = None
        self.disable_gateway = False
        self.developer_portal_status = "Enabled"
        self.updates: list[dict[str, Any]] = []  # every accepted update's properties, as sent
        self._backends: dict[str, Backend] = {}
        self._workspaces: dict[str, Workspace] = {}

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.name}"
        )

    def clear(self) -> None:
        """Forgets every certificate and gateway: a fresh service for the next test."""
        with self._lock:
            self._certificates.clear()
            self._gateways.clear()
            self._include_managed = False
            self.sku = "Developer"
            self.ca_store = []
            self._backends.clear()
            self._workspaces.clear()
            self.provisioning_state = "Succeeded"
            self._pending = None
            self.updates = []

    # -- backends ----------------------------------------------------------------------------------

    def add_backend(self, backend_id: str, url: str, *, properties: Mapping[str, Any] | None = None) -> Backend:
        """Arranges a backend as its owner created it (`properties`: the nested block, tls included)."""
        with self._lock:
            contract = {"url": url, "protocol": "http", "properties": dict(properties or {})}
            backend = Backend(backend_id, contract, self._next_etag())
            self._backends[backend_id.lower()] = backend
            return backend

    @property
    def backends(self) -> list[Backend]:
        with self._lock:
            return sorted(self._backends.values(), key=lambda b: b.id.lower())

    def backend(self, backend_id: str) -> Backend:
        with self._lock:
            found = self._backends.get(backend_id.lower())
            if found is None:
                raise ApimError(404, "ResourceNotFound", "Backend not found.")
            return found

    def patch_backend(self, backend_id: str, properties: Mapping[str, Any], *, if_match: str) -> Backend:
        """Backend_Update (If-Match required): the given top-level properties replace those found."""
        with self._lock:
            existing = self.backend(backend_id)
            _check_if_match(existing.etag, if_match)
            updated = Backend(existing.id, {**existing.properties, **properties}, self._next_etag())
            self._backends[backend_id.lower()] = updated
            return updated

    # -- workspaces ----------------------------------------------------------------------------------

    def add_workspace(self, workspace_id: str, *, display_name: str = "", gateways: tuple[str, ...] = ()) -> Workspace:
        """Arranges a workspace, linked to the named workspace gateways (none: no workspaceLink is listed)."""
        with self._lock:
            workspace = Workspace(workspace_id, display_name or workspace_id, tuple(gateways))
            self._workspaces[workspace_id.lower()] = workspace
            return workspace

    def add_workspace_backend(self, workspace_id: str, backend_id: str, url: str) -> Backend:
        with self._lock:
            workspace = self.workspace(workspace_id)
            contract = {"url": url, "protocol": "http", "properties": {}}
            backend = Backend(backend_id, contract, self._next_etag())
            workspace.backends[backend_id.lower()] = backend
            return backend

    @property
    def workspaces(self) -> list[Workspace]:
        with self._lock:
            return sorted(self._workspaces.values(), key=lambda w: w.id.lower())

    def workspace(self, workspace_id: str) -> Workspace:
        with self._lock:
            found = self._workspaces.get(workspace_id.lower())
            if found is None:
                raise ApimError(404, "ResourceNotFound", "Workspace not found.")
            return found

    # -- the service's update (CA store) ------------------------------------------------------------

    def start_update(self, properties: Mapping[str, Any]) -> None:
        """A PATCH of the service: refused while another update runs; applied by `finish_update`."""
        with self._lock:
            if self.provisioning_state != "Succeeded" or self._pending is not None:
                raise ApimError(
                    409,
                    "Conflict",
                    f"The API Management service {self.name} is transitioning (provisioningState "
                    f"{self.provisioning_state}): another operation is in progress. Retry once it has finished.",
                )
            store = None
            if "certificates" in properties:
                store = self._parse_store(properties["certificates"])
            self.updates.append(dict(properties))
            self._pending = {**properties, **({"certificates": store} if store is not None else {})}
            self.provisioning_state = "Updating"

    def finish_update(self) -> None:
        """The running update completes (what 15 minutes or more of Azure's work does)."""
        with self._lock:
            pending, self._pending = self._pending, None
            self.provisioning_state = "Succeeded"
            if pending is None:
                return
            if "certificates" in pending:
                self.ca_store = pending["certificates"]
            if "disableGateway" in pending:
                self.disable_gateway = bool(pending["disableGateway"])
            if "developerPortalStatus" in pending:
                self.developer_portal_status = str(pending["developerPortalStatus"])
            self.etag = self._next_etag()

    def add_store_entry(self, der: bytes, store_name: str) -> None:
        """Arranges a CA store entry as if written by someone else (its bytes stay unknown to readers)."""
        with self._lock:
            self.ca_store = [
                *self.ca_store,
                *self._parse_store([{"encodedCertificate": base64.b64encode(der).decode(), "storeName": store_name}]),
            ]

    def _parse_store(self, certificates: object) -> list[CaStoreEntry]:
        if not isinstance(certificates, list):
            raise ApimError(400, "ValidationError", "properties.certificates must be an array.", "certificates")
        if len(certificates) > CA_STORE_LIMIT:
            raise ApimError(
                400,
                "ValidationError",
                f"At most {CA_STORE_LIMIT} certificates can be added to the service; {len(certificates)} were given.",
                "certificates",
            )
        entries = []
        for item in certificates:
            store_name = item.get("storeName") if isinstance(item, dict) else None
            encoded = item.get("encodedCertificate") if isinstance(item, dict) else None
            if store_name not in CA_STORE_NAMES:
                raise ApimError(400, "ValidationError", "storeName must be Root or CertificateAuthority.", "storeName")
            if not isinstance(encoded, str):
                # An entry sent back without its bytes (as a GET shows it) cannot be stored again.
                raise ApimError(
                    400, "ValidationError", "encodedCertificate is required for every certificate.", "certificates"
                )
            try:
                material, _ = parse_upload(base64.b64decode(encoded), str(item.get("certificatePassword") or ""))
            except (CertificateFormatError, ValueError) as error:
                raise ApimError(
                    400, "ValidationError", f"Failed to read a certificate: {error}.", "certificates"
                ) from None
            leaf = material.leaf
            entries.append(
                CaStoreEntry(
                    der=certs.der(leaf),
                    store_name=store_name,
                    subject=certs.subject_string(leaf.subject),
                    thumbprint=certs.sha1_thumbprint(leaf),
                    expiry=certs.not_after(leaf),
                )
            )
        return entries

    # -- gateways --------------------------------------------------------------------------------

    @property
    def include_managed_gateway(self) -> bool:
        """Real APIM lists only self-hosted gateways; set True to make 'managed' appear too."""
        with self._lock:
            return self._include_managed

    @include_managed_gateway.setter
    def include_managed_gateway(self, value: bool) -> None:
        with self._lock:
            self._include_managed = value
            if value and MANAGED_GATEWAY not in self._gateways:
                self._gateways[MANAGED_GATEWAY] = _GatewayState(
                    Gateway(MANAGED_GATEWAY, "", self.location, self._next_etag())
                )
            elif not value:
                self._gateways.pop(MANAGED_GATEWAY, None)

    def add_gateway(self, gateway_id: str, *, description: str = "", location: str = "emulated location") -> Gateway:
        if gateway_id.lower() == MANAGED_GATEWAY:
            raise ValueError("'managed' is APIM's own gateway; set include_managed_gateway instead")
        with self._lock:
            if gateway_id.lower() in self._gateways:
                raise ValueError(f"gateway {gateway_id!r} exists")
            gateway = Gateway(gateway_id, description, location, self._next_etag())
            self._gateways[gateway_id.lower()] = _GatewayState(gateway)
            return gateway

    def remove_gateway(self, gateway_id: str) -> None:
        with self._lock:
            del self._gateways[gateway_id.lower()]

    @property
    def gateways(self) -> list[Gateway]:
        with self._lock:
            return sorted((s.gateway for s in self._gateways.values()), key=lambda g: g.id.lower())

    def gateway(self, gateway_id: str) -> Gateway:
        with self._lock:
            return self._gateway_state(gateway_id).gateway

    # -- certificates ----------------------------------------------------------------------------

    @property
    def certificates(self) -> dict[str, StoredCertificate]:
        with self._lock:
            return {c.id: c for c in self._certificates.values()}

    def certificate(self, certificate_id: str) -> StoredCertificate:
        with self._lock:
            stored = self._certificates.get(certificate_id.lower())
            if stored is None:
                raise ApimError(404, "ResourceNotFound", "Certificate not found.")
            return stored

    def add_certificate(self, certificate_id: str, data: bytes, password: str = "") -> StoredCertificate:
        """Arranges a certificate as if PUT by someone else (e.g. a foreign one the product must leave alone)."""
        material, upload_format = parse_upload(data, password)
        return self.put_certificate(certificate_id, material, upload_format, data, password, if_match=None)[0]

    def put_certificate(
        self,
        certificate_id: str,
        material: CertificateMaterial,
        upload_format: str,
        uploaded: bytes,
        password: str,
        *,
        if_match: str | None,
        key_vault: Mapping[str, Any] | None = None,
    ) -> tuple[StoredCertificate, bool]:
        """Creates or replaces; returns the entity and whether it was created."""
        check_certificate_id(certificate_id)
        leaf = material.leaf
        with self._lock:
            existing = self._certificates.get(certificate_id.lower())
            _check_if_match(existing.etag if existing else None, if_match)
            stored = StoredCertificate(
                id=existing.id if existing else certificate_id,
                subject=certs.subject_string(leaf.subject),
                thumbprint=certs.sha1_thumbprint(leaf),
                expiration=certs.not_after(leaf),
                uploaded_pfx=uploaded,
                upload_format=upload_format,
                password=password,
                had_private_key=material.key is not None,
                etag=self._next_etag(),
                key_vault=key_vault,
            )
            self._certificates[certificate_id.lower()] = stored
            return stored, existing is None

    def delete_certificate(self, certificate_id: str, *, if_match: str) -> bool:
        """Returns False when there was nothing to delete."""
        with self._lock:
            existing = self._certificates.get(certificate_id.lower())
            if existing is None:
                return False
            _check_if_match(existing.etag, if_match)
            users = sorted(
                state.gateway.id for state in self._gateways.values() if certificate_id.lower() in state.authorities
            )
            if users:
                # APIM refuses to delete an entity others depend on with 400 ValidationError (as for a
                # product with subscriptions: Azure/apiops#94, pulumi/pulumi-azure-native#846).
                raise ApimError(
                    400,
                    "ValidationError",
                    f"Certificate '{existing.id}' cannot be deleted: it is a certificate authority of gateway(s) "
                    f"{', '.join(users)}. Delete those gateway certificate authorities first.",
                )
            del self._certificates[certificate_id.lower()]
            return True

    # -- gateway certificate authorities ---------------------------------------------------------

    def gateway_cas(self, gateway_id: str) -> dict[str, bool]:
        """certificate id -> isTrusted."""
        return {ca.certificate_id: ca.is_trusted for ca in self.gateway_ca_entities(gateway_id)}

    def gateway_ca_entities(self, gateway_id: str) -> list[GatewayCertificateAuthority]:
        with self._lock:
            state = self._gateway_state(gateway_id)
            return sorted(state.authorities.values(), key=lambda ca: ca.certificate_id.lower())

    def gateway_ca(self, gateway_id: str, certificate_id: str) -> GatewayCertificateAuthority:
        with self._lock:
            ca = self._gateway_state(gateway_id).authorities.get(certificate_id.lower())
            if ca is None:
                raise ApimError(404, "ResourceNotFound", "Gateway certificate authority not found.")
            return ca

    def set_gateway_ca(self, gateway_id: str, certificate_id: str, trusted: bool = True) -> GatewayCertificateAuthority:
        return self.put_gateway_ca(gateway_id, certificate_id, trusted, if_match=None)[0]

    def put_gateway_ca(
        self, gateway_id: str, certificate_id: str, is_trusted: bool, *, if_match: str | None
    ) -> tuple[GatewayCertificateAuthority, bool]:
        with self._lock:
            state = self._gateway_state(gateway_id)
            if state.gateway.id == MANAGED_GATEWAY:
                raise ApimError(
                    400, "ValidationError", "Certificate authorities can be configured on self-hosted gateways only."
                )
            self.certificate(certificate_id)  # 404 when APIM holds no such certificate
            existing = state.authorities.get(certificate_id.lower())
            _check_if_match(existing.etag if existing else None, if_match)
            # The entry is a resource of its own: ARM keeps the name its creating PUT spelled, which need
            # not be its certificate's spelling (names match ignoring case).
            name = existing.certificate_id if existing else certificate_id
            ca = GatewayCertificateAuthority(name, is_trusted, self._next_etag())
            state.authorities[certificate_id.lower()] = ca
            return ca, existing is None

    def delete_gateway_ca(self, gateway_id: str, certificate_id: str, *, if_match: str) -> bool:
        with self._lock:
            state = self._gateway_state(gateway_id)
            existing = state.authorities.get(certificate_id.lower())
            if existing is None:
                return False
            _check_if_match(existing.etag, if_match)
            del state.authorities[certificate_id.lower()]
            return True

    # -- internals -------------------------------------------------------------------------------

    def _gateway_state(self, gateway_id: str) -> _GatewayState:
        state = self._gateways.get(gateway_id.lower())
        if state is None:
            raise ApimError(404, "ResourceNotFound", "Gateway not found.")
        return state

    def _next_etag(self) -> str:
        with self._lock:
            self._etag_counter += 1
            return base64.b64encode(self._etag_counter.to_bytes(8, "big")).decode()


def check_certificate_id(certificate_id: str) -> None:
    if not CERTIFICATE_ID_PATTERN.match(certificate_id):
        raise ApimError(
            400,
            "ValidationError",
            f"Invalid certificate id {certificate_id!r}: 1 to 80 characters, none of * # & + : < > ?",
            target="certificateId",
        )


def _check_if_match(current_etag: str | None, if_match: str | None) -> None:
    """RFC 9110 If-Match: '*' matches any existing entity; nothing matches a missing one."""
    if if_match is None:
        return
    if current_etag is not None:
        candidates = [tag.strip() for tag in if_match.split(",")]
        if "*" in candidates or current_etag in {_opaque(tag) for tag in candidates}:
            return
    raise ApimError(
        412,
        "PreconditionFailed",
        "The entity has been modified since it was read (If-Match does not match its current ETag). "
        "Read it again and retry.",
    )


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/").strip('"')
