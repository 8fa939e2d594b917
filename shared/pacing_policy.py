"""The pacer at the edge: an azure-core pipeline policy on every Key Vault and ARM client.

Installed as a *per-retry* policy, so it sits inside the SDK's retry policy and sees every
request that goes out, retries included: each takes a token of its limit (``shared.pacing``)
before it is sent, and each answer's limit headers feed the bucket:

- ARM: ``x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}`` (the tokens left in the
  subscription's bucket for this principal) on every answer, ``Retry-After`` on a 429;
- Key Vault: no remaining count; ``Retry-After`` on a 429.

The pacer owns 429s: while the run has time, a throttled request waits for its Retry-After (and
its turn) and is sent again here, so the SDK's retry policy never sees a 429 and its three
retries, each sleeping on its own and waking with every other call, cannot run out while the
run still has budget. Once the run's deadline has passed, the call ends in
`shared.ports.Throttled` (not an SDK error: the retry policy lets it through). Every other
failure (5xx, a dropped connection) is still the SDK's to retry.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy

from .pacing import Answer, Kind, Pacer

_REMAINING: Final = {
    Kind.ARM_READS: "x-ms-ratelimit-remaining-subscription-reads",
    Kind.ARM_WRITES: "x-ms-ratelimit-remaining-subscription-writes",
    Kind.ARM_DELETES: "x-ms-ratelimit-remaining-subscription-deletes",
}


def arm_kind(method: str) -> Kind:
    """The bucket an ARM request counts against: reads (GET, HEAD), deletes, or writes (the rest)."""
    verb = method.upper()
    if verb in ("GET", "HEAD"):
        return Kind.ARM_READS
    return Kind.ARM_DELETES if verb == "DELETE" else Kind.ARM_WRITES


def keyvault_kind(_method: str) -> Kind:
    return Kind.KEYVAULT


def remaining(headers: Mapping[str, str], kind: Kind) -> int | None:
    name = _REMAINING.get(kind)
    value = headers.get(name) if name else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: ``retry-after-ms`` / ``x-ms-retry-after-ms``, else ``Retry-After`` (seconds or an HTTP date)."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if (value := headers.get(name)) is not None:
            try:
                return max(0.0, float(value) / 1000)
            except ValueError:
                pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class PacingPolicy(AsyncHTTPPolicy[Any, Any]):
    """Paces each request of one client by the pacer of its configuration."""

    def __init__(self, pacer: Pacer, kind_of: Callable[[str], Kind]) -> None:
        super().__init__()
        self._pacer = pacer
        self._kind_of = kind_of

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        kind = self._kind_of(request.http_request.method)

        async def send_once() -> PipelineResponse[Any, Any]:
            return await self.next.send(request)

        def read(response: PipelineResponse[Any, Any]) -> Answer:
            http = response.http_response
            headers = http.headers
            throttled = http.status_code == 429
            return Answer(http.status_code, remaining(headers, kind), retry_after(headers) if throttled else None)

        return await self._pacer.paced(kind, send_once, read)
