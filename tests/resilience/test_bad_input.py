"""Bad input, end to end. Each case reaches the product the way it would in Azure (an Event Grid
delivery, a Key Vault secret read through the real SDK, an HTTP request, an app setting) and gets one
clear log line (or an HTTP 400) naming the problem, and nothing is written.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy, make_certificate, pem_secret, pfx_secret
from shared.backing_secret import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE
from shared.chain import Certificate
from shared.handlers import MAX_RESYNC_BODY_BYTES, RetryableError
from shared.settings import SettingsError
from tests.resilience.scenarios import MONTH_AGO, arrange_trusted, deliver_outcome, errors, problems
from tests.support.harness import Backend, audit, deliver, import_version, resync

Event = dict[str, Any]


def trustsync_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "trustsync"]


# -- Event Grid payloads ---------------------------------------------------------------------------------


def _data(**changes: Any) -> Callable[[Event], Event]:
    def change(event: Event) -> Event:
        data = {**event["data"], **changes}
        return {**event, "data": {key: value for key, value in data.items() if value is not None}}

    return change


def _replace_data(data: object) -> Callable[[Event], Event]:
    return lambda event: {**event, "data": data}


def _on(**fields: Callable[[Event], Any]) -> Callable[[Event], Event]:
    """Sets data fields computed from the valid event (its vault URL, name, version)."""
    return lambda event: {**event, "data": {**event["data"], **{k: f(event) for k, f in fields.items()}}}


def _id(event: Event) -> str:
    return str(event["data"]["Id"])


MALFORMED = [
    pytest.param(_data(Id=None), "has no Id", id="missing-Id"),
    pytest.param(_data(Id=None, ObjectName=None, Version=None), "has no Id", id="only-VaultName"),
    pytest.param(_replace_data([]), "event data is list, not a JSON object", id="data-is-a-list"),
    pytest.param(_replace_data("orders"), "event data is str, not a JSON object", id="data-is-a-string"),
    pytest.param(_replace_data(None), "event data is NoneType, not a JSON object", id="data-is-null"),
    pytest.param(_data(Id=42), "field 'id' is int, not text", id="Id-is-a-number"),
    pytest.param(_data(ObjectType=["Certificate"]), "field 'objecttype' is list, not text", id="ObjectType-is-a-list"),
    pytest.param(_data(Version=7), "field 'version' is int, not text", id="Version-is-a-number"),
    pytest.param(_data(Id="orders"), "is not a Key Vault object URL", id="Id-not-a-url"),
    pytest.param(
        _on(Id=lambda e: _id(e).replace("https://", "https://[")), "not a Key Vault object URL", id="Id-bad-url"
    ),
    pytest.param(
        _on(Id=lambda e: _id(e).replace("127.0.0.1:", "127.0.0.1:x")), "not a Key Vault object URL", id="Id-bad-port"
    ),
    pytest.param(_on(Id=lambda e: _id(e).replace("https://", "http://")), "not a Key Vault object URL", id="http-Id"),
    pytest.param(
        _on(Id=lambda e: _id(e).replace("/certificates/", "/secrets/")), "points into /secrets/", id="Id-in-secrets"
    ),
    pytest.param(_data(ObjectName="payments"), "names object 'payments' but its Id points at", id="name-mismatch"),
    pytest.param(_data(Version="0123456789abcdef"), "names version", id="version-mismatch"),
    pytest.param(
        _on(Id=lambda e: _id(e).rsplit("/", 1)[0] + "/v1;drop", Version=lambda e: "v1;drop"),
        "invalid version",
        id="invalid-version",
    ),
    pytest.param(
        _on(
            Id=lambda e: _id(e).replace("/certificates/orders/", "/certificates/my_cert/"),
            ObjectName=lambda e: "my_cert",
        ),
        "invalid Key Vault object 'my_cert'",
        id="invalid-name",
    ),
    pytest.param(
        _on(Id=lambda e: _id(e).replace("/certificates/", "/keys/"), ObjectType=lambda e: "Key"),
        "is about a Key, not a certificate",
        id="a-key-not-a-certificate",
    ),
]


@pytest.mark.parametrize(("malform", "problem"), MALFORMED)
def test_malformed_event_is_one_clear_error_and_no_call(
    emu: Emulator, caplog: pytest.LogCaptureFixture, malform: Callable[[Event], Event], problem: str
) -> None:
    import_version(emu, "orders", Hierarchy(intermediates=1))
    event = malform(emu.vault.certificate_event("orders"))
    caplog.set_level(logging.INFO, logger="trustsync")

    deliver(event)  # returns: a malformed event is as malformed on redelivery

    (line,) = trustsync_lines(caplog)
    assert line.levelno == logging.ERROR
    assert line.getMessage().startswith(f"rejected event {event['id']}")
    assert problem in line.getMessage()
    assert emu.count() == 0  # not even a read


IGNORED = [
    pytest.param(
        lambda event, emu: json.loads(json.dumps(event).replace(emu.url, "https://elsewhere.vault.azure.net")),
        "vault elsewhere.vault.azure.net is not watched (KEYVAULT_URL is ",
        id="another-vault",
    ),
    pytest.param(
        lambda event, emu: {**event, "eventType": "Microsoft.KeyVault.SecretNewVersionCreated"},
        "event type Microsoft.KeyVault.SecretNewVersionCreated needs no action",
        id="secret-event",
    ),
    pytest.param(
        lambda event, emu: {**event, "eventType": "Microsoft.KeyVault.VaultAccessPolicyChanged"},
        "needs no action",
        id="vault-event",
    ),
    pytest.param(
        lambda event, emu: {**event, "eventType": "Microsoft.Storage.BlobCreated"},
        "is not a Key Vault certificate event",
        id="not-key-vault",
    ),
]


@pytest.mark.parametrize(("change", "reason"), IGNORED)
def test_events_not_for_this_app_are_ignored_with_one_line_and_no_call(
    emu: Emulator, caplog: pytest.LogCaptureFixture, change: Callable[[Event, Emulator], Event], reason: str
) -> None:
    import_version(emu, "orders", Hierarchy(intermediates=1))
    event = change(emu.vault.certificate_event("orders"), emu)
    caplog.set_level(logging.INFO, logger="trustsync")

    deliver(event)

    (line,) = trustsync_lines(caplog)
    assert line.levelno == logging.INFO
    assert reason in line.getMessage()
    assert emu.count() == 0


def test_the_key_vault_documentation_sample_s_quirks_are_accepted(emu: Emulator) -> None:
    """The docs sample has a stray space in a key ("ObjectName ") and in a value (" <version>"), and NBF/EXP
    as strings; the wire has NBF/EXP as numbers. All must work."""
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    event = emu.vault.certificate_event("orders")
    quirky = {
        **event,
        "data": {
            "Id": event["data"]["Id"],
            "VaultName": event["data"]["VaultName"],
            "ObjectType": "Certificate",
            "ObjectName ": "orders",
            "Version": " " + event["data"]["Version"],
            "NBF": str(event["data"]["NBF"]),
            "EXP": str(event["data"]["EXP"]),
        },
    }

    deliver(quirky)

    assert set(emu.apim.certificates) == backend.authority_ids
    emu.clear_requests()
    deliver(event)  # the numeric form of the same event: nothing left to do
    assert emu.count(writes=True) == 0


def test_the_documentation_s_secret_event_verbatim_is_ignored(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    # ../shared/reference/eventgrid/docs_event-schema-key-vault_SecretNewVersionCreated...json, with our vault.
    sample = {
        "id": "00eccf70-95a7-4e7c-8299-2eb17ee9ad64",
        "topic": emu.vault.topic,
        "subject": "newsecret",
        "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
        "eventTime": "2019-07-25T01:08:33.1036736Z",
        "data": {
            "Id": f"{emu.url}/secrets/newsecret/ee059b2bb5bc48398a53b168c6cdcb10",
            "VaultName": "sample-kv",
            "ObjectType": "Secret",
            "ObjectName ": "newsecret",
            "Version": " ee059b2bb5bc48398a53b168c6cdcb10",
            "NBF": "1559081980",
            "EXP": "1559082102",
        },
        "dataVersion": "1",
        "metadataVersion": "1",
    }
    caplog.set_level(logging.INFO, logger="trustsync")

    deliver(sample)

    (line,) = trustsync_lines(caplog)
    assert "needs no action" in line.getMessage()
    assert emu.count() == 0


# -- what Key Vault holds --------------------------------------------------------------------------------


@pytest.fixture
def rotation_to_bad_version(emu: Emulator) -> tuple[Backend, str]:
    """v1 trusted; v2 imported. Returns v1 and v2's version id (for the test to spoil)."""
    v1 = import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    arrange_trusted(emu, v1)
    import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    emu.clear_requests()
    return v1, emu.vault.versions("orders")[-1]


