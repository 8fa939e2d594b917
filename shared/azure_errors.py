"""The Azure SDK's exceptions, translated at the edge into the engine's domain errors (`shared.ports`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from .ports import AzureCallError, CredentialUnavailableError, NotFoundError, Throttled

# ARM's answer when a cloud's Resource Manager does not offer an api-version for a resource type.
_API_VERSION_NOT_OFFERED = "NoRegisteredProviderFound"
_SUPPORTED_VERSIONS = re.compile(r"supported api-versions are '([^']*)'", re.IGNORECASE)
_NO_CREDENTIAL = (
    "no Azure credential: in Azure, enable the Function App's managed identity (and set AZURE_CLIENT_ID for a "
    "user-assigned one); locally, run `az login`"
)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """SDK errors → domain errors naming the call. Only the service's error code and message are
    kept: never a request or response body, which could hold a secret."""
    try:
        yield
    except Throttled as error:  # the pacer's, from inside the SDK call: name the call too
        raise Throttled(f"{what}: {error}") from None
    except ResourceNotFoundError as error:
        raise NotFoundError(f"{what}: not found ({_code(error)})", code=_code(error)) from None
    except ClientAuthenticationError as error:
        if error.status_code is None:  # the credential failed before any service answered
            # One line for the whole run, whichever call met it first: the fix is the same for all.
            raise CredentialUnavailableError(f"{_NO_CREDENTIAL} ({_first_line(error.message)})") from None
        raise _http_error(what, error) from None
    except HttpResponseError as error:
        raise _http_error(what, error) from None
    except AzureError as error:
        raise AzureCallError(f"{what}: {type(error).__name__}: {_first_line(error.message)}") from None


def _http_error(what: str, error: HttpResponseError) -> AzureCallError:
    code = _code(error)
    message = _message(error)
    if code == _API_VERSION_NOT_OFFERED:
        # One line for the whole run, whichever call met it first: every ARM call would say the same.
        offered = _SUPPORTED_VERSIONS.search(message)
        versions = offered.group(1) if offered else "none listed"
        message = f"this cloud's Resource Manager does not offer the api-version the app uses; it offers: {versions}"
        return AzureCallError(f"HTTP {error.status_code} {code}: {message}", status=error.status_code, code=code)
    return AzureCallError(f"{what}: HTTP {error.status_code} {code}: {message}", status=error.status_code, code=code)


def _code(error: HttpResponseError) -> str:
    odata = error.error
    if odata is None:
        return "error"
    inner = getattr(odata, "innererror", None)
    if isinstance(inner, dict) and inner.get("code"):
        return f"{odata.code}/{inner['code']}"
    return odata.code or "error"


def _message(error: HttpResponseError) -> str:
    return (error.error.message if error.error is not None else None) or error.reason or ""


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no details"
