"""ARM for Microsoft.ApiManagement on the wire (api-version 2024-05-01 only).

Order of checks, as ARM does it: bearer token (audience = the configured ARM audience), then the
subscription's request limits when they are switched on (`emulator.throttling`: every answer from
then on carries the tokens left), then api-version, then the service, then the APIM entity.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from . import operations as op
from .apim import (
    ApimError,
    ApimService,
    Backend,
    Gateway,
    GatewayCertificateAuthority,
    StoredCertificate,
    Workspace,
    check_certificate_id,
    parse_upload,
)
from .certs import CertificateFormatError
from .identity import IssuedToken, TokenIssuer
from .server import Call
from .throttling import ArmLimits
from .wire import HttpError, Request, Response, format_retry_after, parse_json_object, request_id

T = TypeVar("T")

API_VERSION: Final = "2024-05-01"
# Backends' TLS pins (properties.properties.tls) exist from this preview on; the emulator serves
# backends at it only, as the app calls them (the 2025-03-01-preview examples
# ApiManagementCreateBackendWithCustomAssignedCertificate_X509Names.json and
# ApiManagamentCreateBackendWithCustomAssignedCertificate_Thumbprints.json).
BACKEND_API_VERSION: Final = "2025-03-01-preview"
_API_VERSION_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_PROVIDER_PREFIX: Final = (
    "subscriptions",
    None,
    "resourcegroups",
    None,
    "providers",
    "microsoft.apimanagement",
    "service",
)
_ERROR_CODES: Final = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "ResourceNotFound",
    409: "Conflict",
    412: "PreconditionFailed",
    429: "SubscriptionRequestsThrottled",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}

ServiceLookup = Callable[[str, str, str], ApimService | None]
Handler = Callable[[ApimService], Response]


class ArmApi:
    def __init__(
        self,
        services: ServiceLookup,
        issuer: TokenIssuer,
        *,
        audience: Callable[[], str],
        tenant_id: str,
        page_size: Callable[[], int],
        base_url: Callable[[], str],
        offered_versions: Callable[[], tuple[str, ...]] = lambda: (API_VERSION,),
        limits: Callable[[], ArmLimits | None] = lambda: None,
    ) -> None:
        self._offered_versions = offered_versions
        self._services = services
        self._issuer = issuer
        self._audience = audience
        self._tenant_id = tenant_id
        self._page_size = page_size
        self._base_url = base_url
        self._limits = limits

    def resolve(self, request: Request) -> Call:
        token = self._issuer.lookup(request.bearer_token())
        operation, handler, names = self._route(request)

        def guarded() -> Response:
            self._authenticate(request, token)
            assert token is not None  # _authenticate answered 401 otherwise
            limits = self._limits()
            if limits is None:
                return served()
            subscription = request.segments[1] if len(request.segments) > 1 else ""
            kind, decision = limits.take(subscription, token.client_id, request.method)
            if decision.allowed:
                try:
                    response = served()
                except HttpError as error:
                    response = error.response
            else:
                message = limits.message(kind, subscription, token.client_id, decision)
                response = _arm_error(429, "SubscriptionRequestsThrottled", message)
                response.headers["Retry-After"] = limits.retry_after(decision)
            response.headers[f"x-ms-ratelimit-remaining-subscription-{kind}"] = str(decision.remaining)
            return response

        def served() -> Response:
            self._check_api_version(request, self._offered_versions())
            if names is None:
                raise HttpError(
                    _arm_error(404, "NotFound", f"The emulator does not model {request.method} {request.path}.")
                )
            service = self._services(*names)
            if service is None:
                _, group, name = names
                message = (
                    f"The Resource 'Microsoft.ApiManagement/service/{name}' under resource group '{group}' was not found. "
                    "For more details please go to https://aka.ms/ARMResourceNotFoundFix"
                )
                raise HttpError(_arm_error(404, "ResourceNotFound", message))
            try:
                return handler(service)
            except ApimError as error:
                raise HttpError(_apim_error(error, head=request.method == "HEAD")) from None

        return Call(
            operation,
            guarded,
            _fault,
            client_id=token.client_id if token else None,
            audience=token.resource if token else None,
        )

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, request: Request) -> tuple[str, Handler, tuple[str, str, str] | None]:
        segments = request.segments
        if len(segments) > 1 and segments[-1] == "":
            segments = segments[:-1]
        prefix = segments[: len(_PROVIDER_PREFIX) + 1]
        if len(prefix) < len(_PROVIDER_PREFIX) + 1 or any(
            fixed is not None and part.lower() != fixed for part, fixed in zip(prefix, _PROVIDER_PREFIX, strict=False)
        ):
            return op.ARM_UNROUTED, _unrouted, None
        names = (prefix[1], prefix[3], prefix[7])
        # Below the service, collection names (even positions) are case-insensitive; ids keep their case.
        rest = [part.lower() if i % 2 == 0 else part for i, part in enumerate(segments[8:])]
        method = request.method
        route: tuple[str, Handler] | None = None
        match rest:
            case [] if method == "GET":
                route = op.ARM_GET_SERVICE, self._get_service
            case [] if method == "PATCH":
                route = op.ARM_UPDATE_SERVICE, lambda s: self._update_service(request, s)
            case ["backends"] if method == "GET":
                route = op.ARM_LIST_BACKENDS, lambda s: self._backends(request, s, None)
            case ["backends", bid] if method == "GET":
                route = op.ARM_GET_BACKEND, lambda s: self._backends(request, s, bid)
            case ["backends", bid] if method == "PATCH":
                route = op.ARM_UPDATE_BACKEND, lambda s: self._patch_backend(request, s, bid)
            case ["workspaces"] if method == "GET":
                route = op.ARM_LIST_WORKSPACES, lambda s: self._page(request, s.workspaces, _workspace_contract(s))
            case ["workspacelinks"] if method == "GET":
                route = (
                    op.ARM_LIST_WORKSPACE_LINKS,
                    lambda s: self._page(request, [w for w in s.workspaces if w.gateways], _link_contract(s)),
                )
            case ["workspaces", ws, "backends"] if method == "GET":
                route = op.ARM_LIST_WORKSPACE_BACKENDS, lambda s: self._workspace_backends(request, s, ws)
            case ["certificates"] if method == "GET":
                route = op.ARM_LIST_CERTIFICATES, lambda s: self._list_certificates(request, s)
            case ["certificates", cid] if method in ("GET", "HEAD"):
                operation = op.ARM_GET_CERTIFICATE if method == "GET" else op.ARM_HEAD_CERTIFICATE
                route = operation, lambda s: _read_certificate(request, s, cid)
            case ["certificates", cid] if method == "PUT":
                route = op.ARM_PUT_CERTIFICATE, lambda s: self._put_certificate(request, s, cid)
            case ["certificates", cid] if method == "DELETE":
                route = (
                    op.ARM_DELETE_CERTIFICATE,
                    lambda s: _deleted(s.delete_certificate(cid, if_match=_required_if_match(request))),
                )
            case ["gateways"] if method == "GET":
                route = (
                    op.ARM_LIST_GATEWAYS,
                    lambda s: self._page(request, list(s.gateways), lambda g: _gateway_contract(s, g)),
                )
            case ["gateways", gw] if method == "GET":
                route = op.ARM_GET_GATEWAY, lambda s: _read_gateway(request, s, gw)
            case ["gateways", gw, "certificateauthorities"] if method == "GET":
                route = (
                    op.ARM_LIST_GATEWAY_CAS,
                    lambda s: self._page(request, s.gateway_ca_entities(gw), lambda ca: _ca_contract(s, gw, ca)),
                )
            case ["gateways", gw, "certificateauthorities", cid] if method in ("GET", "HEAD"):
                operation = op.ARM_GET_GATEWAY_CA if method == "GET" else op.ARM_HEAD_GATEWAY_CA
                route = operation, lambda s: _read_gateway_ca(request, s, gw, cid)
            case ["gateways", gw, "certificateauthorities", cid] if method == "PUT":
                route = op.ARM_PUT_GATEWAY_CA, lambda s: self._put_gateway_ca(request, s, gw, cid)
            case ["gateways", gw, "certificateauthorities", cid] if method == "DELETE":
                route = (
                    op.ARM_DELETE_GATEWAY_CA,
                    lambda s: _deleted(s.delete_gateway_ca(gw, cid, if_match=_required_if_match(request))),
                )
        if route is None:
            return op.ARM_UNROUTED, _unrouted, names
        return route[0], route[1], names

    # -- auth and api-version --------------------------------------------------------------------

    def _authenticate(self, request: Request, token: IssuedToken | None) -> None:
        audience = self._audience()
        if request.bearer_token() is None:
            raise HttpError(
                self._unauthorized(
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                    "The authentication failed because of missing 'Authorization' header.",
                )
            )
        if token is None:
            raise HttpError(
                self._unauthorized(
                    "InvalidAuthenticationToken", "The access token is invalid.", "The access token is invalid."
                )
            )
        if not token.has_audience(audience):
            allowed = f"'{audience.rstrip('/')}/','{audience.rstrip('/')}'"
            message = (
                f"The access token has been obtained for wrong audience or resource '{token.resource}'. "
                f"It should exactly match with one of the allowed audiences {allowed}."
            )
            raise HttpError(
                self._unauthorized(
                    "InvalidAuthenticationTokenAudience", message, "The access token has wrong audience."
                )
            )

    def _unauthorized(self, code: str, message: str, description: str) -> Response:
        challenge = (
            f'Bearer authorization_uri="https://login.windows.net/{self._tenant_id}", '
            f'error="invalid_token", error_description="{description}"'
        )
        return _arm_error(401, code, message, {"WWW-Authenticate": challenge})

    @staticmethod
    def _check_api_version(request: Request, offered: tuple[str, ...]) -> None:
        version = request.query.get("api-version")
        if not version:
            raise HttpError(
                _arm_error(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            )
        if version in offered:
            return
        if _API_VERSION_FORM.match(version):
            # ARM's answer for a well-formed version the resource provider does not offer in this cloud.
            message = (
                f"No registered resource provider found for location 'chinanorth3' and API version '{version}' "
                f"for type 'service'. The supported api-versions are '{', '.join(offered)}'. "
                "The supported locations are 'chinanorth3, chinaeast2'."
            )
            raise HttpError(_arm_error(400, "NoRegisteredProviderFound", message))
        message = f"The api-version '{version}' is invalid. The supported versions are '{', '.join(offered)}'."
        raise HttpError(_arm_error(400, "InvalidApiVersionParameter", message))

    # -- handlers --------------------------------------------------------------------------------

    def _list_certificates(self, request: Request, service: ApimService) -> Response:
        return self._page(request, list(service.certificates.values()), lambda c: _certificate_contract(service, c))

    def _get_service(self, service: ApimService) -> Response:
        return Response.json(200, _service_contract(service), _headers(service.etag))

    def _backends(self, request: Request, service: ApimService, backend_id: str | None) -> Response:
        _backend_version(request)
        if backend_id is None:
            return self._page(request, service.backends, lambda b: _backend_contract(service, b))
        backend = service.backend(backend_id)
        return Response.json(200, _backend_contract(service, backend), _headers(backend.etag))

    def _workspace_backends(self, request: Request, service: ApimService, workspace_id: str) -> Response:
        _backend_version(request)
        workspace = service.workspace(workspace_id)
        items = sorted(workspace.backends.values(), key=lambda b: b.id.lower())
        prefix = f"{service.resource_id}/workspaces/{workspace.id}"
        return self._page(
            request, items, lambda b: {**_backend_contract(service, b), "id": f"{prefix}/backends/{b.id}"}
        )

    def _patch_backend(self, request: Request, service: ApimService, backend_id: str) -> Response:
        _backend_version(request)
        backend = service.patch_backend(backend_id, _properties(request), if_match=_required_if_match(request))
        return Response.json(200, _backend_contract(service, backend), _headers(backend.etag))

    def _update_service(self, request: Request, service: ApimService) -> Response:
        """ApiManagementService_Update: a long-running operation. As in the 2024-05-01 examples
        (ApiManagementUpdateServiceDisableTls10.json, ApiManagementCreateServiceWithSystemCertificates.json)
        it answers with the service as it is now and where to poll; the update runs until the test
        finishes it (`ApimService.finish_update`), and a second one meanwhile is a 409."""
        service.start_update(_properties(request))
        operation = f"{service.resource_id}/operationresults/{request_id()}?api-version={API_VERSION}&asyncResponse"
        headers = {
            **_headers(None),
            "Location": f"{self._base_url()}{operation}",
            "Azure-AsyncOperation": f"{self._base_url()}{operation}",
        }
        return Response.json(202, _service_contract(service), headers)

    def _put_certificate(self, request: Request, service: ApimService, certificate_id: str) -> Response:
        check_certificate_id(certificate_id)  # the path first, as APIM validates it before the body
        properties = _properties(request)
        data, key_vault = properties.get("data"), properties.get("keyVault")
        if (data is None) == (key_vault is None):
            raise ApimError(
                400, "ValidationError", "Specify exactly one of properties.data and properties.keyVault.", "data"
            )
        if key_vault is not None:
            stored, created = self._put_key_vault_certificate(service, certificate_id, key_vault, request)
        else:
            password = properties.get("password") or ""
            if not isinstance(data, str) or not isinstance(password, str):
                raise ApimError(
                    400, "ValidationError", "properties.data and properties.password must be strings.", "data"
                )
            try:
                uploaded = base64.b64decode("".join(data.split()), validate=True)
            except (binascii.Error, ValueError):
                raise ApimError(400, "ValidationError", "properties.data is not valid base64.", "data") from None
            try:
                material, upload_format = parse_upload(uploaded, password)
            except CertificateFormatError as error:
                raise ApimError(400, "ValidationError", f"Failed to read the certificate: {error}.", "data") from None
            stored, created = service.put_certificate(
                certificate_id, material, upload_format, uploaded, password, if_match=request.header("if-match")
            )
        return Response.json(201 if created else 200, _certificate_contract(service, stored), _headers(stored.etag))

    def _put_key_vault_certificate(
        self, service: ApimService, certificate_id: str, key_vault: object, request: Request
    ) -> tuple[StoredCertificate, bool]:
        identifier = key_vault.get("secretIdentifier") if isinstance(key_vault, dict) else None
        if not isinstance(identifier, str) or not identifier:
            raise ApimError(400, "ValidationError", "properties.keyVault.secretIdentifier is required.", "keyVault")
        try:
            material = service.key_vault_resolver(identifier)
        except (KeyError, ValueError):
            material = None
        if material is None:
            message = f"Failed to fetch the secret {identifier} (the emulator resolves secrets of its own vault only)."
            raise ApimError(400, "ValidationError", message, "keyVault")
        reference = {
            "secretIdentifier": identifier,
            "identityClientId": key_vault.get("identityClientId") if isinstance(key_vault, dict) else None,
            "lastStatus": {"code": "Success", "timeStampUtc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        }
        return service.put_certificate(
            certificate_id, material, "keyVault", b"", "", if_match=request.header("if-match"), key_vault=reference
        )

    def _put_gateway_ca(self, request: Request, service: ApimService, gateway_id: str, certificate_id: str) -> Response:
        properties = _properties(request)
        is_trusted = properties.get("isTrusted", False)
        if not isinstance(is_trusted, bool):
            raise ApimError(400, "ValidationError", "properties.isTrusted must be true or false.", "isTrusted")
        # A missing gateway is 404. So is an unknown certificate: it is named in the path and resolves
        # like a missing parent (cf. the recorded PUT under a missing service: 404 ResourceNotFound);
        # APIM's 400 ValidationError is for unresolvable references inside a request body.
        ca, created = service.put_gateway_ca(
            gateway_id, certificate_id, is_trusted, if_match=request.header("if-match")
        )
        return Response.json(201 if created else 200, _ca_contract(service, gateway_id, ca), _headers(ca.etag))

    # -- paging ----------------------------------------------------------------------------------

    def _page(self, request: Request, items: Sequence[T], render: Callable[[T], dict[str, Any]]) -> Response:
        """One page of `items`; only the page's items are rendered."""
        query = request.query
        if "$filter" in query:
            raise ApimError(
                400,
                "ValidationError",
                "The emulator does not implement $filter; list and filter client-side.",
                "$filter",
            )
        top = _int_param(query, "$top", minimum=1)
        skip = _int_param(query, "$skip", minimum=0) or 0
        size = min(top, self._page_size()) if top else self._page_size()
        body: dict[str, Any] = {"value": [render(item) for item in items[skip : skip + size]], "count": len(items)}
        if skip + size < len(items):
            version = request.query.get("api-version", API_VERSION)
            base = f"{self._base_url()}{urlsplit(request.target).path}?api-version={version}"
            body["nextLink"] = base + (f"&$top={top}" if top else "") + f"&$skip={skip + size}"
        return Response.json(200, body, _headers(None))


