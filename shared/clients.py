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
import contextlib
import contextvars
import ssl
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # stdlib, not in typeshed

import aiohttp
import certifi
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import AzureCliCredential, ManagedIdentityCredential

from .apim import Apim
from .keyvault import KeyVault
from .pacing import Pacer
from .settings import Settings

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
    """The proxy for `url`: ``HTTPS_PROXY`` unless ``NO_PROXY`` exempts its host (the standard
    library's rules: ``*``, host names and domain suffixes, optionally with ``:port``).

    Resolved once per client, not per request: aiohttp's ``trust_env`` re-reads the whole process
    environment on every request, which cost more CPU than the rest of a call's HTTP handling.
    """
    proxy = environ.get("https_proxy") or environ.get("HTTPS_PROXY")
    if not proxy:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY")
    parts = urlsplit(url)
    if no_proxy and proxy_bypass_environment(f"{parts.hostname}:{parts.port or 443}", {"no": no_proxy}):
        return None
    return proxy


def make_transport(settings: Settings, environ: Mapping[str, str]) -> AioHttpTransport:
    """One HTTP transport (and connection pool) shared by every client of a configuration."""
    # One pooled connection per concurrent call (MAX_CONCURRENCY to Key Vault and as many to ARM, and
    # the identity endpoint's), so connections are reused and one service's calls never wait for the other's.
    connector = aiohttp.TCPConnector(ssl=trusted_cas(environ), limit=2 * settings.max_concurrency + 2)
    # The environment (proxies) is read once, by `https_proxy`; no .netrc: requests carry bearer tokens.
    # No cookies either: Key Vault and ARM set none the app needs, and a real jar filters every request's.
    session = aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())
    return AioHttpTransport(session=session, session_owner=False)


class Clients:
    """The adapters for one configuration, sharing a credential (and its token cache), a connection
    pool and a pacer: the invocations running at once on a worker share the configuration's limits
    (ARM's buckets are per subscription and principal, Key Vault's per vault), so they share one
    estimate of them, and its priorities (an event's requests before a full run's).

    Made on the event loop that uses it.
    """

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self._transport = make_transport(settings, environ)
        self.credential = make_credential(settings, environ, self._transport)
        self.pacer = Pacer(settings.rate_limits)
        options: dict[str, Any] = {"transport": self._transport, "read_timeout": _READ_TIMEOUT_SECONDS}

        def proxied(url: str) -> dict[str, Any]:
            proxy = https_proxy(url, environ)
            return {**options, **({"proxies": {"https": proxy}} if proxy else {})}

        self.vault = KeyVault(
            settings.keyvault_url, self.credential, pacer=self.pacer, **proxied(settings.keyvault_url)
        )
        self.apim = Apim(
            settings.apim,
            self.credential,
            arm_endpoint=settings.arm_endpoint,
            credential_scope=settings.cloud.arm_scope,
            pacer=self.pacer,
            **proxied(settings.arm_endpoint),
        )
        # A new worker's first Key Vault reads would meet a challenge, fetch the token, read, then
        # meet the secrets client's challenge: priming both challenges and the token at once, as the
        # clients are made, takes two round trips off the invocation that made them. In a context of
        # its own: the primer is no call of the invocation's run (its pacing, its prepaid tokens).
        self._priming: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):  # made outside a running loop: the first calls meet the challenges
            self._priming = asyncio.get_running_loop().create_task(self.vault.prime(), context=contextvars.Context())

    async def close(self) -> None:
        if self._priming is not None and not self._priming.done():
            self._priming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._priming
        await self.apim.close()
        await self.vault.close()
        await self.credential.close()
        if self._transport.session is not None:
            await self._transport.session.close()  # not the transport's to close: every client shares it


class ClientPool:
    """The clients of a worker, kept across invocations so that tokens and connections survive.

    An aiohttp session belongs to the event loop it was made on, so clients are kept per loop (the
    Functions worker runs every invocation on one loop for its lifetime) and per configuration (a
    worker sees a new one only when its app settings change).
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OrderedDict[Settings, Clients]] = (
            weakref.WeakKeyDictionary()
        )
        self._closing: set[asyncio.Task[None]] = set()

    def clients_for(self, settings: Settings) -> Clients:
        """The clients for `settings` on the running loop (call it on the loop that will use them)."""
        loop = asyncio.get_running_loop()
        cached = self._by_loop.setdefault(loop, OrderedDict())
        if settings in cached:
            cached.move_to_end(settings)
            return cached[settings]
        clients = cached[settings] = Clients(settings, self._environ)
        while len(cached) > _CONFIGURATIONS_PER_LOOP:
            _, retired = cached.popitem(last=False)
            closing = loop.create_task(retired.close())  # kept referenced until done, as asyncio requires
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        return clients

    async def close(self) -> None:
        """Close the clients made on the running loop (a process that owns its loop, like the CLI, before exiting)."""
        cached = self._by_loop.pop(asyncio.get_running_loop(), OrderedDict())
        for clients in cached.values():
            await clients.close()
        await asyncio.gather(*self._closing)