def _other_chain_pfx() -> str:
    other = Hierarchy(intermediates=1, organization="Elsewhere")
    leaf = other.issue("elsewhere.example")
    return pfx_secret(leaf.key, leaf.certificate, other.ca_certificates())


def _password_pfx() -> str:
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("orders.example")
    return pfx_secret(leaf.key, leaf.certificate, pki.ca_certificates(), password=b"correct horse")


def _pem_key_only() -> str:
    return pem_secret(make_certificate("orders.example").key, [])


BAD_SECRETS = [
    pytest.param(
        "%%% definitely not base64 %%%", PKCS12_CONTENT_TYPE, "PKCS#12 secret is not valid base64", id="garbage-base64"
    ),
    pytest.param("QUJD" * 8, PKCS12_CONTENT_TYPE, "cannot be opened with an empty password", id="base64-not-a-pfx"),
    pytest.param(None, PKCS12_CONTENT_TYPE, "password-protected or corrupt", id="pfx-with-password"),
    pytest.param("pem-key-only", PEM_CONTENT_TYPE, "PEM secret holds no certificates", id="pem-without-certificates"),
    pytest.param("hunter2", "text/plain", "not a certificate-backed secret", id="not-a-certificate"),
    pytest.param("other-chain", PKCS12_CONTENT_TYPE, "is not in its secret", id="another-certificate-s-chain"),
    pytest.param("A" * 1_000_001, PKCS12_CONTENT_TYPE, "too large to be a certificate", id="oversized"),
]