def _read(request: Request, contract: dict[str, Any], etag: str) -> Response:
    if request.method == "HEAD":
        return Response(200, b"", _headers(etag))
    return Response.json(200, contract, _headers(etag))


def _read_certificate(request: Request, service: ApimService, certificate_id: str) -> Response:
    stored = service.certificate(certificate_id)
    return _read(request, _certificate_contract(service, stored), stored.etag)


def _read_gateway(request: Request, service: ApimService, gateway_id: str) -> Response:
    gateway = service.gateway(gateway_id)
    return _read(request, _gateway_contract(service, gateway), gateway.etag)


def _read_gateway_ca(request: Request, service: ApimService, gateway_id: str, certificate_id: str) -> Response:
    ca = service.gateway_ca(gateway_id, certificate_id)
    return _read(request, _ca_contract(service, gateway_id, ca), ca.etag)


def _unrouted(service: ApimService) -> Response:
    return _arm_error(404, "NotFound", "The emulator does not model this ARM route.")


def _fault(status: int, retry_after: float | None) -> Response:
    response = _arm_error(status, _ERROR_CODES.get(status, f"Http{status}"), f"Injected fault: HTTP {status}.")
    if retry_after is not None:
        response.headers["Retry-After"] = format_retry_after(retry_after)
    return response


