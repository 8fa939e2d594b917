"""Wires the Azure adapters: the credential, one HTTP connection pool, and the clients.

Managed identity where the platform provides one (Azure Functions sets ``IDENTITY_ENDPOINT``);
otherwise the Azure CLI's login, so ``az login`` is all a developer needs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from functools import lru_cache

import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import AzureCliCredential, ManagedIdentityCredential

from shared.apim import Apim
from shared.keyvault import KeyVault
from shared.settings import ApimService, Settings

_READ_TIMEOUT_SECONDS = 60


def make_credential(settings: Settings, environ: Mapping[str, str]) -> TokenCredential:
    if environ.get("IDENTITY_ENDPOINT") or environ.get("MSI_ENDPOINT"):
        # Passed explicitly: with a user-assigned identity, the system-assigned one must not be picked by accident.
        if settings.client_id:
            return ManagedIdentityCredential(client_id=settings.client_id)
        return ManagedIdentityCredential()
    return AzureCliCredential()


class Clients:
    """The adapters for one configuration, sharing a credential (and its token cache) and a connection pool."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.credential = make_credential(settings, environ)
        session = requests.Session()
        # One pooled connection per concurrent call, so connections are reused rather than discarded.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(10, settings.max_concurrency))
        session.mount("https://", adapter)
        self._options = {
            "transport": RequestsTransport(session=session, session_owner=False),
            "read_timeout": _READ_TIMEOUT_SECONDS,
        }
        self._session = session
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
        self._session.close()


@lru_cache(maxsize=4)
def clients_for(settings: Settings) -> Clients:
    """Clients reused across invocations of a warm worker: tokens and connections survive."""
    return Clients(settings, os.environ)