@pytest.mark.parametrize(("value", "content_type", "problem"), BAD_SECRETS)
def test_a_version_whose_secret_is_unusable_is_one_clear_error_and_no_write(
    emu: Emulator,
    caplog: pytest.LogCaptureFixture,
    rotation_to_bad_version: tuple[Backend, str],
    value: str | None,
    content_type: str,
    problem: str,
) -> None:
    v1, v2 = rotation_to_bad_version
    material = {None: _password_pfx, "pem-key-only": _pem_key_only, "other-chain": _other_chain_pfx}
    secret = material[value]() if value in material else value
    assert secret is not None
    emu.vault.replace_secret_value("orders", v2, secret, content_type)
    caplog.set_level(logging.INFO, logger="trustsync")

    assert deliver_outcome(emu.vault.certificate_event("orders")) is None  # bad data: a redelivery would not help

    (line,) = errors(caplog)
    assert f"certificate orders version {v2}" in line
    assert problem in line
    assert emu.count(writes=True) == 0
    assert emu.count("kv.get_secret") == 2  # both versions were read; the good one is still trusted
    assert set(emu.apim.certificates) == v1.authority_ids

    answer = resync()  # a full run: the unreadable version blocks every removal
    assert answer.status == 500
    assert any(problem in error for error in answer.body["errors"])
    assert emu.count(writes=True) == 0