def _properties(request: Request) -> dict[str, Any]:
    body = parse_json_object(request.body)
    properties = body.get("properties", {}) if body is not None else None
    if not isinstance(properties, dict):
        raise ApimError(400, "ValidationError", "The request body must be a JSON object; 'properties' an object.")
    return properties


def _required_if_match(request: Request) -> str:
    if_match = request.header("if-match")
    if not if_match:
        raise ApimError(
            400, "ValidationError", "The If-Match header is required; use '*' to delete unconditionally.", "If-Match"
        )
    return if_match


def _deleted(existed: bool) -> Response:
    return Response(200, b"", _headers(None)) if existed else Response(204, b"", _headers(None))


def _int_param(query: dict[str, str], name: str, *, minimum: int) -> int | None:
    if name not in query:
        return None
    try:
        value = int(query[name])
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ApimError(400, "ValidationError", f"{name} must be an integer >= {minimum}.", name)
    return value


def _headers(etag: str | None) -> dict[str, str]:
    headers = {
        "Cache-Control": "no-cache",
        "Pragma": "no-cache",
        "Expires": "-1",
        "x-ms-request-id": request_id(),
        "x-ms-correlation-request-id": request_id(),
        "X-Content-Type-Options": "nosniff",
    }
    if etag:
        headers["ETag"] = f'"{etag}"'
    return headers


