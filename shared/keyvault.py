"""Key Vault adapter (`shared.ports.VaultPort`): the SDK's certificate and secret reads, as domain values.

Reads only. A secret value is returned to the caller and never logged, kept or repeated in errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.core.rest import HttpRequest
from azure.keyvault.certificates.aio import CertificateClient
from azure.keyvault.secrets.aio import SecretClient

from .azure_errors import translated
from .pacing import Pacer
from .pacing_policy import PacingPolicy, keyvault_kind
from .ports import AzureCallError, NotFoundError, Secret, VersionInfo


class _FirstCallAlone:
    """Lets a client's first call through alone; every later call goes straight on.

    A Key Vault SDK client learns the vault's authentication challenge from a bodiless request
    answered 401 and caches it. Calls that start together on a fresh client would each send that
    request (one per call in flight, up to MAX_CONCURRENCY); letting the first finish before the
    others start keeps it to one per client. Only the first calls of a client's life ever wait,
    and they wait for a call in progress, never for a queued task: no deadlock. Once the first has
    gone through, those that waited for it go on together, not one by one.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._done = False

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        if not self._done:
            await self._lock.acquire()
            if not self._done:  # still the first: go alone
                try:
                    yield
                    self._done = True  # only once a call has gone through: after a failure the next goes alone
                finally:
                    self._lock.release()
                return
            self._lock.release()
        yield

    async def lead(self, call: Callable[[], Awaitable[bool]]) -> None:
        """Runs `call` as the client's first call unless a call has gone through already; it counts as
        gone through when it returns True."""
        if self._done:
            return
        async with self._lock:
            if not self._done:
                self._done = await call()


_OK: Final = 200
_NOT_FOUND: Final = 404
_PRIMER: Final = "trustsync_challenge_only"  # a pipeline option: ends up as a keyword of the transport's send


class _ChallengeLearned(Exception):  # not an error: the primer's way out of the pipeline
    """Raised instead of sending a primer's authorized request: its challenge is learned, and it has
    nothing to read."""


class _PrimingTransport(AsyncHttpTransport[Any, Any]):
    """The shared transport, except that a primer (a request sent with the `_PRIMER` option) goes out
    only unauthorized: the SDK's challenge policy sends it without a token, learns the vault's
    challenge from the 401 and gets the token, then sends it again authorized, which is where it
    stops here. So a client learns its challenge without a request of its own beyond the challenge."""

    def __init__(self, inner: AsyncHttpTransport[Any, Any]) -> None:
        self._inner = inner

    async def send(self, request: Any, **kwargs: Any) -> Any:
        if kwargs.pop(_PRIMER, False) and "Authorization" in request.headers:
            raise _ChallengeLearned
        return await self._inner.send(request, **kwargs)

    async def open(self) -> None:
        await self._inner.open()

    async def close(self) -> None:
        await self._inner.close()  # the shared session is its owner's to close: the inner transport leaves it

    async def __aenter__(self) -> _PrimingTransport:
        await self.open()
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()


def vault_scope(vault_url: str) -> str:
    """The token scope Key Vault's challenge names for `vault_url`: its host without the vault's own
    label (``https://contoso.vault.azure.net`` → ``https://vault.azure.net/.default``; the SDK accepts
    a challenge only for a resource whose host the vault's ends with). A guess made before the
    challenge arrives: if the challenge names another, the SDK fetches that one."""
    parts = urlsplit(vault_url)
    host = (parts.hostname or "").partition(".")[2]
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/.default"