def test_a_chain_whose_signatures_do_not_link_is_one_clear_error_and_no_write(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    pki = Hierarchy(intermediates=1)
    cas = pki.ca_certificates()
    impostor = make_certificate("orders.example")
    forged = make_certificate("orders.example", issuer_name=cas[0].subject, signing_key=impostor.key)
    emu.vault.import_certificate("orders", pem_secret(forged.key, [forged.certificate, *cas]), PEM_CONTENT_TYPE)
    caplog.set_level(logging.INFO, logger="trustsync")

    assert deliver_outcome(emu.vault.certificate_event("orders")) is None

    (line,) = errors(caplog)
    assert "certificate orders version" in line
    assert f"names issuer {Certificate.from_x509(cas[0]).subject}, but no certificate of that name signed it" in line
    assert emu.count(writes=True) == 0
    assert emu.apim.certificates == {}


def test_an_event_for_a_deleted_certificate_is_one_clear_error_and_no_write(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    import_version(emu, "orders", Hierarchy(intermediates=1))
    event = emu.vault.certificate_event("orders")
    emu.vault.delete_certificate("orders")
    caplog.set_level(logging.INFO, logger="trustsync")

    assert deliver_outcome(event) is None

    (line,) = errors(caplog)
    assert "certificate orders does not exist in" in line
    assert emu.count(writes=True) == 0


def test_an_event_for_a_disabled_only_version_is_one_clear_line_and_no_write(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    import_version(emu, "orders", Hierarchy(intermediates=1))
    event = emu.vault.certificate_event("orders")
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    caplog.set_level(logging.INFO, logger="trustsync")

    assert deliver_outcome(event) is None

    (line,) = problems(caplog)
    assert "certificate orders has no enabled version" in line
    assert emu.count("kv.get_secret") == 0  # a disabled version's secret is not even asked for
    assert emu.count(writes=True) == 0


def test_a_version_disabled_while_being_read_is_secret_disabled_then_skipped(
    emu: Emulator, caplog: pytest.LogCaptureFixture, rotation_to_bad_version: tuple[Backend, str]
) -> None:
    """Listed as enabled, disabled before its secret is read: Key Vault answers 403 SecretDisabled."""
    v1, v2 = rotation_to_bad_version
    event = emu.vault.certificate_event("orders")
    disable = lambda: emu.vault.set_enabled("orders", v2, False)  # noqa: E731
    emu.faults.add("kv.list_certificate_versions", status=None, after_write=True, hook=disable)
    caplog.set_level(logging.INFO, logger="trustsync")

    raised = deliver_outcome(event)

    assert isinstance(raised, RetryableError)  # the state changed under us: look again
    (line,) = errors(caplog)
    assert f"version {v2}" in line
    assert "HTTP 403" in line
    assert "SecretDisabled" in line
    assert emu.count(writes=True) == 0
    caplog.clear()

    assert deliver_outcome(event) is None  # the redelivery sees the version disabled and keeps v1

    assert errors(caplog) == []
    assert emu.count(writes=True) == 0
    assert set(emu.apim.certificates) == v1.authority_ids


# -- the resync request -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param(b"x" * (MAX_RESYNC_BODY_BYTES + 1), "bytes; at most 65536 are accepted", id="oversized"),
        pytest.param(b"{", "request body is not JSON", id="truncated-json"),
        pytest.param(b"certificates=orders", "request body is not JSON", id="form-encoded"),
        pytest.param(b"\xff\xfe\x00", "request body is not JSON", id="not-utf8"),
        pytest.param(b'["orders"]', "must be a JSON object", id="json-array"),
        pytest.param(b'"orders"', "must be a JSON object", id="json-string"),
        pytest.param(b'{"certificate": ["orders"]}', "unknown field(s) certificate", id="unknown-field"),
        pytest.param(b'{"dryRun": "yes"}', "dryRun must be true or false", id="dryRun-string"),
        pytest.param(b'{"certificates": "orders"}', "non-empty list", id="certificates-string"),
        pytest.param(b'{"certificates": []}', "non-empty list", id="certificates-empty"),
        pytest.param(b'{"certificates": [1]}', "non-empty list", id="certificates-number"),
        pytest.param(b'{"certificates": ["my_cert"]}', "'my_cert' is not a Key Vault certificate name", id="bad-name"),
        pytest.param(
            b'{"certificates": ["payments"]}', "certificates: not in CERTIFICATE_NAMES: payments", id="unbound"
        ),
    ],
)
def test_a_bad_resync_request_is_a_400_naming_the_problem_and_no_call(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, body: bytes, problem: str
) -> None:
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders")
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync(body)

    assert answer.status == 400
    assert problem in answer.body["error"]
    assert emu.count() == 0


# -- settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("TRUST_INTERMEDIATES", "maybe", "TRUST_INTERMEDIATES must be true or false, not 'maybe'"),
        ("AUDIT_REMEDIATE", "sometimes", "AUDIT_REMEDIATE must be false, additions or true"),
        ("AZURE_CLOUD", "AzureMars", "AZURE_CLOUD must be one of"),
        ("MAX_CONCURRENCY", "0", "MAX_CONCURRENCY must be between 1 and 64, not 0"),
        ("MAX_CONCURRENCY", "eight", "MAX_CONCURRENCY must be a whole number"),
        ("APIM_GATEWAYS", "gw-west,,gw-east", "APIM_GATEWAYS has an empty entry"),
        ("APIM_GATEWAYS", "managed", "APIM_GATEWAYS must not name 'managed'"),
        ("CERTIFICATE_NAMES", "my_cert", "CERTIFICATE_NAMES has invalid names: 'my_cert'"),
        ("APIM_RESOURCE_ID", "apim-prod", "APIM_RESOURCE_ID must look like"),
        ("KEYVAULT_URL", "http://127.0.0.1:1", "KEYVAULT_URL must be an https:// URL"),
        ("AZURE_CLIENT_ID", "not-a-guid", "AZURE_CLIENT_ID must be a client id (GUID)"),
        ("AUDIT_SCHEDULE", "every hour", "AUDIT_SCHEDULE must be a six-field NCRONTAB expression"),
    ],
)
def test_an_unknown_settings_value_is_one_clear_error_per_invocation_and_no_call(
    emu: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    name: str,
    value: str,
    problem: str,
) -> None:
    import_version(emu, "orders", Hierarchy(intermediates=1))
    event = emu.vault.certificate_event("orders")
    monkeypatch.setenv(name, value)
    caplog.set_level(logging.INFO, logger="trustsync")

    answer = resync()
    assert answer.status == 500  # the request is fine; the app is misconfigured
    assert set(answer.body) == {"error"}
    assert answer.body["error"].startswith("configuration error: ")
    assert problem in answer.body["error"]
    # The event fails (so that Event Grid delivers it again once the setting is fixed), and so does the audit.
    with pytest.raises(SettingsError, match=re.escape(problem)):
        deliver(event)
    with pytest.raises(SettingsError):
        audit()

    lines = errors(caplog)
    assert len(lines) == 3  # one per invocation
    assert all(line.startswith("configuration error: ") and problem in line for line in lines)
    assert emu.count() == 0

    monkeypatch.undo()
    assert deliver_outcome(event) is None  # fixed: the redelivery converges
    assert emu.apim.certificates


def test_without_any_azure_credential_the_answer_is_one_line_saying_how_to_log_in(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import_version(emu, "orders", Hierarchy(intermediates=1))
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no managed identity, and no Azure CLI to ask
    monkeypatch.setenv("MAX_CONCURRENCY", "11")  # a configuration of its own: no cached token

    answer = resync({"dryRun": True})

    assert answer.status == 500
    (error,) = answer.body["errors"]
    assert error.startswith("no Azure credential:")
    assert "az login" in error
    assert "managed identity" in error
    assert emu.count() == 0


def test_a_cloud_without_the_api_version_says_so_and_names_the_versions_it_offers(emu: Emulator) -> None:
    import_version(emu, "orders", Hierarchy(intermediates=1))
    emu.arm_api_versions = ("2021-08-01", "2022-08-01")  # a sovereign cloud that lags behind

    answer = resync()

    assert answer.status == 500
    assert len(answer.body["errors"]) == 1  # one line, whichever APIM call met it first
    (error,) = answer.body["errors"]
    assert "HTTP 400 NoRegisteredProviderFound" in error
    assert "does not offer the api-version the app uses" in error
    assert "it offers: 2021-08-01, 2022-08-01" in error
    assert emu.count(writes=True) == 0