def _arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}}, {**_headers(None), **(headers or {})})


def _apim_error(error: ApimError, *, head: bool) -> Response:
    if head:
        return Response(error.status, b"", _headers(None))
    details = None
    if error.code == "ValidationError" and error.target:
        details = [{"code": error.code, "target": error.target, "message": error.message}]
    body = {"error": {"code": error.code, "message": error.message, "details": details}}
    return Response.json(error.status, body, _headers(None))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _certificate_contract(service: ApimService, stored: StoredCertificate) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "subject": stored.subject,
        "thumbprint": stored.thumbprint,
        "expirationDate": _iso(stored.expiration),
    }
    if stored.key_vault is not None:
        properties["keyVault"] = dict(stored.key_vault)
    return {
        "id": f"{service.resource_id}/certificates/{stored.id}",
        "type": "Microsoft.ApiManagement/service/certificates",
        "name": stored.id,
        "properties": properties,
    }


def _gateway_contract(service: ApimService, gateway: Gateway) -> dict[str, Any]:
    properties: dict[str, Any] = {"locationData": {"name": gateway.location}}
    if gateway.description:
        properties["description"] = gateway.description
    return {
        "id": f"{service.resource_id}/gateways/{gateway.id}",
        "type": "Microsoft.ApiManagement/service/gateways",
        "name": gateway.id,
        "properties": properties,
    }