class KeyVault:
    def __init__(
        self, vault_url: str, credential: AsyncTokenCredential, *, pacer: Pacer | None = None, **client_options: Any
    ) -> None:
        self.vault_url = vault_url

        def paced() -> dict[str, Any]:
            # A policy belongs to one pipeline: each client gets its own, both feeding the vault's bucket.
            return {"per_retry_policies": [PacingPolicy(pacer, keyvault_kind)]} if pacer is not None else {}

        transport = client_options.pop("transport", None)
        if transport is not None:
            client_options["transport"] = _PrimingTransport(transport)
        self._primable = transport is not None
        self._credential = credential
        self._certificates = CertificateClient(vault_url, credential, **paced(), **client_options)
        self._secrets = SecretClient(vault_url, credential, **paced(), **client_options)
        self._certificates_first = _FirstCallAlone()
        self._secrets_first = _FirstCallAlone()

    async def prime(self) -> None:
        """Learns both clients' authentication challenges and fetches the vault's token, all at once,
        ahead of the first reads (a new worker's, which otherwise meet the certificates client's
        challenge, then the token, then the secrets client's challenge, one round trip each, in
        turn). The same requests as without priming: one challenge per client, one token. Best
        effort: a failure leaves the first real call of the client to meet its challenge alone, as
        without priming, and to report what goes wrong."""
        if not self._primable:
            return

        async def token() -> None:
            # The options the SDK's challenge policy asks with, so that it finds this token cached. A
            # failure is the first real call's to meet and report.
            with contextlib.suppress(Exception):
                await self._credential.get_token_info(vault_scope(self.vault_url), options={"enable_cae": True})  # type: ignore[attr-defined]

        await asyncio.gather(
            token(),
            self._certificates_first.lead(
                lambda: _primed(self._certificates.send_request(HttpRequest("GET", "/certificates"), **{_PRIMER: True}))
            ),
            self._secrets_first.lead(
                lambda: _primed(self._secrets.send_request(HttpRequest("GET", "/secrets"), **{_PRIMER: True}))
            ),
        )

    async def certificate_names(self) -> AsyncIterator[list[str]]:
        """Each page of certificate names as it arrives, so that the reads that depend on them start
        while the next page is still being fetched."""
        what = f"list certificates of {self.vault_url}"
        pages = self._certificates.list_properties_of_certificates().by_page()
        with translated(what):
            async with self._certificates_first():
                first = await anext(pages, None)  # the first page's request: maybe the client's first call
        if first is None:
            return
        with translated(what):
            names = [props.name async for props in first if props.name]
        yield names
        while True:
            with translated(what):
                page = await anext(pages, None)
                names = [props.name async for props in page if props.name] if page is not None else []
            if page is None:
                return
            yield names

    async def versions(self, name: str) -> list[VersionInfo]:
        what = f"list versions of certificate {name}"
        listed: list[Mapping[str, Any]] = []
        try:
            async with self._certificates_first():
                with translated(what):
                    page = await _get_json(
                        self._certificates.send_request, f"/certificates/{quote(name, safe='')}/versions"
                    )
                    listed.extend(page.get("value") or ())
                    while next_link := page.get("nextLink"):
                        page = await _get_json(self._certificates.send_request, next_link)
                        listed.extend(page.get("value") or ())
        except NotFoundError:
            listed = []
        found = [info for item in listed if (info := _version_info(item)) is not None]
        if not found:
            raise NotFoundError(f"certificate {name} does not exist in {self.vault_url}")
        return found

    async def deleted(self, name: str) -> bool | None:
        try:
            async with self._certificates_first():
                with translated(f"read deleted certificate {name}"):
                    await self._certificates.get_deleted_certificate(name)
        except NotFoundError:
            return False
        except AzureCallError as error:
            if error.status == 403:  # the identity may not read deleted certificates: it cannot tell
                return None
            raise
        return True

    async def secret(self, name: str, version: str) -> Secret:
        return await self._secret(name, version, f"the secret of certificate {name} version {version}")

    async def bundle(self, name: str) -> Secret:
        """A trust bundle: the current version of a plain secret. Its value is CA certificates, but it is
        handled as any secret value: returned, never logged."""
        return await self._secret(name, "", f"trust bundle secret {name}")

    async def _secret(self, name: str, version: str, what: str) -> Secret:
        """A secret's value and content type; `version` "" is the current one."""
        async with self._secrets_first():
            with translated(f"read {what}"):
                body = await _get_json(
                    self._secrets.send_request, f"/secrets/{quote(name, safe='')}/{quote(version, safe='')}"
                )
        value, content_type = body.get("value"), body.get("contentType")
        if not isinstance(value, str):
            raise AzureCallError(f"{what} has no value")
        return Secret(value, content_type if isinstance(content_type, str) else None)

    async def close(self) -> None:
        await self._certificates.close()
        await self._secrets.close()


async def _get_json(send: Callable[[HttpRequest], Awaitable[Any]], url: str) -> Mapping[str, Any]:
    """A GET through a client's pipeline (its challenge, token, pacing and retries), the JSON answer
    read here: the SDK's models of a version list or a secret cost about as much CPU as the rest of
    the call, and an audit makes two such calls per certificate. Errors as the SDK raises them
    (`translated` turns them into the domain's)."""
    response = await send(HttpRequest("GET", url))
    if response.status_code == _NOT_FOUND:
        raise ResourceNotFoundError(response=response)
    if response.status_code != _OK:
        raise HttpResponseError(response=response)
    body = response.json()
    if not isinstance(body, Mapping):
        raise HttpResponseError(message="Key Vault answered something other than a JSON object", response=response)
    return body


def _version_info(item: Mapping[str, Any]) -> VersionInfo | None:
    """A version list's item as the SDK's CertificateProperties would read it (None: no version in its id)."""
    segments = [segment for segment in urlsplit(str(item.get("id") or "")).path.split("/") if segment]
    if len(segments) != 3:
        return None
    attributes = item.get("attributes") or {}
    thumbprint = item.get("x5t")
    return VersionInfo(
        version=segments[2],
        enabled=bool(attributes.get("enabled")),
        created=_unix_time(attributes.get("created")),
        expires=_unix_time(attributes.get("exp")),
        leaf_thumbprint=_base64url(thumbprint).hex().upper() if isinstance(thumbprint, str) and thumbprint else None,
        not_before=_unix_time(attributes.get("nbf")),
        updated=_unix_time(attributes.get("updated")),
    )


def _unix_time(value: Any) -> datetime | None:
    return (
        datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) and not isinstance(value, bool) else None
    )


def _base64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _primed(sent: Awaitable[Any]) -> bool:
    """Whether a primer learned its client's challenge (it then ends in `_ChallengeLearned`)."""
    try:
        await sent
    except _ChallengeLearned:
        return True
    except Exception:  # best effort: the first real call meets the challenge and reports
        return False
    return False  # answered without a challenge (a token was already cached): nothing learned
