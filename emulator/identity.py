"""The App Service / Functions managed-identity endpoint (IDENTITY_ENDPOINT + IDENTITY_HEADER).

Tokens are opaque random strings; the emulator remembers each one's audience (the ``resource``
asked for) and client id, which is how Key Vault and ARM later check the audience.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .operations import IDENTITY_TOKEN, IDENTITY_UNROUTED
from .server import Call
from .wire import Request, Response, format_retry_after, request_id

API_VERSION = "2019-08-01"
TOKEN_PATH = "/msi/token"
SYSTEM_ASSIGNED_CLIENT_ID = "5e29463d-71da-4fe0-8e69-999b57db23b0"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    resource: str  # the audience
    client_id: str  # the identity's client id (the system-assigned one when none was asked for)
    requested_client_id: str | None  # None: system-assigned identity
    expires_on: int

    def has_audience(self, *accepted: str) -> bool:
        return self.resource.rstrip("/") in {a.rstrip("/") for a in accepted}


class TokenIssuer:
    def __init__(self, lifetime: int, user_assigned_client_ids: Iterable[str] | None) -> None:
        self.lifetime = lifetime
        self._known = None if user_assigned_client_ids is None else {c.lower() for c in user_assigned_client_ids}
        self._lock = threading.Lock()
        self._tokens: dict[str, IssuedToken] = {}

    def issue(self, resource: str, client_id: str | None) -> IssuedToken:
        token = IssuedToken(
            access_token=secrets.token_urlsafe(32),
            resource=resource,
            client_id=client_id or SYSTEM_ASSIGNED_CLIENT_ID,
            requested_client_id=client_id,
            expires_on=int(time.time()) + self.lifetime,
        )
        with self._lock:
            self._tokens[token.access_token] = token
        return token

    def lookup(self, access_token: str | None) -> IssuedToken | None:
        if access_token is None:
            return None
        with self._lock:
            return self._tokens.get(access_token)

    def knows(self, client_id: str) -> bool:
        return self._known is None or client_id.lower() in self._known

    @property
    def issued(self) -> list[IssuedToken]:
        with self._lock:
            return list(self._tokens.values())


class IdentityEndpoint:
    def __init__(self, issuer: TokenIssuer, secret_header: str) -> None:
        self.issuer = issuer
        self.secret_header = secret_header

    def resolve(self, request: Request) -> Call:
        query = request.query
        if request.path.rstrip("/") != TOKEN_PATH or request.method != "GET":
            return Call(IDENTITY_UNROUTED, lambda: _error(404, "Not found."), _fault)
        return Call(
            IDENTITY_TOKEN,
            lambda: self._token(request),
            _fault,
            client_id=query.get("client_id"),
            audience=query.get("resource"),
        )

    def _token(self, request: Request) -> Response:
        query = request.query
        sent_secret = request.header("x-identity-header")
        if sent_secret is None:
            return _error(400, "Missing required header X-IDENTITY-HEADER.")
        if not secrets.compare_digest(sent_secret, self.secret_header):
            return _error(401, "The X-IDENTITY-HEADER header does not match this app's identity header.")
        if query.get("api-version") != API_VERSION:
            return _error(
                400, f"Unsupported api-version {query.get('api-version')!r}; this endpoint speaks {API_VERSION}."
            )
        resource = query.get("resource", "")
        if not resource:
            return _error(400, "Required query variable 'resource' is missing.")
        if "mi_res_id" in query or "object_id" in query:
            return _error(400, "The emulator knows user-assigned identities by client_id only.")
        client_id = query.get("client_id") or None
        if client_id is not None and not self.issuer.knows(client_id):
            return _error(400, "Unable to load the proper Managed Identity.")
        token = self.issuer.issue(resource, client_id)
        return Response.json(
            200,
            {
                "access_token": token.access_token,
                "expires_on": str(token.expires_on),
                "resource": token.resource,
                "token_type": "Bearer",
                "client_id": token.client_id,
            },
        )


def _error(status: int, message: str) -> Response:
    # App Service's identity endpoint answers errors as {"statusCode", "message", "correlationId"}.
    return Response.json(status, {"statusCode": status, "message": message, "correlationId": request_id()})


def _fault(status: int, retry_after: float | None) -> Response:
    response = _error(status, f"Injected fault: HTTP {status}.")
    if retry_after is not None:
        response.headers["Retry-After"] = format_retry_after(retry_after)
    return response