def _ca_contract(service: ApimService, gateway_id: str, ca: GatewayCertificateAuthority) -> dict[str, Any]:
    gateway = service.gateway(gateway_id).id
    return {
        "id": f"{service.resource_id}/gateways/{gateway}/certificateAuthorities/{ca.certificate_id}",
        "type": "Microsoft.ApiManagement/service/gateways/certificateAuthorities",
        "name": ca.certificate_id,
        "properties": {"isTrusted": ca.is_trusted},
    }


def _service_contract(service: ApimService) -> dict[str, Any]:
    host = f"{service.name}.azure-api.net"
    return {
        "id": service.resource_id,
        "name": service.name,
        "type": "Microsoft.ApiManagement/service",
        "tags": {},
        "location": service.location,
        "etag": service.etag,
        "properties": {
            "publisherEmail": "admin@contoso.example",
            "publisherName": "Contoso",
            "notificationSenderEmail": "apimgmt-noreply@mail.windowsazure.com",
            "provisioningState": service.provisioning_state,
            "targetProvisioningState": "" if service.provisioning_state == "Succeeded" else "Succeeded",
            "gatewayUrl": f"https://{host}",
            "portalUrl": f"https://{service.name}.portal.azure-api.net",
            "managementApiUrl": f"https://{service.name}.management.azure-api.net",
            "scmUrl": f"https://{service.name}.scm.azure-api.net",
            "developerPortalUrl": f"https://{service.name}.developer.azure-api.net",
            "hostnameConfigurations": [
                {"type": "Proxy", "hostName": host, "negotiateClientCertificate": False, "defaultSslBinding": True}
            ],
            "publicIPAddresses": [],
            "virtualNetworkType": "None",
            "disableGateway": service.disable_gateway,
            "developerPortalStatus": service.developer_portal_status,
            "publicNetworkAccess": "Enabled",
            # A GET lists each entry's store and facts, never its bytes (encodedCertificate).
            "certificates": [
                {
                    "storeName": entry.store_name,
                    "certificate": {
                        "expiry": entry.expiry.astimezone(UTC).isoformat(),
                        "thumbprint": entry.thumbprint,
                        "subject": entry.subject,
                    },
                }
                for entry in service.ca_store
            ],
            "platformVersion": "stv2",
        },
        "sku": {"name": service.sku, "capacity": 1},
    }


