"""API Management adapter (`shared.ports.ApimPort`; ARM, api-version 2024-05-01): SDK calls as domain values.

Reads are lists (one paged call answers for every item). Creates are plain PUTs; a write that
changes an existing entity carries its ETag in ``If-Match``, so a concurrent change is detected
(HTTP 412) rather than overwritten.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any, cast

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.rest import HttpRequest
from azure.mgmt.apimanagement.aio import ApiManagementClient
from azure.mgmt.apimanagement.models import CertificateCreateOrUpdateParameters, GatewayCertificateAuthorityContract

from .azure_errors import translated
from .ca_store import INTERMEDIATE, ROOT
from .pacing import Pacer
from .pacing_policy import PacingPolicy, arm_kind
from .ports import (
    ApimBackend,
    ApimCertificate,
    ApimWorkspace,
    AzureCallError,
    BackendTls,
    ServiceFacts,
    StoreEntry,
    StoreWrite,
    normalised_id,
)
from .settings import ApimService

_ANY_ETAG = "*"
# ARM's spelling of the CA store's two stores: a listed name is read as one of them whatever its case.
_STORES = {store.lower(): store for store in (ROOT, INTERMEDIATE)}
_PRECONDITION_FAILED = 412
API_VERSION = "2024-05-01"  # the API the gateway certificate authority operations are documented in
# Backends' TLS pins exist from this preview on (not in 2024-05-01), and azure-mgmt-apimanagement 5.0.0
# has no model for them: the adapter sends these requests itself, through the client's pipeline
# (credential, retries, pacing). The block sits at properties.properties.tls, as in the preview's
# examples ApiManagementCreateBackendWithCustomAssignedCertificate_X509Names.json and
# ApiManagamentCreateBackendWithCustomAssignedCertificate_Thumbprints.json.
BACKEND_API_VERSION = "2025-03-01-preview"


class Apim:
    def __init__(
        self,
        service: ApimService,
        credential: AsyncTokenCredential,
        *,
        arm_endpoint: str,
        credential_scope: str,
        pacer: Pacer | None = None,
        **client_options: Any,
    ) -> None:
        self.service = service
        if pacer is not None:
            client_options["per_retry_policies"] = [PacingPolicy(pacer, arm_kind)]
        self._client = ApiManagementClient(
            credential,
            service.subscription_id,
            base_url=arm_endpoint,
            credential_scopes=[credential_scope],
            api_version=API_VERSION,
            **client_options,
        )
        self._where = (service.resource_group, service.name)

    async def certificates(self) -> dict[str, ApimCertificate]:
        found: dict[str, ApimCertificate] = {}
        with translated(f"list certificates of {self.service.name}"):
            async for cert in self._client.certificate.list_by_service(*self._where):
                name: str | None = cert.name
                if name:
                    found[normalised_id(name)] = ApimCertificate(
                        id=normalised_id(name),
                        thumbprint=(cert.thumbprint or "").upper(),
                        subject=cert.subject or "",
                        expires=cert.expiration_date,
                    )
        return found

    async def gateways(self) -> list[str]:
        found: list[str] = []
        with translated(f"list gateways of {self.service.name}"):
            async for gateway in self._client.gateway.list_by_service(*self._where):
                name: str | None = gateway.name
                if name:
                    found.append(normalised_id(name))
        return found

    async def service_tier(self) -> str:
        with translated(f"read API Management service {self.service.name}"):
            service = await self._client.api_management_service.get(*self._where)
        tier: object = service.sku.name if service.sku is not None else None
        return str(getattr(tier, "value", tier) or "unknown")  # the SDK may give the SkuType enum or its text

    async def service_facts(self) -> ServiceFacts:
        with translated(f"read API Management service {self.service.name}"):
            service = await self._client.api_management_service.get(*self._where)
        tier: object = service.sku.name if service.sku is not None else None
        entries = []
        for configuration in service.certificates or ():
            info = configuration.certificate
            store: object = configuration.store_name
            listed = str(getattr(store, "value", store) or "")
            entries.append(
                StoreEntry(
                    thumbprint=(info.thumbprint if info is not None else "").upper(),
                    store=_STORES.get(listed.lower(), listed),
                    subject=(info.subject if info is not None else "") or "",
                    expires=info.expiry if info is not None else None,
                )
            )
        return ServiceFacts(
            sku=str(getattr(tier, "value", tier) or "unknown"),
            provisioning_state=service.provisioning_state or "",
            ca_store=tuple(entries),
        )

    async def write_ca_store(self, entries: tuple[StoreWrite, ...]) -> None:
        # The body is written here, not by the SDK's ApiManagementServiceUpdateParameters: that model
        # also serializes enableClientCertificate, disableGateway, restore and the portals' status with
        # their defaults, which would re-enable a disabled gateway region or developer portal.
        body = {
            "properties": {
                "certificates": [
                    {"encodedCertificate": base64.b64encode(entry.der).decode("ascii"), "storeName": entry.store}
                    for entry in entries
                ]
            }
        }
        with translated(f"update the CA store of {self.service.name}"):
            # The update runs for 15 minutes or more: the run starts it and does not poll; the next run
            # reads the service's provisioningState to know when it is done.
            await self._client.api_management_service.begin_update(
                *self._where, io.BytesIO(json.dumps(body).encode()), content_type="application/json", polling=False
            )

    async def backends(self) -> list[ApimBackend]:
        url = f"{self._service_path}/backends?api-version={BACKEND_API_VERSION}"
        with translated(f"list backends of {self.service.name}"):
            return [_backend(item) for item in await self._pages(url)]

    async def workspaces(self) -> list[ApimWorkspace]:
        # Two paged lists at 2024-05-01 (ApiManagementListWorkspaces.json, ApiManagementListWorkspaceLinks.json):
        # the workspaces, and the links naming the Microsoft.ApiManagement/gateways resources that serve
        # each one. The pinned SDK has no operation for the links, so both go through the client's pipeline.
        with translated(f"list workspaces of {self.service.name}"):
            listed = await self._pages(f"{self._service_path}/workspaces?api-version={API_VERSION}")
        with translated(f"list workspace links of {self.service.name}"):
            links = await self._pages(f"{self._service_path}/workspaceLinks?api-version={API_VERSION}")
        gateways: dict[str, set[str]] = {}
        for link in links:
            properties = link.get("properties") or {}
            # workspaceId is a resource id; its last segment names the workspace.
            workspace = str(properties.get("workspaceId") or "").rstrip("/").rsplit("/", 1)[-1].lower()
            for gateway in properties.get("gateways") or ():
                gateways.setdefault(workspace, set()).add(str((gateway or {}).get("id") or "").rsplit("/", 1)[-1])
        found = []
        for item in listed:
            name = str(item.get("name") or "")
            if name:
                display = str((item.get("properties") or {}).get("displayName") or "")
                found.append(
                    ApimWorkspace(name, display, tuple(sorted(g for g in gateways.get(name.lower(), ()) if g)))
                )
        return sorted(found, key=lambda w: w.id.lower())

    async def workspace_backends(self, workspace: str) -> list[ApimBackend]:
        url = f"{self._service_path}/workspaces/{workspace}/backends?api-version={BACKEND_API_VERSION}"
        with translated(f"list backends of workspace {workspace} of {self.service.name}"):
            return [_backend(item) for item in await self._pages(url)]

    async def _pages(self, url: str) -> list[Any]:
        """Every item of a paged ARM list, following nextLink (an empty one ends the list)."""
        found: list[Any] = []
        next_url: str | None = url
        while next_url:
            response = await self._client._send_request(HttpRequest("GET", next_url))
            response.raise_for_status()
            page = response.json()
            found.extend(page.get("value") or ())
            next_url = page.get("nextLink")
        return found

    async def set_backend_tls(self, backend_id: str, tls: BackendTls) -> None:
        what = f"set the TLS pins of backend {backend_id}"
        path = f"{self._service_path}/backends/{backend_id}?api-version={BACKEND_API_VERSION}"
        with translated(what):
            response = await self._client._send_request(HttpRequest("GET", path))
            response.raise_for_status()
            etag = response.headers.get("ETag", _ANY_ETAG)
            nested = dict((response.json().get("properties") or {}).get("properties") or {})
            block = dict(nested.get("tls") or {})  # validateCertificateChain/Name and the rest, as found
            block["serverX509Names"] = [
                {"name": name, "issuerCertificateThumbprint": issuer} for name, issuer in tls.x509_names
            ]
            if tls.thumbprints or "serverCertificateThumbprints" in block:
                block["serverCertificateThumbprints"] = list(tls.thumbprints)
            nested["tls"] = block
            # Only properties.properties changes, sent back whole with everything else in it as found.
            body = {"properties": {"properties": nested}}
            request = HttpRequest("PATCH", path, json=body, headers={"If-Match": etag})
            response = await self._client._send_request(request)
            if response.status_code == _PRECONDITION_FAILED:
                raise AzureCallError(f"{what}: changed by someone else meanwhile; the next run re-plans", status=412)
            response.raise_for_status()

    @property
    def _service_path(self) -> str:
        return (
            f"/subscriptions/{self.service.subscription_id}/resourceGroups/{self.service.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.service.name}"
        )

    async def gateway_cas(self, gateway: str) -> dict[str, bool]:
        found: dict[str, bool] = {}
        with translated(f"list certificate authorities of gateway {gateway}"):
            async for ca in self._client.gateway_certificate_authority.list_by_service(*self._where, gateway):
                name: str | None = ca.name
                if name:
                    found[normalised_id(name)] = bool(ca.is_trusted)
        return found

    async def upload_certificate(self, certificate_id: str, pfx: bytes) -> None:
        """Upload a PFX that holds a public certificate only (empty password)."""
        parameters = CertificateCreateOrUpdateParameters(data=base64.b64encode(pfx).decode("ascii"), password="")
        with translated(f"upload certificate {certificate_id}"):
            await self._client.certificate.create_or_update(*self._where, certificate_id, parameters)

    async def set_gateway_ca(self, gateway: str, certificate_id: str, trusted: bool, *, replace: bool) -> None:
        """Create, or update under the entity's current ETag, a gateway certificate authority."""
        contract = GatewayCertificateAuthorityContract(is_trusted=trusted)
        what = f"set {certificate_id} isTrusted={str(trusted).lower()} on gateway {gateway}"
        if not replace:
            with translated(what):
                await self._client.gateway_certificate_authority.create_or_update(
                    *self._where, gateway, certificate_id, contract
                )
            return
        with translated(what):
            etag = await self._gateway_ca_etag(gateway, certificate_id)
        try:
            with translated(what):
                await self._client.gateway_certificate_authority.create_or_update(
                    *self._where, gateway, certificate_id, contract, if_match=etag
                )
        except AzureCallError as error:
            if error.status == _PRECONDITION_FAILED:
                raise AzureCallError(
                    f"{what}: changed by someone else meanwhile; the next run re-plans", status=412
                ) from None
            raise

    async def remove_gateway_ca(self, gateway: str, certificate_id: str) -> None:
        with translated(f"remove {certificate_id} from gateway {gateway}"):
            await self._client.gateway_certificate_authority.delete(
                *self._where, gateway, certificate_id, if_match=_ANY_ETAG
            )

    async def delete_certificate(self, certificate_id: str) -> None:
        with translated(f"delete certificate {certificate_id}"):
            await self._client.certificate.delete(*self._where, certificate_id, if_match=_ANY_ETAG)

    async def _gateway_ca_etag(self, gateway: str, certificate_id: str) -> str:
        def keep_etag(_response: Any, _body: Any, headers: dict[str, str]) -> str:
            return headers.get("ETag", _ANY_ETAG)

        etag = await self._client.gateway_certificate_authority.get(
            *self._where, gateway, certificate_id, cls=keep_etag
        )
        return cast(str, etag)  # `cls` replaces the deserialized contract with what it returns

    async def close(self) -> None:
        await self._client.close()


def _backend(item: Any) -> ApimBackend:
    properties = item.get("properties") or {}
    tls = (properties.get("properties") or {}).get("tls") or {}
    names = tuple(
        (str(entry.get("name") or ""), entry.get("issuerCertificateThumbprint"))
        for entry in tls.get("serverX509Names") or ()
    )
    return ApimBackend(
        id=str(item.get("name") or ""),
        url=str(properties.get("url") or ""),
        tls=BackendTls(names, tuple(str(t) for t in tls.get("serverCertificateThumbprints") or ())),
    )
