"""API Management adapter (ARM, api-version 2024-05-01): translates SDK calls into domain values.

Reads are lists (one paged call answers for every item). Creates are plain PUTs; a write that
changes an existing entity carries its ETag in ``If-Match``, so a concurrent change is detected
(HTTP 412) rather than overwritten.

Lists are read as plain JSON through the SDK client's own pipeline (`_send_request`: the same
authentication, retries honouring Retry-After, request ids and user agent as its typed methods),
without the SDK's model deserialization, which costs about 45 µs an item here: half the CPU of a
25-item page, and with many calls in flight CPU is what bounds throughput. Writes keep the typed
methods.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    map_error,
)
from azure.core.rest import HttpRequest
from azure.mgmt.apimanagement import ApiManagementClient
from azure.mgmt.apimanagement.models import CertificateCreateOrUpdateParameters, GatewayCertificateAuthorityContract
from azure.mgmt.core.exceptions import ARMErrorFormat

from shared.errors import AzureCallError, translated
from shared.plan import ApimCertificate
from shared.settings import ApimService

_ANY_ETAG = "*"
_PRECONDITION_FAILED = 412
API_VERSION = "2024-05-01"
# What the SDK's list methods map, before any other error status becomes an HttpResponseError.
_LIST_ERRORS = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}


class Apim:
    def __init__(
        self,
        service: ApimService,
        credential: TokenCredential,
        *,
        arm_endpoint: str,
        credential_scope: str,
        **client_options: Any,
    ) -> None:
        self.service = service
        self._client = ApiManagementClient(
            credential,
            service.subscription_id,
            base_url=arm_endpoint,
            credential_scopes=[credential_scope],
            api_version=API_VERSION,
            **client_options,
        )
        self._where = (service.resource_group, service.name)
        self._service_url = (
            f"{arm_endpoint.rstrip('/')}/subscriptions/{quote(service.subscription_id, safe='')}"
            f"/resourceGroups/{quote(service.resource_group, safe='')}"
            f"/providers/Microsoft.ApiManagement/service/{quote(service.name, safe='')}"
        )

    def certificates(self) -> dict[str, ApimCertificate]:
        found: dict[str, ApimCertificate] = {}
        with translated(f"list certificates of {self.service.name}"):
            for cert in self._list("/certificates"):
                name, properties = cert.get("name"), cert.get("properties") or {}
                if name:
                    found[name] = ApimCertificate(
                        id=name,
                        thumbprint=(properties.get("thumbprint") or "").upper(),
                        subject=properties.get("subject") or "",
                        expires=_datetime(properties.get("expirationDate")),
                    )
        return found

    def gateways(self) -> list[str]:
        with translated(f"list gateways of {self.service.name}"):
            return [name for gateway in self._list("/gateways") if (name := gateway.get("name"))]

    def gateway_cas(self, gateway: str) -> dict[str, bool]:
        found: dict[str, bool] = {}
        with translated(f"list certificate authorities of gateway {gateway}"):
            for ca in self._list(f"/gateways/{quote(gateway, safe='')}/certificateAuthorities"):
                if name := ca.get("name"):
                    found[name] = bool((ca.get("properties") or {}).get("isTrusted"))
        return found

    def _list(self, path: str) -> Iterator[dict[str, Any]]:
        """Every item of an ARM list under the service, following ``nextLink``, as plain JSON."""
        url: str | None = f"{self._service_url}{path}?api-version={API_VERSION}"
        while url:
            response = self._client._send_request(HttpRequest("GET", url))  # the SDK's documented raw call
            if response.status_code != 200:
                map_error(status_code=response.status_code, response=response, error_map=_LIST_ERRORS)
                raise HttpResponseError(response=response, error_format=ARMErrorFormat)
            page = response.json()
            yield from page.get("value") or ()
            url = page.get("nextLink")
            if url and "api-version" not in parse_qs(urlsplit(url).query):
                # As the SDK does: a nextLink may leave it out.
                url += f"{'&' if '?' in url else '?'}api-version={API_VERSION}"

    def upload_certificate(self, certificate_id: str, pfx: bytes, *, replace: bool) -> None:
        """Upload a PFX that holds a public certificate only (empty password)."""
        parameters = CertificateCreateOrUpdateParameters(data=base64.b64encode(pfx).decode("ascii"), password="")
        with translated(f"upload certificate {certificate_id}"):
            self._client.certificate.create_or_update(
                *self._where, certificate_id, parameters, if_match=_ANY_ETAG if replace else None
            )

    def set_gateway_ca(self, gateway: str, certificate_id: str, trusted: bool, *, replace: bool) -> None:
        """Create, or update under the entity's current ETag, a gateway certificate authority."""
        contract = GatewayCertificateAuthorityContract(is_trusted=trusted)
        what = f"set {certificate_id} isTrusted={str(trusted).lower()} on gateway {gateway}"
        if not replace:
            with translated(what):
                self._client.gateway_certificate_authority.create_or_update(
                    *self._where, gateway, certificate_id, contract
                )
            return
        with translated(what):
            etag = self._gateway_ca_etag(gateway, certificate_id)
        try:
            with translated(what):
                self._client.gateway_certificate_authority.create_or_update(
                    *self._where, gateway, certificate_id, contract, if_match=etag
                )
        except AzureCallError as error:
            if error.status == _PRECONDITION_FAILED:
                raise AzureCallError(
                    f"{what}: changed by someone else meanwhile; the next run re-plans", status=412
                ) from None
            raise

    def remove_gateway_ca(self, gateway: str, certificate_id: str) -> None:
        with translated(f"remove {certificate_id} from gateway {gateway}"):
            self._client.gateway_certificate_authority.delete(*self._where, gateway, certificate_id, if_match=_ANY_ETAG)

    def delete_certificate(self, certificate_id: str) -> None:
        with translated(f"delete certificate {certificate_id}"):
            self._client.certificate.delete(*self._where, certificate_id, if_match=_ANY_ETAG)

    def _gateway_ca_etag(self, gateway: str, certificate_id: str) -> str:
        def keep_etag(_response: Any, _body: Any, headers: dict[str, str]) -> str:
            return headers.get("ETag", _ANY_ETAG)

        etag = self._client.gateway_certificate_authority.get(*self._where, gateway, certificate_id, cls=keep_etag)
        return cast(str, etag)  # `cls` replaces the deserialized contract with what it returns

    def close(self) -> None:
        self._client.close()


def _datetime(value: object) -> datetime | None:
    """An ISO 8601 timestamp as ARM writes it (``Z``, up to 7 fractional digits), else None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