def _backend_version(request: Request) -> None:
    if request.query.get("api-version") != BACKEND_API_VERSION:
        raise ApimError(
            400,
            "ValidationError",
            f"The emulator serves backends at api-version {BACKEND_API_VERSION} only (where their TLS pins exist).",
        )


def _backend_contract(service: ApimService, backend: Backend) -> dict[str, Any]:
    return {
        "id": f"{service.resource_id}/backends/{backend.id}",
        "type": "Microsoft.ApiManagement/service/backends",
        "name": backend.id,
        "properties": dict(backend.properties),
    }


# Workspaces and their links as the 2024-05-01 examples show them (Azure/azure-rest-api-specs,
# specification/apimanagement/resource-manager/Microsoft.ApiManagement/stable/2024-05-01/examples/
# ApiManagementListWorkspaces.json and ApiManagementListWorkspaceLinks.json): a link's workspaceId is
# the workspace's resource id, and its gateways are Microsoft.ApiManagement/gateways resource ids.
def _workspace_contract(service: ApimService) -> Callable[[Workspace], dict[str, Any]]:
    def render(workspace: Workspace) -> dict[str, Any]:
        return {
            "id": f"{service.resource_id}/workspaces/{workspace.id}",
            "type": "Microsoft.ApiManagement/service/workspaces",
            "name": workspace.id,
            "properties": {"displayName": workspace.display_name, "description": ""},
        }

    return render


def _link_contract(service: ApimService) -> Callable[[Workspace], dict[str, Any]]:
    group = f"/subscriptions/{service.subscription_id}/resourceGroups/{service.resource_group}"

    def render(workspace: Workspace) -> dict[str, Any]:
        return {
            "id": f"{service.resource_id}/workspaceLinks/{workspace.id}",
            "type": "Microsoft.ApiManagement/service/workspaceLinks",
            "name": workspace.id,
            "properties": {
                "workspaceId": f"{service.resource_id}/workspaces/{workspace.id}",
                "gateways": [
                    {"id": f"{group}/providers/Microsoft.ApiManagement/gateways/{gateway}"}
                    for gateway in workspace.gateways
                ],
            },
        }

    return render
