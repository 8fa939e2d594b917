"""The Key Vault data plane on the wire: challenge auth, certificates, secrets, paging, error bodies.

Any api-version is accepted (the SDK 4.12 sends 2026-04-01) and recorded. The first request of a
client carries no token and is answered 401 with the challenge; its ``resource`` is
``https://0.0.1:PORT``, which the SDK's domain check accepts for ``https://127.0.0.1:PORT``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import operations as op
from .certs import CONTENT_TYPES, PEM, PKCS12, CertificateFormatError, CertificateMaterial, load_pem, load_pkcs12
from .identity import IssuedToken, TokenIssuer
from .keyvault import CertificateVersion, DeletedButRecoverable, DeletedCertificate, SecretVersion, Vault
from .server import Call
from .throttling import KeyVaultLimits
from .wire import HttpError, Request, Response, format_retry_after, parse_json_object, request_id

T = TypeVar("T")

RECOVERY = {"recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}
_NOT_FOUND_HELP = (
    "If you recently deleted this {kind} you may be able to recover it using the correct recovery command. "
    "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
)
_CERTIFICATE_OPERATIONS = {
    op.KV_LIST_CERTIFICATES,
    op.KV_LIST_CERTIFICATE_VERSIONS,
    op.KV_GET_CERTIFICATE,
    op.KV_IMPORT_CERTIFICATE,
    op.KV_GET_DELETED_CERTIFICATE,
}
_ERROR_CODES = {
    400: "BadParameter",
    401: "Unauthorized",
    403: "Forbidden",
    409: "Conflict",
    412: "PreconditionFailed",
    429: "Throttled",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}

Handler = Callable[[], Response]

# The data actions Key Vault's RBAC checks (what a 403 names): Key Vault Reader grants the reads,
# Key Vault Secrets User getSecret.
_READ_CERTIFICATES = "Microsoft.KeyVault/vaults/certificates/read"
_READ_DELETED = "Microsoft.KeyVault/vaults/deletedcertificates/read"
_READ_SECRETS = "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
_GET_SECRET = "Microsoft.KeyVault/vaults/secrets/getSecret/action"


class KeyVaultApi:
    def __init__(
        self,
        vault: Vault,
        issuer: TokenIssuer,
        *,
        tenant_id: str,
        page_size: Callable[[], int],
        limits: Callable[[], KeyVaultLimits | None] = lambda: None,
    ) -> None:
        self.vault = vault
        self.issuer = issuer
        self.tenant_id = tenant_id
        self._page_size = page_size
        self._limits = limits

    @property
    def challenge_resource(self) -> str:
        # The SDK accepts the challenge when the vault host ends with "." + the resource's authority.
        return f"https://0.0.1:{urlsplit(self.vault.url).port}"

    def resolve(self, request: Request) -> Call:
        token = self.issuer.lookup(request.bearer_token()) if request.bearer_token() is not None else None
        operation, handler = self._route(request, token.client_id if token is not None else "")
        if request.bearer_token() is None:
            return Call(
                op.KV_CHALLENGE,
                lambda: self._unauthorized("AKV10000: Request is missing a Bearer or PoP token."),
                self._fault(op.KV_CHALLENGE),
            )

        def guarded() -> Response:
            self._authorize(token)
            if (limits := self._limits()) is not None and not (decision := limits.take()).allowed:
                message = "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"
                raise HttpError(_error(429, "Throttled", message, {"Retry-After": limits.retry_after(decision)}))
            if not request.query.get("api-version"):
                raise HttpError(_error(400, "BadParameter", "The api-version query parameter is required."))
            return handler()

        return Call(
            operation,
            guarded,
            self._fault(operation),
            client_id=token.client_id if token else None,
            audience=token.resource if token else None,
        )

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, request: Request, caller: str) -> tuple[str, Handler]:
        segments = request.segments
        if segments and segments[-1] == "" and len(segments) <= 2:
            segments = segments[:-1]  # "/certificates/" lists like "/certificates"
        method = request.method

        def allowed(handler: Handler, action: str, name: str | None = None, kind: str = "certificates") -> Handler:
            """The handler, once the caller is found to hold a role that grants `action` on the object."""

            def checked() -> Response:
                if not self.vault.may_access(name):
                    raise HttpError(self._forbidden_by_rbac(caller, action, f"{kind}/{name}" if name else None))
                return handler()

            return checked

        match segments:
            case ["certificates"] if method == "GET":
                handler = allowed(lambda: self._list_certificates(request), _READ_CERTIFICATES)
                return op.KV_LIST_CERTIFICATES, handler
            case ["certificates", name, "versions"] if method == "GET":
                handler = allowed(lambda: self._list_certificate_versions(request, name), _READ_CERTIFICATES, name)
                return op.KV_LIST_CERTIFICATE_VERSIONS, handler
            case ["certificates", name, "import"] if method == "POST":
                return op.KV_IMPORT_CERTIFICATE, lambda: self._import_certificate(request, name)
            case ["certificates", name] | ["certificates", name, _] if method == "GET":
                version = segments[2] if len(segments) == 3 else ""
                return op.KV_GET_CERTIFICATE, allowed(
                    lambda: self._get_certificate(name, version), _READ_CERTIFICATES, name
                )
            case ["deletedcertificates", name] if method == "GET":
                # Deleted certificates are vault-scoped: a role on one certificate does not reach them.
                return op.KV_GET_DELETED_CERTIFICATE, allowed(
                    lambda: self._get_deleted_certificate(name), _READ_DELETED
                )
            case ["secrets", name, "versions"] if method == "GET":
                handler = allowed(lambda: self._list_secret_versions(request, name), _READ_SECRETS, name, "secrets")
                return op.KV_LIST_SECRET_VERSIONS, handler
            case ["secrets", name] | ["secrets", name, _] if method == "GET":
                version = segments[2] if len(segments) == 3 else ""
                handler = allowed(lambda: self._get_secret(name, version), _GET_SECRET, name, "secrets")
                return op.KV_GET_SECRET, handler
        message = f"The emulator does not model {method} {request.path}."
        return op.KV_UNROUTED, lambda: _error(404, "NotFound", message)

    # -- auth ------------------------------------------------------------------------------------

    def _authorize(self, token: IssuedToken | None) -> None:
        if token is None:
            raise HttpError(self._unauthorized("Invalid token: this emulator's identity endpoint did not issue it."))
        if not token.has_audience(self.challenge_resource):
            message = f"AKV10022: Invalid audience. Expected {self.challenge_resource}, found: {token.resource}."
            raise HttpError(self._unauthorized(message))

    def _unauthorized(self, message: str) -> Response:
        challenge = (
            f'Bearer authorization="https://login.windows.net/{self.tenant_id}", resource="{self.challenge_resource}"'
        )
        return _error(401, "Unauthorized", message, {"WWW-Authenticate": challenge})

    def _forbidden_by_rbac(self, caller: str, action: str, scope: str | None) -> Response:
        """Key Vault's answer under Azure RBAC when no role assignment grants `action` on the object."""
        resource = f"{self.vault.topic}/{scope}" if scope else self.vault.topic
        message = (
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, please observe "
            "propagation time.\r\n"
            f"Caller: appid={caller};oid={caller};iss=https://sts.windows.net/{self.tenant_id}/\r\n"
            f"Action: '{action}'\r\n"
            f"Resource: '{resource.lower()}'\r\n"
            "Assignment: (not found)\r\n"
            "DenyAssignmentId: null\r\n"
            "DecisionReason: 'DeniedWithNoValidRBAC' \r\n"
            f"Vault: {self.vault.name};location=emulated\r\n"
        )
        return Response.json(
            403,
            {"error": {"code": "Forbidden", "message": message, "innererror": {"code": "ForbiddenByRbac"}}},
            _headers(),
        )

    def _fault(self, operation: str) -> Callable[[int, float | None], Response]:
        def respond(status: int, retry_after: float | None) -> Response:
            if status == 404:
                kind = "certificate" if operation in _CERTIFICATE_OPERATIONS else "secret"
                response = _error(404, f"{kind.capitalize()}NotFound", f"Injected fault: {kind} not found.")
            else:
                response = _error(status, _ERROR_CODES.get(status, f"Http{status}"), f"Injected fault: HTTP {status}.")
            if retry_after is not None:
                response.headers["Retry-After"] = format_retry_after(retry_after)
            return response

        return respond

    # -- certificates ----------------------------------------------------------------------------

    def _list_certificates(self, request: Request) -> Response:
        return self._page(request, self.vault.latest_certificates(), self._certificate_item)

    def _list_certificate_versions(self, request: Request, name: str) -> Response:
        try:
            versions = self.vault.certificate_versions(name)
        except KeyError:
            raise HttpError(_certificate_not_found(name)) from None
        # Key Vault lists versions in no particular order; sorting by id makes that visible.
        ordered = sorted(versions, key=lambda v: v.version)
        return self._page(request, ordered, lambda v: self._certificate_item(v, with_version=True))

    def _certificate_item(self, v: CertificateVersion, *, with_version: bool = False) -> dict[str, Any]:
        """A certificate list's item: the certificate (its latest version) or one version of it."""
        path = f"{v.name}/{v.version}" if with_version else v.name
        return _without_none(
            {
                "id": f"{self.vault.url}/certificates/{path}",
                "x5t": v.x5t,
                "attributes": _certificate_attributes(v),
                "tags": dict(v.tags) or None,
            }
        )

    def _get_certificate(self, name: str, version: str) -> Response:
        try:
            stored = self.vault.certificate(name, version or None)
        except KeyError:
            raise HttpError(_certificate_not_found(f"{name}/{version}" if version else name)) from None
        return _ok(self._bundle(stored, with_policy=not version))

    def _get_deleted_certificate(self, name: str) -> Response:
        try:
            deleted = self.vault.deleted_certificate(name)
        except KeyError:
            raise HttpError(_error(404, "CertificateNotFound", f"Deleted Certificate not found: {name}")) from None
        return _ok(self._deleted_bundle(deleted))

    def _deleted_bundle(self, deleted: DeletedCertificate) -> dict[str, Any]:
        """A DeletedCertificateBundle: the certificate's latest version as it was, and when it goes for good."""
        bundle = self._bundle(deleted.latest, with_policy=False)
        bundle["policy"] = {"id": f"{self.vault.url}/certificates/{deleted.name}/policy", **deleted.policy}
        return {
            "recoveryId": f"{self.vault.url}/deletedcertificates/{deleted.name}",
            "deletedDate": deleted.deleted,
            "scheduledPurgeDate": deleted.scheduled_purge,
            **bundle,
        }

    def _import_certificate(self, request: Request, name: str) -> Response:
        body = parse_json_object(request.body)
        if body is None or not isinstance(body.get("value"), str):
            raise HttpError(
                _error(400, "BadParameter", "The request body must be a JSON object with a string 'value'.")
            )
        policy = _object(body, "policy")
        content_type = _object(policy, "secret_props").get("contentType") or PKCS12
        if content_type not in CONTENT_TYPES:
            raise HttpError(
                _error(400, "BadParameter", f"Unsupported contentType {content_type!r}; use {PKCS12} or {PEM}.")
            )
        attributes = _object(body, "attributes")
        tags = _object(body, "tags") or None
        password = body.get("pwd") if isinstance(body.get("pwd"), str) else None
        try:
            material = _decode_import(body["value"], content_type, password)
            stored = self.vault.add_certificate_version(
                name,
                material,
                content_type,
                enabled=attributes.get("enabled", True) is not False,
                tags=tags,
                policy=policy,
            )
        except DeletedButRecoverable as error:
            body = {
                "error": {
                    "code": "Conflict",
                    "message": str(error),
                    "innererror": {"code": "ObjectIsDeletedButRecoverable"},
                }
            }
            raise HttpError(Response.json(409, body, _headers())) from None
        except (CertificateFormatError, ValueError) as error:
            raise HttpError(
                _error(400, "BadParameter", f"The specified certificate content is invalid: {error}")
            ) from None
        return _ok(self._bundle(stored, with_policy=True))

    def _bundle(self, stored: CertificateVersion, *, with_policy: bool) -> dict[str, Any]:
        base, name, version = self.vault.url, stored.name, stored.version
        bundle: dict[str, Any] = {
            "id": f"{base}/certificates/{name}/{version}",
            "kid": f"{base}/keys/{name}/{version}",
            "sid": f"{base}/secrets/{name}/{version}",
            "x5t": stored.x5t,
            "cer": stored.cer,
            "attributes": _certificate_attributes(stored),
        }
        if stored.tags:
            bundle["tags"] = dict(stored.tags)
        if with_policy:
            bundle["policy"] = {"id": f"{base}/certificates/{name}/policy", **self.vault.policy(name)}
        return bundle

    # -- secrets ---------------------------------------------------------------------------------

    def _get_secret(self, name: str, version: str) -> Response:
        try:
            stored = self.vault.secret(name, version or None)
        except KeyError:
            raise HttpError(_secret_not_found(f"{name}/{version}" if version else name)) from None
        if not stored.enabled:
            raise HttpError(
                Response.json(
                    403,
                    {
                        "error": {
                            "code": "Forbidden",
                            "message": "Operation get is not allowed on a disabled secret.",
                            "innererror": {"code": "SecretDisabled"},
                        }
                    },
                    _headers(),
                )
            )
        return _ok(self._secret_bundle(stored, with_value=True))

    def _list_secret_versions(self, request: Request, name: str) -> Response:
        try:
            versions: Sequence[CertificateVersion | SecretVersion] = self.vault.secret_versions(name)
        except KeyError:
            raise HttpError(_secret_not_found(name)) from None
        ordered = sorted(versions, key=lambda v: v.version)
        return self._page(request, ordered, lambda v: self._secret_bundle(v, with_value=False))

    def _secret_bundle(self, stored: CertificateVersion | SecretVersion, *, with_value: bool) -> dict[str, Any]:
        base, name, version = self.vault.url, stored.name, stored.version
        body: dict[str, Any] = {}
        if with_value:
            body["value"] = stored.secret_value if isinstance(stored, CertificateVersion) else stored.value
        body["id"] = f"{base}/secrets/{name}/{version}"
        if isinstance(stored, CertificateVersion):
            body.update(
                contentType=stored.content_type,
                managed=True,
                attributes=_certificate_attributes(stored),
                kid=f"{base}/keys/{name}/{version}" if with_value else None,
            )
        else:
            body.update(
                contentType=stored.content_type,
                attributes={
                    "enabled": stored.enabled,
                    "created": stored.created,
                    "updated": stored.updated,
                    **RECOVERY,
                },
            )
        body["tags"] = dict(stored.tags) or None
        return _without_none(body)

    # -- paging ----------------------------------------------------------------------------------

    def _page(self, request: Request, items: Sequence[T], render: Callable[[T], dict[str, Any]]) -> Response:
        """One page of `items`; only the page's items are rendered (a vault can list thousands)."""
        query = request.query
        offset = _skiptoken_offset(query.get("$skiptoken"))
        size = self._page_size()
        if "maxresults" in query:
            try:
                maxresults = int(query["maxresults"])
            except ValueError:
                maxresults = 0
            if not 1 <= maxresults <= 25:
                raise HttpError(_error(400, "BadParameter", "maxresults must be between 1 and 25."))
            size = min(size, maxresults)
        page = [render(item) for item in items[offset : offset + size]]
        next_link = None
        if offset + size < len(items):
            next_link = (
                f"{self.vault.url}{request.path.rstrip('/')}?api-version={query.get('api-version', '')}"
                f"&$skiptoken={_skiptoken(offset + size)}&maxresults={size}"
            )
        return _ok({"value": page, "nextLink": next_link})


