"""Key Vault events from Event Grid: parsed defensively, then routed to a reconcile or ignored.

Pure: works on the envelope's plain fields (Event Grid or CloudEvents schema alike) and imports
nothing from ``azure.*``. Key Vault's ``data`` uses PascalCase keys; documentation samples carry
stray spaces in keys and values and give ``NBF``/``EXP`` as strings, so keys are matched without
regard to case or surrounding space.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .settings import Settings, is_keyvault_object_name, url_host

CERTIFICATE_NEW_VERSION_CREATED = "Microsoft.KeyVault.CertificateNewVersionCreated"
CERTIFICATE_NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
CERTIFICATE_EXPIRED = "Microsoft.KeyVault.CertificateExpired"
# A new version of a plain secret: a trust bundle's (TRUST_BUNDLES) is reconciled, any other ignored.
SECRET_NEW_VERSION_CREATED = "Microsoft.KeyVault.SecretNewVersionCreated"  # noqa: S105 - an event type
# A new version may need trust; an expiring or expired one may leave the desired set. Each leads
# to the same reconcile of the certificate's current state.
RECONCILED_EVENT_TYPES = frozenset({CERTIFICATE_NEW_VERSION_CREATED, CERTIFICATE_NEAR_EXPIRY, CERTIFICATE_EXPIRED})
_KEYVAULT_EVENT_PREFIX = "Microsoft.KeyVault."
_VERSION = re.compile(r"^[0-9a-zA-Z]{1,64}$")
_MAX_ID_LENGTH = 2048


class EventError(ValueError):
    """The event is malformed; the message names what is wrong."""


@dataclass(frozen=True)
class KeyVaultEvent:
    event_id: str
    event_type: str
    vault_host: str  # host[:port], lower case, no default port
    object_type: str
    object_name: str
    version: str | None
    expires: datetime | None  # the version's EXP, when the event carries one

    @property
    def is_expiry(self) -> bool:
        return self.event_type in (CERTIFICATE_NEAR_EXPIRY, CERTIFICATE_EXPIRED)


@dataclass(frozen=True)
class Reconcile:
    """Reconcile this bound certificate to Key Vault's current state."""

    certificate_name: str
    event: KeyVaultEvent


@dataclass(frozen=True)
class ReconcileBundle:
    """Reconcile the trust bundles: a new version of this TRUST_BUNDLES secret was created."""

    secret_name: str
    event: KeyVaultEvent


@dataclass(frozen=True)
class Ignore:
    reason: str


def parse_event(event_id: object, event_type: object, data: object) -> KeyVaultEvent:
    """A Key Vault certificate event out of an envelope's id, type and data."""
    if not isinstance(event_type, str) or not event_type.strip():
        raise EventError("event has no event type")
    if not isinstance(data, Mapping):
        raise EventError(f"{event_type} event data is {type(data).__name__}, not a JSON object")
    fields = {str(key).strip().lower(): value for key, value in data.items()}
    object_id = _text(fields, "id")
    if object_id is None:
        raise EventError(f"{event_type} event data has no Id")
    not_a_url = EventError(f"{event_type} event Id {object_id[:200]!r} is not a Key Vault object URL")
    if len(object_id) > _MAX_ID_LENGTH:
        raise not_a_url
    try:
        parts = urlsplit(object_id)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise not_a_url from None
    segments = [segment for segment in parts.path.split("/") if segment]
    if parts.scheme.lower() != "https" or not parts.hostname or len(segments) not in (2, 3):
        raise not_a_url
    collection, name = segments[0].lower(), segments[1]
    version = segments[2] if len(segments) == 3 else None
    implied_type = collection.removesuffix("s")
    object_type = _text(fields, "objecttype") or implied_type.capitalize()
    if object_type.lower() != implied_type:
        raise EventError(f"{event_type} event is about a {object_type} but its Id points into /{collection}/")
    object_name = _text(fields, "objectname") or name
    if object_name.lower() != name.lower():
        raise EventError(f"{event_type} event names object {object_name!r} but its Id points at {name!r}")
    stated_version = _text(fields, "version")
    if stated_version is not None and version is not None and stated_version.lower() != version.lower():
        raise EventError(f"{event_type} event names version {stated_version!r} but its Id points at {version!r}")
    if not is_keyvault_object_name(name):
        raise EventError(f"{event_type} event names an invalid Key Vault object {name!r}")
    version = version or stated_version
    if version is not None and not _VERSION.match(version):
        raise EventError(f"{event_type} event names an invalid version {version!r}")
    return KeyVaultEvent(
        event_id=str(event_id or ""),
        event_type=event_type.strip(),
        vault_host=url_host(parts.netloc),
        object_type=object_type,
        object_name=name,
        version=version,
        expires=_timestamp(fields, "exp"),
    )


