"""Wires the Azure adapters: the credential, one HTTP connection pool, and the clients.

Managed identity where the platform provides one (Azure Functions sets ``IDENTITY_ENDPOINT``);
otherwise the Azure CLI's login, so ``az login`` is all a developer needs.

The clients are the SDK's asynchronous ones over aiohttp: the functions are coroutines on the
Functions worker's event loop, and a call in flight costs a pending coroutine, not a thread.
An aiohttp session belongs to the event loop it was made on, so the clients of a configuration
are kept per loop (the Functions worker runs every invocation on one loop for its lifetime).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import AzureCliCredential, ManagedIdentityCredential

from shared.apim import Apim
from shared.keyvault import KeyVault
from shared.settings import ApimService, Settings

_READ_TIMEOUT_SECONDS = 60
_CONFIGURATIONS_PER_LOOP = 4  # a worker sees a new configuration only when its app settings change


def make_credential(settings: Settings, environ: Mapping[str, str], transport: AioHttpTransport) -> OneFetchPerScope:
    credential: ManagedIdentityCredential | AzureCliCredential
    if environ.get("IDENTITY_ENDPOINT") or environ.get("MSI_ENDPOINT"):
        # Passed explicitly: with a user-assigned identity, the system-assigned one must not be picked by accident.
        credential = (
            ManagedIdentityCredential(client_id=settings.client_id, transport=transport)
            if settings.client_id
            else ManagedIdentityCredential(transport=transport)
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
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def get_token(
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None, **kwargs: Any
    ) -> AccessToken:
        async with self._locks.setdefault(scopes, asyncio.Lock()):
            token: AccessToken = await self._credential.get_token(*scopes, claims=claims, tenant_id=tenant_id, **kwargs)
        return token

    async def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        async with self._locks.setdefault(scopes, asyncio.Lock()):
            info: AccessTokenInfo = await self._credential.get_token_info(*scopes, options=options)
        return info

    async def close(self) -> None:
        await self._credential.close()

    async def __aenter__(self) -> OneFetchPerScope:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()


def trusted_cas(environ: Mapping[str, str]) -> ssl.SSLContext:
    """The TLS roots: ``REQUESTS_CA_BUNDLE`` when set (the Azure SDK's setting for a TLS-inspecting
    proxy's CA, or the emulator's), else certifi's bundle. Made once: loading a bundle costs milliseconds."""
    return ssl.create_default_context(cafile=environ.get("REQUESTS_CA_BUNDLE") or certifi.where())


def https_proxy(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy for `url`: ``HTTPS_PROXY`` unless ``NO_PROXY`` exempts its host.

    ``NO_PROXY`` is a comma-separated list of ``*``, host names and domain suffixes (``.example.com``
    or ``example.com`` both cover ``vault.example.com``), each optionally with ``:port``. Resolved
    once per client, not per request: aiohttp's ``trust_env`` re-reads the whole process environment
    on every request, which cost more CPU than the rest of a call's HTTP handling.
    """
    proxy = environ.get("https_proxy") or environ.get("HTTPS_PROXY")
    if not proxy:
        return None
    parts = urlsplit(url)
    host, port = (parts.hostname or "").lower(), str(parts.port or 443)
    for entry in (environ.get("no_proxy") or environ.get("NO_PROXY") or "").lower().split(","):
        name, _, entry_port = entry.strip().partition(":")
        name = name.lstrip(".")
        if name == "*" or (name and (host == name or host.endswith("." + name)) and entry_port in ("", port)):
            return None
    return proxy


def make_transport(settings: Settings, environ: Mapping[str, str]) -> AioHttpTransport:
    """One HTTP transport (and connection pool) shared by every client of a configuration."""
    # One pooled connection per concurrent call (and the identity endpoint's), so connections are reused.
    connector = aiohttp.TCPConnector(ssl=trusted_cas(environ), limit=settings.max_concurrency + 2)
    # The environment (proxies) is read once, by `https_proxy`; no .netrc: requests carry bearer tokens.
    session = aiohttp.ClientSession(connector=connector, trust_env=False)
    return AioHttpTransport(session=session, session_owner=False)


class Clients:
    """The adapters for one configuration, sharing a credential (and its token cache) and a connection pool.

    Made on the event loop that uses it.
    """

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self._environ = dict(environ)
        self._transport = make_transport(settings, environ)
        self.credential: AsyncTokenCredential = make_credential(settings, environ, self._transport)
        self._options = {"transport": self._transport, "read_timeout": _READ_TIMEOUT_SECONDS}
        self._vaults: dict[str, KeyVault] = {}
        self._services: dict[ApimService, Apim] = {}

    def vault(self, vault_url: str) -> KeyVault:
        # One client (and one auth challenge) per vault. Asked for on the event loop only: no lock needed.
        if vault_url not in self._vaults:
            self._vaults[vault_url] = KeyVault(vault_url, self.credential, **self._options_for(vault_url))
        return self._vaults[vault_url]

    def apim(self, service: ApimService) -> Apim:
        if service not in self._services:
            self._services[service] = Apim(
                service,
                self.credential,
                arm_endpoint=self.settings.arm_endpoint,
                credential_scope=self.settings.cloud.arm_scope,
                **self._options_for(self.settings.arm_endpoint),
            )
        return self._services[service]

    def _options_for(self, url: str) -> dict[str, Any]:
        proxy = https_proxy(url, self._environ)
        return {**self._options, **({"proxies": {"https": proxy}} if proxy else {})}

    async def close(self) -> None:
        for service in self._services.values():
            await service.close()
        for vault in self._vaults.values():
            await vault.close()
        await self.credential.close()
        if self._transport.session is not None:
            await self._transport.session.close()  # not the transport's to close: every client shares it


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OrderedDict[Settings, Clients]] = (
    weakref.WeakKeyDictionary()
)
_CLOSING: set[asyncio.Task[None]] = set()


def clients_for(settings: Settings) -> Clients:
    """Clients reused across invocations of a warm worker: tokens and connections survive.

    Call it on the event loop that will use the clients.
    """
    loop = asyncio.get_running_loop()
    cached = _BY_LOOP.setdefault(loop, OrderedDict())
    if settings in cached:
        cached.move_to_end(settings)
        return cached[settings]
    clients = cached[settings] = Clients(settings, os.environ)
    while len(cached) > _CONFIGURATIONS_PER_LOOP:
        _, retired = cached.popitem(last=False)
        closing = loop.create_task(retired.close())  # kept referenced until done, as asyncio requires
        _CLOSING.add(closing)
        closing.add_done_callback(_CLOSING.discard)
    return clients


async def close_clients() -> None:
    """Close the clients made on the running loop (a process that owns its loop, like the CLI, before exiting)."""
    cached = _BY_LOOP.pop(asyncio.get_running_loop(), OrderedDict())
    for clients in cached.values():
        await clients.close()
    await asyncio.gather(*_CLOSING)
