"""Key Vault certificate events, as Event Grid would deliver them."""

from __future__ import annotations

import re
from typing import Any

from azure.keyvault.certificates import CertificateClient

from emulator import Emulator, to_cloud_event
from emulator.eventgrid import CERTIFICATE_NEAR_EXPIRY, subscription_validation_event
from tests.emulator.helpers import Chain

EVENT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


def test_import_through_the_sdk_publishes_certificate_new_version_created(
    emu: Emulator, certificates: CertificateClient, chain: Chain
) -> None:
    events: list[dict[str, Any]] = []
    emu.vault.subscribe(events.append)

    imported = certificates.import_certificate("tls", chain.pfx())

    assert imported.properties is not None
    version = imported.properties.version
    (event,) = events
    assert set(event) == {"id", "topic", "subject", "eventType", "data", "dataVersion", "metadataVersion", "eventTime"}
    assert event["eventType"] == "Microsoft.KeyVault.CertificateNewVersionCreated"
    assert event["subject"] == "tls"
    assert event["topic"] == (
        f"/subscriptions/{emu.apim.subscription_id}/resourceGroups/{emu.apim.resource_group}"
        "/providers/Microsoft.KeyVault/vaults/emulated-vault"
    )
    assert event["data"] == {
        "Id": f"{emu.url}/certificates/tls/{version}",
        "VaultName": "emulated-vault",
        "ObjectType": "Certificate",
        "ObjectName": "tls",
        "Version": version,
        "NBF": int(chain.leaf.not_valid_before_utc.timestamp()),
        "EXP": int(chain.leaf.not_valid_after_utc.timestamp()),
    }
    assert (event["dataVersion"], event["metadataVersion"]) == ("1", "1")
    assert EVENT_TIME.match(event["eventTime"])


def test_python_api_imports_publish_too_and_vault_name_is_configurable(chain: Chain) -> None:
    with Emulator(vault_name="kv-prod-01") as emu:
        events: list[dict[str, Any]] = []
        unsubscribe = emu.vault.subscribe(events.append)
        first = emu.vault.import_certificate("tls", chain.pfx())
        unsubscribe()
        emu.vault.import_certificate("tls", chain.pfx())

    (event,) = events
    assert event["data"]["VaultName"] == "kv-prod-01"
    assert event["data"]["Version"] == first
    assert event["topic"].endswith("/vaults/kv-prod-01")


def test_cloud_events_rendering(emu: Emulator, chain: Chain) -> None:
    emu.vault.import_certificate("tls", chain.pfx())
    event = emu.vault.certificate_event("tls", event_type=CERTIFICATE_NEAR_EXPIRY)

    cloud = to_cloud_event(event)

    assert cloud == {
        "id": event["id"],
        "source": event["topic"],
        "subject": "tls",
        "type": "Microsoft.KeyVault.CertificateNearExpiry",
        "time": event["eventTime"],
        "data": event["data"],
        "specversion": "1.0",
    }


def test_a_failing_subscriber_does_not_fail_the_import(emu: Emulator, chain: Chain) -> None:
    def broken(_event: dict[str, Any]) -> None:
        raise RuntimeError("subscriber bug")

    emu.vault.subscribe(broken)

    version = emu.vault.import_certificate("tls", chain.pfx())

    assert emu.vault.versions("tls") == [version]
    assert [str(e) for e in emu.vault.delivery_errors] == ["subscriber bug"]


def test_subscription_validation_event_shape() -> None:
    event = subscription_validation_event("512d38b6-c7b8-40c8-89fe-f46f9e9622b6")

    assert event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert event["data"]["validationCode"] == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert "validationUrl" in event["data"]