def _decode_import(value: str, content_type: str, password: str | None) -> CertificateMaterial:
    """``value`` is base64 of a PFX, or PEM text (or base64 of it, as the Python SDK sends)."""
    if content_type == PEM and value.lstrip().startswith("-----BEGIN"):
        return load_pem(value.encode())
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CertificateFormatError("'value' is neither PEM text nor base64") from None
    if content_type == PEM:
        if b"-----BEGIN" not in data:
            raise CertificateFormatError("the content type is application/x-pem-file but the value is not PEM")
        return load_pem(data)
    return load_pkcs12(data, password)


def _object(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    return value if isinstance(value, dict) else {}


def _certificate_attributes(stored: CertificateVersion) -> dict[str, Any]:
    return {
        "enabled": stored.enabled,
        "nbf": stored.nbf,
        "exp": stored.exp,
        "created": stored.created,
        "updated": stored.updated,
        **RECOVERY,
    }


def _skiptoken(offset: int) -> str:
    # Base64url without padding: survives the SDK's parse_qs + quote round trip unchanged.
    return base64.urlsafe_b64encode(json.dumps({"NextMarker": offset}).encode()).rstrip(b"=").decode()


def _skiptoken_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        marker = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["NextMarker"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise HttpError(_error(400, "BadParameter", "Invalid $skiptoken.")) from None
    if not isinstance(marker, int) or marker < 0:
        raise HttpError(_error(400, "BadParameter", "Invalid $skiptoken."))
    return marker


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _headers() -> dict[str, str]:
    return {
        "Cache-Control": "no-cache",
        "x-ms-request-id": request_id(),
        "x-ms-keyvault-region": "emulated",
        "x-ms-keyvault-service-version": "1.9.0.0-emulated",
        "X-Content-Type-Options": "nosniff",
    }


def _ok(payload: Any) -> Response:
    return Response.json(200, payload, _headers())


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, {"error": {"code": code, "message": message}}, {**_headers(), **(headers or {})})


def _certificate_not_found(name: str) -> Response:
    message = f"A certificate with (name/id) {name} was not found in this key vault. " + _NOT_FOUND_HELP.format(
        kind="certificate"
    )
    return _error(404, "CertificateNotFound", message)


def _secret_not_found(name: str) -> Response:
    message = f"A secret with (name/id) {name} was not found in this key vault. " + _NOT_FOUND_HELP.format(
        kind="secret"
    )
    return _error(404, "SecretNotFound", message)
