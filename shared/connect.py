"""Wires the Azure adapters: the credential, one HTTP connection pool, and the clients.

Managed identity where the platform provides one (Azure Functions sets ``IDENTITY_ENDPOINT``);
otherwise the Azure CLI's login, so ``az login`` is all a developer needs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import requests
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenCredential, TokenRequestOptions
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import AzureCliCredential, ManagedIdentityCredential

from shared.apim import Apim
from shared.keyvault import KeyVault
from shared.settings import ApimService, Settings

_READ_TIMEOUT_SECONDS = 60


def make_credential(settings: Settings, environ: Mapping[str, str]) -> TokenCredential:
    credential: ManagedIdentityCredential | AzureCliCredential
    if environ.get("IDENTITY_ENDPOINT") or environ.get("MSI_ENDPOINT"):
        # Passed explicitly: with a user-assigned identity, the system-assigned one must not be picked by accident.
        credential = (
            ManagedIdentityCredential(client_id=settings.client_id)
            if settings.client_id
            else ManagedIdentityCredential()
        )
    else:
        credential = AzureCliCredential()
    return OneFetchPerScope(credential)


class OneFetchPerScope:
    """A credential that fetches one token per scope however many calls want it at once.

    Every SDK client's authentication policy asks the credential on its first call; calls started
    together on fresh clients would each miss the credential's cache and fetch a token of their
    own (up to MAX_CONCURRENCY identity requests). Serialising the asks of one scope lets the
    first fetch and the others read the credential's cache. Asks are rare (each client's policy
    keeps the token until it nears expiry), so the lock is never contended in steady state.
    """

    def __init__(self, credential: ManagedIdentityCredential | AzureCliCredential) -> None:
        self._credential = credential
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, ...], threading.Lock] = {}

    def _lock(self, scopes: tuple[str, ...]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(scopes, threading.Lock())

    def get_token(
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None, **kwargs: Any
    ) -> AccessToken:
        with self._lock(scopes):
            token: AccessToken = self._credential.get_token(*scopes, claims=claims, tenant_id=tenant_id, **kwargs)
        return token

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        with self._lock(scopes):
            info: AccessTokenInfo = self._credential.get_token_info(*scopes, options=options)
        return info

    def close(self) -> None:
        self._credential.close()

    def __enter__(self) -> OneFetchPerScope:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


def make_transport(settings: Settings) -> RequestsTransport:
    """One HTTP transport (and connection pool) shared by every client of a configuration."""
    session = requests.Session()
    # One pooled connection per concurrent call, so connections are reused rather than discarded.
    pool_size = max(10, settings.max_concurrency)
    session.mount("https://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size))
    return RequestsTransport(session=session, session_owner=False)


class Clients:
    """The adapters for one configuration, sharing a credential (and its token cache) and a connection pool."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.credential = make_credential(settings, environ)
        self._transport = make_transport(settings)
        self._options = {"transport": self._transport, "read_timeout": _READ_TIMEOUT_SECONDS}
        self._lock = threading.Lock()
        self._vaults: dict[str, KeyVault] = {}
        self._services: dict[ApimService, Apim] = {}

    def vault(self, vault_url: str) -> KeyVault:
        with self._lock:  # asked for from worker threads: one client (and one auth challenge) per vault
            if vault_url not in self._vaults:
                self._vaults[vault_url] = KeyVault(vault_url, self.credential, **self._options)
            return self._vaults[vault_url]

    def apim(self, service: ApimService) -> Apim:
        with self._lock:
            if service not in self._services:
                self._services[service] = Apim(
                    service,
                    self.credential,
                    arm_endpoint=self.settings.arm_endpoint,
                    credential_scope=self.settings.cloud.arm_scope,
                    **self._options,
                )
            return self._services[service]

    def close(self) -> None:
        for service in self._services.values():
            service.close()
        if self._transport.session is not None:
            self._transport.session.close()  # not the transport's to close: every client shares it


@lru_cache(maxsize=4)
def clients_for(settings: Settings) -> Clients:
    """Clients reused across invocations of a warm worker: tokens and connections survive."""
    return Clients(settings, os.environ)