def _text(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"event data field {key!r} is {type(value).__name__}, not text")
    return value.strip() or None


def _timestamp(fields: Mapping[str, Any], key: str) -> datetime | None:
    """Epoch seconds, as a number or (in documentation samples) a string; absent or unreadable: None."""
    value = fields.get(key)
    if isinstance(value, str):
        value = value.strip()
    try:
        seconds = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
        return None if seconds is None else datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def route(
    event_type: object, event_id: object, data: object, settings: Settings
) -> Reconcile | ReconcileBundle | Ignore:
    """What to do with one delivered event. Raises `EventError` for a malformed Key Vault event."""
    kind = event_type.strip() if isinstance(event_type, str) else None
    if kind == SECRET_NEW_VERSION_CREATED:
        return _route_secret(event_id, kind, data, settings)
    if kind not in RECONCILED_EVENT_TYPES:
        if kind is not None and kind.startswith(_KEYVAULT_EVENT_PREFIX):
            return Ignore(f"event type {kind} needs no action")
        return Ignore(f"event type {str(event_type)[:200]!r} is not a Key Vault certificate event")
    event = parse_event(event_id, event_type, data)
    if event.object_type.lower() != "certificate":
        raise EventError(f"{event.event_type} event is about a {event.object_type}, not a certificate")
    if unwatched := _unwatched_vault(event, settings):
        return unwatched
    if event.object_name not in settings.certificates:
        return Ignore(f"certificate {event.object_name} in {event.vault_host} is not in CERTIFICATE_NAMES")
    return Reconcile(event.object_name, event)


def _route_secret(event_id: object, event_type: str, data: object, settings: Settings) -> ReconcileBundle | Ignore:
    """Every secret's new version reaches the app (the subscription filters by type only, and a
    certificate's new version makes one of its backing secret too): only a bundle's matters."""
    if not settings.trust_bundles:
        # Not even parsed: with no bundle named, every secret's event is the subscription's noise.
        return Ignore(f"event type {event_type} needs no action: TRUST_BUNDLES names no secret")
    event = parse_event(event_id, event_type, data)
    if event.object_type.lower() != "secret":
        raise EventError(f"{event.event_type} event is about a {event.object_type}, not a secret")
    if unwatched := _unwatched_vault(event, settings):
        return unwatched
    named = next((name for name in settings.trust_bundles if name.lower() == event.object_name.lower()), None)
    if named is None:
        return Ignore(f"secret {event.object_name} in {event.vault_host} is not in TRUST_BUNDLES")
    return ReconcileBundle(named, event)


def _unwatched_vault(event: KeyVaultEvent, settings: Settings) -> Ignore | None:
    if event.vault_host != settings.vault_host:
        return Ignore(f"vault {event.vault_host} is not watched (KEYVAULT_URL is {settings.keyvault_url})")
    return None


@dataclass(frozen=True)
class QueuedEvent:
    """The envelope fields of an event that Event Grid wrote to a storage queue."""

    event_id: object
    event_type: object
    data: object


_MAX_QUEUE_MESSAGE_BYTES = 64 * 1024  # a storage queue message holds at most 64 KiB


def parse_queue_message(body: bytes | str) -> QueuedEvent:
    """The event in a storage-queue message Event Grid delivered (Event Grid or CloudEvents schema).

    Event Grid writes the event's JSON as the message text; host.json sets ``messageEncoding`` to
    ``none`` so the host hands it over as written. A message base64-encoded by another writer (the
    queue extension's default encoding) is read as well. Raises `EventError` when the message holds
    no single JSON event object.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    if len(raw) > _MAX_QUEUE_MESSAGE_BYTES:
        raise EventError(f"queue message of {len(raw)} bytes is larger than a storage queue message can be")
    document = _json(raw)
    if document is None:
        try:
            decoded = base64.b64decode(raw.strip(), validate=True)
        except ValueError:
            decoded = b""
        document = _json(decoded) if decoded else None
    if isinstance(document, list) and len(document) == 1:
        document = document[0]  # an array of one event, as Event Grid posts to a webhook
    if not isinstance(document, Mapping):
        raise EventError("queue message is not a JSON event object")
    if "eventType" in document:
        event_type, data = document.get("eventType"), document.get("data")
    elif "type" in document and "specversion" in document:
        event_type, data = document.get("type"), document.get("data")
    else:
        raise EventError("queue message is neither an Event Grid nor a CloudEvents event")
    return QueuedEvent(event_id=document.get("id"), event_type=event_type, data=data)


def _json(raw: bytes) -> object:
    """The JSON value in ``raw``; None when it is not JSON text."""
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
