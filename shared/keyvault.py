"""Key Vault adapter: translates certificate and secret reads into domain values.

Reads only. A secret value is returned to the caller and never logged, kept or repeated in errors.

The reads go through the SDK clients' own pipelines (`send_request`: the same challenge
authentication, retries honouring Retry-After, api-version and request ids as their typed
methods) and their JSON is read directly, without the SDK's model layer: that layer costs about
1 ms an item here (a 25-name page of the certificate list: 25 ms of CPU), and with many calls
in flight CPU is what bounds throughput.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

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
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.secrets import SecretClient

from shared.desired import VersionInfo
from shared.errors import AzureCallError, NotFoundError, translated

# What the SDK's generated operations map, before any other error status becomes an HttpResponseError.
_ERRORS = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}


@dataclass(frozen=True)
class SecretValue:
    value: str = field(repr=False)  # the PFX or PEM, private key included: never log it
    content_type: str | None


class _FirstCallAlone:
    """Lets a client's first call through alone; every later call goes straight on.

    A Key Vault SDK client learns the vault's authentication challenge from a bodiless request
    answered 401 and caches it. Calls that start together on a fresh client would each send that
    request (one per call in flight, up to MAX_CONCURRENCY); letting the first finish before the
    others start keeps it to one per client. Only the first calls of a client's life ever wait,
    and they wait for a call in progress, never for a queued task: no deadlock, even with one thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if self._done:
            yield
            return
        with self._lock:
            yield
            self._done = True  # only once a call has gone through: after a failure the next call goes alone too


class KeyVault:
    def __init__(self, vault_url: str, credential: TokenCredential, **client_options: Any) -> None:
        self.vault_url = vault_url
        self._certificates = CertificateClient(vault_url, credential, **client_options)
        self._secrets = SecretClient(vault_url, credential, **client_options)
        self._certificates_first = _FirstCallAlone()
        self._secrets_first = _FirstCallAlone()

    def certificate_names(self, each_page: Callable[[list[str]], None] | None = None) -> list[str]:
        """Every certificate's name. `each_page` is given each page's names as soon as it arrives, so
        that the reads that depend on them start while the next page is still being fetched."""
        names: list[str] = []
        pages = self._pages(self._certificates, f"{self.vault_url}/certificates", self._certificates_first)
        with translated(f"list certificates of {self.vault_url}"):
            for page in pages:
                found = [name for item in page if (name := _segment(item.get("id"), 2))]
                names.extend(found)
                if each_page is not None:
                    each_page(found)
        return names

    def versions(self, name: str) -> list[VersionInfo]:
        url = f"{self.vault_url}/certificates/{quote(name, safe='')}/versions"
        try:
            with translated(f"list versions of certificate {name}"):
                listed = [
                    item for page in self._pages(self._certificates, url, self._certificates_first) for item in page
                ]
        except NotFoundError:
            listed = []
        found = [
            VersionInfo(
                version=version,
                enabled=bool(attributes.get("enabled")),
                created=_timestamp(attributes.get("created")),
                expires=_timestamp(attributes.get("exp")),
                leaf_thumbprint=_thumbprint(item.get("x5t")),
                not_before=_timestamp(attributes.get("nbf")),
            )
            for item in listed
            if (version := _segment(item.get("id"), 3)) and isinstance(attributes := item.get("attributes") or {}, dict)
        ]
        if not found:
            raise NotFoundError(f"certificate {name} does not exist in {self.vault_url}", status=404)
        return found

    def secret(self, name: str, version: str) -> SecretValue:
        url = f"{self.vault_url}/secrets/{quote(name, safe='')}/{quote(version, safe='')}"
        with translated(f"read the secret of certificate {name} version {version}"), self._secrets_first():
            secret = _get(self._secrets, url)
        value = secret.get("value")
        if not isinstance(value, str):
            raise AzureCallError(f"the secret of certificate {name} version {version} has no value")
        content_type = secret.get("contentType")
        return SecretValue(value, content_type if isinstance(content_type, str) else None)

    @staticmethod
    def _pages(
        client: CertificateClient | SecretClient, url: str, first: _FirstCallAlone
    ) -> Iterator[list[dict[str, Any]]]:
        """The pages of a Key Vault list, following ``nextLink``; only the first page may be the client's first call."""
        with first():
            page = _get(client, url)
        while True:
            yield [item for item in page.get("value") or () if isinstance(item, dict)]
            next_link = page.get("nextLink")
            if not next_link:
                return
            page = _get(client, next_link)


def _get(client: CertificateClient | SecretClient, url: str) -> dict[str, Any]:
    """A GET through the client's pipeline (the client's api-version is added); errors raised as the SDK raises them."""
    response = client.send_request(HttpRequest("GET", url))
    if response.status_code != 200:
        map_error(status_code=response.status_code, response=response, error_map=_ERRORS)
        raise HttpResponseError(response=response)
    body = response.json()
    if not isinstance(body, dict):
        raise HttpResponseError(message="Key Vault answered with something other than a JSON object", response=response)
    return body


def _segment(identifier: object, index: int) -> str | None:
    """A segment of an object id's path: ``https://vault/certificates/NAME/VERSION`` → 2: NAME, 3: VERSION."""
    if not isinstance(identifier, str):
        return None
    segments = urlsplit(identifier).path.split("/")
    return segments[index] or None if len(segments) > index else None


def _timestamp(value: object) -> datetime | None:
    """Key Vault's attribute times are Unix seconds."""
    return (
        datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) and not isinstance(value, bool) else None
    )


def _thumbprint(x5t: object) -> str | None:
    """Key Vault's ``x5t`` (base64url SHA-1 of the certificate) as upper-case hex."""
    if not isinstance(x5t, str) or not x5t:
        return None
    try:
        return base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4)).hex().upper()
    except (binascii.Error, ValueError):
        return None
