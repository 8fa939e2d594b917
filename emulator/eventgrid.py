"""Key Vault events as Event Grid delivers them, in Event Grid and CloudEvents 1.0 schemas.

Key Vault event ``data`` is PascalCase (Id, VaultName, ObjectType, ObjectName, Version, NBF, EXP)
with NBF/EXP as numbers; Event Grid schema deliveries are a JSON array of such events.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

CERTIFICATE_NEW_VERSION_CREATED: Final = "Microsoft.KeyVault.CertificateNewVersionCreated"
CERTIFICATE_NEAR_EXPIRY: Final = "Microsoft.KeyVault.CertificateNearExpiry"
CERTIFICATE_EXPIRED: Final = "Microsoft.KeyVault.CertificateExpired"
SECRET_NEW_VERSION_CREATED: Final = "Microsoft.KeyVault.SecretNewVersionCreated"
SUBSCRIPTION_VALIDATION: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"

Event = dict[str, Any]


def event_time(moment: datetime | None = None) -> str:
    """ISO 8601 with 7 fractional digits and Z, as Event Grid writes eventTime."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def vault_topic(subscription_id: str, resource_group: str, vault_name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.KeyVault/vaults/{vault_name}"


def keyvault_event(
    *,
    event_type: str,
    topic: str,
    vault_name: str,
    object_id: str,
    object_type: str,
    name: str,
    version: str,
    nbf: int | None,
    exp: int | None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> Event:
    """One Key Vault event in Event Grid schema (what a subscriber receives, one array element)."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "topic": topic,
        "subject": name,
        "eventType": event_type,
        "data": {
            "Id": object_id,
            "VaultName": vault_name,
            "ObjectType": object_type,
            "ObjectName": name,
            "Version": version,
            "NBF": nbf,
            "EXP": exp,
        },
        "dataVersion": "1",
        "metadataVersion": "1",
        "eventTime": event_time(time),
    }


def to_cloud_event(event: Mapping[str, Any]) -> Event:
    """The same event in CloudEvents 1.0 schema (delivered as application/cloudevents+json)."""
    return {
        "id": event["id"],
        "source": event["topic"],
        "subject": event["subject"],
        "type": event["eventType"],
        "time": event["eventTime"],
        "data": dict(event["data"]),
        "specversion": "1.0",
    }


def subscription_validation_event(validation_code: str | None = None, *, topic: str | None = None) -> Event:
    """The handshake Event Grid sends when a webhook subscription is created; answer {"validationResponse": code}."""
    code = validation_code or str(uuid.uuid4())
    return {
        "id": str(uuid.uuid4()),
        "topic": topic or "/subscriptions/00000000-0000-0000-0000-000000000000",
        "subject": "",
        "data": {
            "validationCode": code,
            "validationUrl": f"https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/emulated/validate?id={code}",
        },
        "eventType": SUBSCRIPTION_VALIDATION,
        "eventTime": event_time(),
        "metadataVersion": "1",
        "dataVersion": "1",
    }
