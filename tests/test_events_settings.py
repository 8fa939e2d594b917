"""Event parsing and routing, settings validation and resync body parsing: pure, no I/O."""

from __future__ import annotations

import base64
import dataclasses
import json
import types
from datetime import UTC, datetime, timedelta
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from shared.events import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_NEAR_EXPIRY,
    CERTIFICATE_NEW_VERSION_CREATED,
    EventError,
    Ignore,
    Reconcile,
    parse_event,
    parse_queue_message,
    route,
)
from shared.handlers import parse_resync_body
from shared.pacing import HOURLY, TOKEN_BUCKETS, UNMODELLED, Limit, RateLimits
from shared.settings import CLOUDS, SETTINGS, Remediation, Settings, SettingsError, load_settings

APIM_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/apim1"
BASE = {"KEYVAULT_URL": "https://sample-kv.vault.azure.net", "APIM_RESOURCE_ID": APIM_ID}


def data(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Id": "https://sample-kv.vault.azure.net/certificates/mycert/a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "VaultName": "sample-kv",
        "ObjectType": "Certificate",
        "ObjectName": "mycert",
        "Version": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "NBF": 1745695048,
        "EXP": 1777231048,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def conforms(value: object, hint: Any) -> bool:
    """`value` is of the annotated type `hint` (the few forms `Settings` uses)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is types.UnionType:
        return any(conforms(value, arg) for arg in args)
    if origin is None:
        return value is None if hint is type(None) else isinstance(value, hint)
    if not isinstance(value, origin):
        return False
    if origin is tuple and args[-1] is Ellipsis:
        return all(conforms(item, args[0]) for item in value)
    if origin is tuple:
        return len(value) == len(args) and all(conforms(item, arg) for item, arg in zip(value, args, strict=True))
    return all(conforms(item, args[0]) for item in value)  # frozenset[str]


class TestSettings:
    def test_defaults(self) -> None:
        settings = load_settings(BASE)
        assert settings.keyvault_url == "https://sample-kv.vault.azure.net"
        assert settings.apim.name == "apim1"
        assert settings.apim.resource_group == "rg1"
        assert settings.gateways.is_all
        assert settings.certificates.is_all
        assert (
            settings.trust_intermediates is False
        )  # Microsoft's guidance: the root anchors, intermediates build chains
        assert settings.audit_remediate is Remediation.ADDITIONS
        assert settings.rotation_grace == timedelta(hours=24)
        assert settings.cloud.name == "AzureCloud"
        assert settings.arm_endpoint == "https://management.azure.com"
        assert settings.cloud.arm_scope == "https://management.azure.com/.default"
        assert settings.client_id is None

    def test_china(self) -> None:
        settings = load_settings(
            {**BASE, "KEYVAULT_URL": "https://kv1.vault.azure.cn/", "AZURE_CLOUD": "AzureChinaCloud"}
        )
        assert settings.arm_endpoint == "https://management.chinacloudapi.cn"
        assert settings.cloud.arm_scope == "https://management.chinacloudapi.cn/.default"

    def test_lists_and_overrides(self) -> None:
        settings = load_settings(
            {
                **BASE,
                "APIM_GATEWAYS": "gw1, gw2",
                "CERTIFICATE_NAMES": "web,API",
                "TRUST_INTERMEDIATES": "False",
                "ARM_ENDPOINT": "https://127.0.0.1:8443",
                "AZURE_CLIENT_ID": "5e29463d-71da-4fe0-8e69-999b57db23b0",
                "MAX_CONCURRENCY": "4",
                "AUDIT_REMEDIATE": "true",
                "ROTATION_GRACE": "7d",
            }
        )
        assert settings.audit_remediate is Remediation.ALL
        assert settings.rotation_grace == timedelta(days=7)
        assert "gw2" in settings.gateways
        assert "GW1" in settings.gateways
        assert "gw3" not in settings.gateways
        assert "api" in settings.certificates
        assert "other" not in settings.certificates
        assert settings.trust_intermediates is False
        assert settings.arm_endpoint == "https://127.0.0.1:8443"
        assert settings.max_concurrency == 4

    @pytest.mark.parametrize(
        ("env", "named"),
        [
            ({"APIM_RESOURCE_ID": APIM_ID}, "KEYVAULT_URL"),
            ({"KEYVAULT_URL": BASE["KEYVAULT_URL"]}, "APIM_RESOURCE_ID"),
            ({**BASE, "KEYVAULT_URL": "http://kv.vault.azure.net"}, "KEYVAULT_URL"),
            ({**BASE, "KEYVAULT_URL": "https://kv.vault.azure.net/secrets/x"}, "KEYVAULT_URL"),
            ({**BASE, "AZURE_CLOUD": "AzureChinaCloud"}, "AZURE_CLOUD"),
            ({**BASE, "APIM_RESOURCE_ID": "/subscriptions/x/resourceGroups/rg"}, "APIM_RESOURCE_ID"),
            ({**BASE, "APIM_GATEWAYS": "gw1,managed"}, "APIM_GATEWAYS"),
            ({**BASE, "APIM_GATEWAYS": "gw1,,gw2"}, "APIM_GATEWAYS"),
            ({**BASE, "CERTIFICATE_NAMES": "web,bad_name"}, "CERTIFICATE_NAMES"),
            ({**BASE, "TRUST_INTERMEDIATES": "maybe"}, "TRUST_INTERMEDIATES"),
            ({**BASE, "AUDIT_REMEDIATE": "2"}, "AUDIT_REMEDIATE"),
            ({**BASE, "AZURE_CLOUD": "Mars"}, "AZURE_CLOUD"),
            ({**BASE, "AZURE_CLIENT_ID": "not-a-guid"}, "AZURE_CLIENT_ID"),
            ({**BASE, "ARM_ENDPOINT": "ftp://x"}, "ARM_ENDPOINT"),
            ({**BASE, "AUDIT_SCHEDULE": "every 6 hours"}, "AUDIT_SCHEDULE"),
            ({**BASE, "MAX_CONCURRENCY": "0"}, "MAX_CONCURRENCY"),
            ({**BASE, "MAX_CONCURRENCY": "lots"}, "MAX_CONCURRENCY"),
            ({**BASE, "ROTATION_GRACE": "24"}, "ROTATION_GRACE"),
            ({**BASE, "ROTATION_GRACE": "400d"}, "ROTATION_GRACE"),
            ({**BASE, "RUN_TIME_BUDGET": "0s"}, "RUN_TIME_BUDGET"),
            ({**BASE, "RUN_TIME_BUDGET": "9 minutes"}, "RUN_TIME_BUDGET"),
            ({**BASE, "RUN_TIME_BUDGET": "2d"}, "RUN_TIME_BUDGET"),
            ({**BASE, "TRUSTSYNC_RATE_LIMITS": "arm-writes=fast"}, "TRUSTSYNC_RATE_LIMITS"),
            ({**BASE, "TRUSTSYNC_RATE_LIMITS": "writes=200+10/s"}, "TRUSTSYNC_RATE_LIMITS"),
            ({**BASE, "TRUSTSYNC_RATE_LIMITS": "arm-writes=0+10/s"}, "TRUSTSYNC_RATE_LIMITS"),
            ({**BASE, "KEYVAULT_URL": "https://kv.vault.azure.net:notaport"}, "KEYVAULT_URL"),
            ({**BASE, "KEYVAULT_URL": "https://my vault.vault.azure.net"}, "KEYVAULT_URL has an invalid host"),
            ({**BASE, "KEYVAULT_URL": "https://kv.vault.azure.net."}, "KEYVAULT_URL has an invalid host"),
            ({**BASE, "KEYVAULT_URL": "https://kv.vault.azure.net:0"}, "KEYVAULT_URL has an invalid port"),
            (
                {**BASE, "KEYVAULT_URL": "https://kv.vault.azure.net:\uff14\uff14\uff13"},
                "KEYVAULT_URL",
            ),
            (
                {**BASE, "APIM_RESOURCE_ID": APIM_ID.replace("00000000-0000-0000-0000-000000000000", "-" * 36)},
                "APIM_RESOURCE_ID",
            ),
            ({**BASE, "MAX_CONCURRENCY": "\uff11\uff12"}, "MAX_CONCURRENCY must be a whole number"),
            ({**BASE, "RUN_TIME_BUDGET": "\uff19m"}, "RUN_TIME_BUDGET"),
            ({**BASE, "EXPIRY_WARNING_DAYS": "\u0663\u0660"}, "EXPIRY_WARNING_DAYS"),
            ({**BASE, "AUDIT_REMEDIATE": "yes"}, "AUDIT_REMEDIATE"),
            ({**BASE, "TRUST_INTERMEDIATES": "1"}, "TRUST_INTERMEDIATES"),
            ({**BASE, "AUDIT_SCHEDULE": "x x x x x x"}, "neither a number nor a second name"),
            ({**BASE, "AUDIT_SCHEDULE": "0 0 */6 * *"}, "5 field"),
            ({**BASE, "AUDIT_SCHEDULE": "0 60 * * * *"}, "minute field '60' is outside 0-59"),
            ({**BASE, "AUDIT_SCHEDULE": "0 0 0 1 1 7"}, "day-of-week"),
            ({**BASE, "AUDIT_SCHEDULE": "0 */0 * * * *"}, "step"),
            ({**BASE, "AUDIT_SCHEDULE": "0 0 5-2 * * *"}, "backwards"),
            ({**BASE, "AUDIT_SCHEDULE": "06:00:00", "WEBSITE_SKU": "FlexConsumption"}, "only on an App Service plan"),
        ],
    )
    def test_errors_name_the_setting(self, env: dict[str, str], named: str) -> None:
        with pytest.raises(SettingsError, match=named):
            load_settings(env)

    @pytest.mark.parametrize(
        "schedule",
        [
            "0 0 */6 * * *",
            "0 0,30 9-17/2 * * Mon-Fri",
            "0 0 0 1 Jan-Mar *",
            "*/30 * * * * *",
            "0 0 0 * * Sun",  # the day-of-week name whose number is 0
            "0 0 3 * * sun-sat",
        ],
    )
    def test_schedules_the_functions_host_reads_are_accepted(self, schedule: str) -> None:
        load_settings({**BASE, "AUDIT_SCHEDULE": schedule})

    def test_a_timespan_schedule_is_accepted_on_an_app_service_plan(self) -> None:
        load_settings({**BASE, "AUDIT_SCHEDULE": "06:00:00", "WEBSITE_SKU": "Standard"})

    @pytest.mark.parametrize(
        "url",
        [
            "https://user:hunter2@kv.vault.azure.net",
            "https://kv.vault.azure.net/?sig=hunter2",
            "http://kv:hunter2@x/?sig=hunter2",
        ],
    )
    def test_a_credential_in_a_url_is_never_echoed(self, url: str) -> None:
        with pytest.raises(SettingsError) as raised:
            load_settings({**BASE, "KEYVAULT_URL": url, "ARM_ENDPOINT": url})
        assert "hunter2" not in str(raised.value)
        assert "KEYVAULT_URL" in str(raised.value)
        assert "ARM_ENDPOINT" in str(raised.value)

    @pytest.mark.parametrize(
        ("raw", "normalized"),
        [
            ("https://KV.vault.azure.net:443", "https://kv.vault.azure.net"),
            ("https://kv.vault.azure.net/", "https://kv.vault.azure.net"),
            (" https://kv.vault.azure.net ", "https://kv.vault.azure.net"),
            ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
        ],
    )
    def test_the_vault_url_is_normalized_so_events_match_it(self, raw: str, normalized: str) -> None:
        settings = load_settings({**BASE, "KEYVAULT_URL": raw, "CERTIFICATE_NAMES": "mycert"})
        assert settings.keyvault_url == normalized
        event = data(Id=f"{normalized}/certificates/mycert/a1b2c3d4e5f60718293a4b5c6d7e8f90")
        assert isinstance(route(CERTIFICATE_NEW_VERSION_CREATED, "e1", event, settings), Reconcile)

    def test_the_time_budget_is_a_duration_in_seconds_minutes_or_hours(self) -> None:
        assert load_settings(BASE).run_time_budget == timedelta(seconds=540)
        assert load_settings({**BASE, "RUN_TIME_BUDGET": "9m"}).run_time_budget == timedelta(minutes=9)
        assert load_settings({**BASE, "RUN_TIME_BUDGET": "2h"}).run_time_budget == timedelta(hours=2)

    def test_the_pacer_models_the_limits_each_cloud_documents(self) -> None:
        china = {**BASE, "KEYVAULT_URL": "https://kv1.vault.azure.cn", "AZURE_CLOUD": "AzureChinaCloud"}
        assert load_settings(BASE).rate_limits == TOKEN_BUCKETS
        assert (
            load_settings(
                {**BASE, "AZURE_CLOUD": "AzureUSGovernment", "KEYVAULT_URL": "https://kv.vault.usgovcloudapi.net"}
            ).rate_limits
            == TOKEN_BUCKETS
        )
        assert load_settings(china).rate_limits == HOURLY
        assert HOURLY.arm_writes == Limit(1200, 1200 / 3600)
        assert TOKEN_BUCKETS.arm_writes == Limit(200, 10)

    def test_the_modelled_limits_can_be_overridden_kind_by_kind(self) -> None:
        overridden = load_settings(
            {
                **BASE,
                "TRUSTSYNC_RATE_LIMITS": "arm-writes=40+250/s, arm-deletes=1200/h, keyvault=50/0.5s, arm-reads=none",
            }
        ).rate_limits
        assert overridden == RateLimits(
            arm_reads=None, arm_writes=Limit(40, 250), arm_deletes=Limit(1200, 1200 / 3600), keyvault=Limit(50, 100)
        )
        assert load_settings({**BASE, "TRUSTSYNC_RATE_LIMITS": "none"}).rate_limits == UNMODELLED
        assert load_settings({**BASE, "TRUSTSYNC_RATE_LIMITS": "cloud"}).rate_limits == TOKEN_BUCKETS
        partly = load_settings({**BASE, "TRUSTSYNC_RATE_LIMITS": "keyvault=none"}).rate_limits
        assert (partly.arm_writes, partly.keyvault) == (Limit(200, 10), None)

    def test_every_invalid_setting_is_named_in_one_message(self) -> None:
        with pytest.raises(SettingsError) as raised:
            load_settings({"APIM_GATEWAYS": "managed", "MAX_CONCURRENCY": "0", "AUDIT_REMEDIATE": "sometimes"})
        message = str(raised.value)
        for name in ("KEYVAULT_URL", "APIM_RESOURCE_ID", "APIM_GATEWAYS", "MAX_CONCURRENCY", "AUDIT_REMEDIATE"):
            assert name in message

    def test_the_problems_come_in_the_order_the_readme_and_help_list_the_settings(self) -> None:
        bad = {"AZURE_CLOUD": "Mars", "KEYVAULT_URL": "http://kv", "MAX_CONCURRENCY": "0", "DEPLOYMENT_ID": "A"}
        with pytest.raises(SettingsError) as raised:
            load_settings({**bad, "TRUSTSYNC_RATE_LIMITS": "fast"})
        named = [problem.split()[0] for problem in str(raised.value).split("; ")]
        declared = [setting.name for setting in SETTINGS if setting.name in {*bad, "APIM_RESOURCE_ID"}]
        assert named == [*declared, "TRUSTSYNC_RATE_LIMITS"]  # the variable outside the table comes last

    def test_every_setting_documented_once(self) -> None:
        names = [s.name for s in SETTINGS]
        assert len(names) == len(set(names))
        assert set(CLOUDS) == {"AzureCloud", "AzureChinaCloud", "AzureUSGovernment"}

    def test_each_settings_field_is_filled_by_one_setting_with_a_value_of_its_type(self) -> None:
        # The table names the field each setting fills, which the type checker cannot follow: this does.
        loaded = load_settings(
            {
                **BASE,
                "CERTIFICATE_NAMES": "web",
                "APIM_GATEWAYS": "gw1",
                "TRUST_BUNDLES": "roots",
                "AZURE_CLIENT_ID": "5e29463d-71da-4fe0-8e69-999b57db23b0",
                "ARM_ENDPOINT": "https://127.0.0.1:8443",
                "DEPLOYMENT_ID": "teama",
                "BACKEND_CERTIFICATES": "b1=web",
            }
        )
        filled = [setting.field for setting in SETTINGS if setting.field is not None]
        fields = {field.name for field in dataclasses.fields(Settings)}
        assert sorted(filled) == sorted(fields - {"rate_limits"})  # TRUSTSYNC_RATE_LIMITS is no app setting
        hints = get_type_hints(Settings)
        assert [field for field in filled if not conforms(getattr(loaded, field), hints[field])] == []


class TestEvents:
    settings = load_settings({**BASE, "CERTIFICATE_NAMES": "mycert,other"})

    def test_new_version_routes_to_binding(self) -> None:
        decision = route(CERTIFICATE_NEW_VERSION_CREATED, "e1", data(), self.settings)
        assert isinstance(decision, Reconcile)
        assert decision.certificate_name == "mycert"
        assert decision.event.version == "a1b2c3d4e5f60718293a4b5c6d7e8f90"

    def test_documentation_typos_are_tolerated(self) -> None:
        # The stray space in a key and a value, NBF/EXP as strings: as in the Key Vault docs sample.
        sample = data(ObjectName=None, Version=" a1b2c3d4e5f60718293a4b5c6d7e8f90", NBF="1559081980", EXP="1559082102")
        sample["ObjectName "] = "mycert"
        decision = route(CERTIFICATE_NEW_VERSION_CREATED, "e1", sample, self.settings)
        assert isinstance(decision, Reconcile)

    @pytest.mark.parametrize(
        ("event_type", "reason"),
        [
            ("Microsoft.KeyVault.SecretNewVersionCreated", "needs no action"),
            ("Microsoft.KeyVault.VaultAccessPolicyChanged", "needs no action"),
            ("Microsoft.Storage.BlobCreated", "not a Key Vault certificate event"),
            (None, "not a Key Vault certificate event"),
        ],
    )
    def test_other_event_types_are_ignored(self, event_type: str | None, reason: str) -> None:
        decision = route(event_type, "e1", data(), self.settings)
        assert isinstance(decision, Ignore)
        assert reason in decision.reason

    def test_other_vault_is_ignored(self) -> None:
        other = data(Id="https://other-kv.vault.azure.net/certificates/mycert/a1b2c3d4e5f60718293a4b5c6d7e8f90")
        decision = route(CERTIFICATE_NEW_VERSION_CREATED, "e1", other, self.settings)
        assert isinstance(decision, Ignore)
        assert "not watched" in decision.reason

    def test_unbound_certificate_is_ignored(self) -> None:
        unbound = data(Id="https://sample-kv.vault.azure.net/certificates/third/abc", ObjectName="third", Version="abc")
        decision = route(CERTIFICATE_NEW_VERSION_CREATED, "e1", unbound, self.settings)
        assert isinstance(decision, Ignore)
        assert "CERTIFICATE_NAMES" in decision.reason

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            ("not an object", "not a JSON object"),
            (None, "not a JSON object"),
            (data(Id=None), "no Id"),
            (data(Id=42), "not text"),
            (data(Id="http://sample-kv.vault.azure.net/certificates/mycert/v1"), "not a Key Vault object URL"),
            (data(Id="https://sample-kv.vault.azure.net/"), "not a Key Vault object URL"),
            (data(Id="https://[sample-kv.vault.azure.net/certificates/mycert/v1"), "not a Key Vault object URL"),
            (data(Id="https://sample-kv.vault.azure.net:x/certificates/mycert/v1"), "not a Key Vault object URL"),
            (data(Id="https://" + "k" * 5000 + "/certificates/mycert/v1"), "not a Key Vault object URL"),
            (data(ObjectName="othercert"), "points at"),
            (data(Version="ffff"), "points at"),
            (data(ObjectType="Secret"), "is about a Secret but its Id points into /certificates/"),
            (data(Id="https://sample-kv.vault.azure.net/secrets/mycert/v1", Version="v1"), "points into /secrets/"),
            (
                data(Id="https://sample-kv.vault.azure.net/secrets/mycert/v1", Version="v1", ObjectType="Secret"),
                "not a certificate",
            ),
            (
                data(
                    Id="https://sample-kv.vault.azure.net/certificates/bad_name/v1", ObjectName="bad_name", Version="v1"
                ),
                "invalid Key Vault object",
            ),
        ],
    )
    def test_malformed_events_are_errors(self, payload: object, message: str) -> None:
        with pytest.raises(EventError, match=message):
            route(CERTIFICATE_NEW_VERSION_CREATED, "e1", payload, self.settings)

    @pytest.mark.parametrize("event_type", [CERTIFICATE_NEAR_EXPIRY, CERTIFICATE_EXPIRED])
    def test_expiry_events_reconcile_the_certificate_and_carry_its_expiry(self, event_type: str) -> None:
        decision = route(event_type, "e1", data(EXP="1777231048"), self.settings)
        assert isinstance(decision, Reconcile)
        assert decision.event.is_expiry
        assert decision.event.expires == datetime.fromtimestamp(1777231048, UTC)

    def test_parse_without_version(self) -> None:
        event = parse_event(
            "e1",
            CERTIFICATE_NEW_VERSION_CREATED,
            data(Id="https://Sample-KV.vault.azure.net/certificates/mycert", Version=None),
        )
        assert event.version is None
        assert event.vault_host == "sample-kv.vault.azure.net"


class TestResyncBody:
    def test_empty_is_full_apply(self) -> None:
        assert parse_resync_body(b"") == (None, False)

    def test_names_and_dry_run(self) -> None:
        body = json.dumps({"certificates": ["web", "api"], "dryRun": True}).encode()
        assert parse_resync_body(body) == (frozenset({"web", "api"}), True)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"{not json", "not JSON"),
            (b"\xff\xfe", "not JSON"),
            (b"[1, 2]", "must be a JSON object"),
            (b'{"dryRun": "yes"}', "dryRun must be true or false"),
            (b'{"certificates": "web"}', "non-empty list"),
            (b'{"certificates": []}', "non-empty list"),
            (b'{"certificates": null}', "non-empty list"),
            (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
            (b'{"certificates": ["web", 3]}', "non-empty list"),
            (b'{"certificates": ["a,b"]}', "not a Key Vault certificate name"),
            (b'{"cert": ["web"]}', "unknown field"),
            (b'{"dryRun": true, "dryRun": false}', "names dryRun twice"),
            (b'{"certificates": ["web"], "x": {"a": 1, "a": 2}}', "names a twice"),
            (b" " * (64 * 1024 + 1), "at most"),
            (json.dumps({"certificates": [f"c{i}" for i in range(1001)]}).encode(), "at most 1000"),
        ],
    )
    def test_bad_bodies(self, body: bytes, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            parse_resync_body(body)


def test_an_event_id_with_the_default_port_names_the_watched_vault() -> None:
    settings = load_settings({**BASE, "CERTIFICATE_NAMES": "mycert"})
    event = data(Id="https://SAMPLE-KV.vault.azure.net:443/certificates/mycert/a1b2c3d4e5f60718293a4b5c6d7e8f90")
    assert isinstance(route(CERTIFICATE_NEW_VERSION_CREATED, "e1", event, settings), Reconcile)


# --- storage-queue messages (private network mode) -------------------------------------------

QUEUED = {
    "id": "e-1",
    "topic": "/subscriptions/0/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/sample-kv",
    "subject": "orders",
    "eventType": CERTIFICATE_NEW_VERSION_CREATED,
    "data": {"Id": "https://sample-kv.vault.azure.net/certificates/orders/abc123"},
    "dataVersion": "1",
}


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(QUEUED).encode(),  # as Event Grid writes it
        json.dumps(QUEUED),  # as text
        base64.b64encode(json.dumps(QUEUED).encode()),  # as the queue extension's default encoding writes it
        json.dumps([QUEUED]).encode(),  # an array of one event
        b"\xef\xbb\xbf" + json.dumps(QUEUED).encode(),  # with a UTF-8 byte order mark
    ],
)
def test_queue_message_yields_the_event_grid_envelope(body: bytes | str) -> None:
    queued = parse_queue_message(body)

    assert (queued.event_id, queued.event_type, queued.data) == ("e-1", CERTIFICATE_NEW_VERSION_CREATED, QUEUED["data"])


def test_queue_message_in_the_cloudevents_schema_yields_its_envelope() -> None:
    cloud = {"specversion": "1.0", "id": "c-1", "type": CERTIFICATE_NEAR_EXPIRY, "source": "kv", "data": {"Id": "x"}}

    queued = parse_queue_message(json.dumps(cloud).encode())

    assert (queued.event_id, queued.event_type, queued.data) == ("c-1", CERTIFICATE_NEAR_EXPIRY, {"Id": "x"})


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"null",
        b"42",
        b"[]",
        json.dumps([QUEUED, QUEUED]).encode(),  # two events: a queue message holds one
        json.dumps({"id": "x", "data": {}}).encode(),  # no event type in either schema
        base64.b64encode(b"not json either"),
        b"[" * 100_000,  # nesting deeper than the parser recurses
        b"{" + b" " * (64 * 1024) + b"}",  # more than a queue message holds
    ],
)
def test_a_queue_message_without_one_event_is_an_event_error(body: bytes) -> None:
    with pytest.raises(EventError):
        parse_queue_message(body)


def test_a_queued_event_with_a_malformed_data_is_still_routed_as_an_event_error() -> None:
    queued = parse_queue_message(json.dumps({**QUEUED, "data": "text"}).encode())

    with pytest.raises(EventError):
        route(queued.event_type, queued.event_id, queued.data, load_settings(BASE))
