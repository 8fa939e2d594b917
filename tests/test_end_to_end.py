"""The functions, called as the Functions host would, against the emulator through the real SDKs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy, make_certificate, pfx_secret
from shared.chain import Certificate
from shared.events import CERTIFICATE_EXPIRED, CERTIFICATE_NEAR_EXPIRY
from shared.handlers import RetryableError
from shared.plan import Ownership, certificate_id_for
from tests.conftest import GATEWAYS
from tests.resilience.scenarios import TrustMonitor, arrange_trusted, assert_trusts_exactly
from tests.support.harness import (
    PEM_CONTENT_TYPE,
    PKCS12_CONTENT_TYPE,
    Backend,
    assert_no_private_keys,
    audit,
    deliver,
    deliver_queued,
    expected_entries,
    holds,
    import_version,
    resync,
    trusted,
    writes,
)
from tests.support.legacy import legacy_id

MONTH_AGO = datetime.now(UTC) - timedelta(days=30)
OUR_CLIENT_ID = "5e29463d-71da-4fe0-8e69-999b57db23b0"


def every_gateway_trusts(emu: Emulator, ids: set[str]) -> bool:
    """Every gateway holds the chain: each CA present, the root trusted (a gateway anchors at a root)."""
    return set(trusted(emu)) == set(GATEWAYS) and all(holds(emu, gateway, ids) for gateway in GATEWAYS)


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
@pytest.mark.parametrize("content_type", [PKCS12_CONTENT_TYPE, PEM_CONTENT_TYPE])
def test_rotation_event_trusts_the_chain_on_every_gateway(configured: Emulator, content_type: str, schema: str) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1), content_type=content_type)

    deliver(emu.vault.certificate_event("orders"), schema=schema)

    assert set(emu.apim.certificates) == backend.authority_ids
    assert every_gateway_trusts(emu, backend.authority_ids)
    assert {c.thumbprint for c in emu.apim.certificates.values()} == {a.sha1_thumbprint for a in backend.authorities}
    assert_no_private_keys(emu)


def test_a_second_identical_delivery_writes_nothing(configured: Emulator) -> None:
    emu = configured
    import_version(emu, "orders", Hierarchy(intermediates=2))
    event = emu.vault.certificate_event("orders")
    deliver(event)
    assert writes(emu) == 3 + 3 * len(GATEWAYS)  # 3 uploads, then 3 CAs on each gateway
    emu.clear_requests()

    deliver(event)

    assert writes(emu) == 0
    assert emu.count("kv.get_secret") == 0  # the worker read that version on the first delivery
    ca_lists = [r for r in emu.requests if r.operation == "arm.list_gateway_cas"]
    assert len({r.path for r in ca_lists}) == len(GATEWAYS)  # one list per gateway...
    assert len(ca_lists) == 2 * len(GATEWAYS)  # ...of two pages each (3 entries, page size 2)


@pytest.mark.parametrize("base64_encoded", [False, True])
def test_queued_event_trusts_the_chain_and_a_duplicate_writes_nothing(
    configured: Emulator, base64_encoded: bool
) -> None:
    """Private network mode: Event Grid writes the event to the storage queue; the host hands it over."""
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    event = emu.vault.certificate_event("orders")

    deliver_queued(event, base64_encoded=base64_encoded)

    assert set(emu.apim.certificates) == backend.authority_ids
    assert every_gateway_trusts(emu, backend.authority_ids)
    assert_no_private_keys(emu)
    emu.clear_requests()

    deliver_queued(event, base64_encoded=base64_encoded)  # the queue delivers at least once

    assert writes(emu) == 0
    assert emu.count("kv.get_secret") == 0  # the worker read that version on the first delivery


@pytest.mark.parametrize(
    "body",
    [
        b"not an event",
        b'{"id": "x", "data": {}}',
        b'{"id": "x", "eventType": "Microsoft.KeyVault.CertificateNewVersionCreated", "data": "text"}',
    ],
)
def test_a_malformed_queue_message_is_logged_and_not_retried(
    configured: Emulator, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    emu = configured
    import_version(emu, "orders", Hierarchy(intermediates=1))
    emu.clear_requests()

    with caplog.at_level(logging.ERROR, logger="trustsync"):
        deliver_queued(body)  # returns: the invocation succeeds, so the queue does not redeliver it

    assert writes(emu) == 0
    assert emu.count("kv.get_secret") == 0
    assert any("rejected" in record.getMessage() for record in caplog.records if record.levelno == logging.ERROR)


def test_a_queued_event_that_needs_a_retry_fails_the_invocation(configured: Emulator) -> None:
    """A RetryableError fails the invocation: the message becomes visible again, then goes to the poison queue."""
    emu = configured
    import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    latest = import_version(emu, "orders", Hierarchy(intermediates=1))
    version = emu.vault.certificate("orders").version
    event = emu.vault.certificate_event("orders")
    # Listed as enabled, disabled before its secret is read: the state changed under the run.
    disable = lambda: emu.vault.set_enabled("orders", version, False)  # noqa: E731
    emu.faults.add("kv.list_certificate_versions", status=None, after_write=True, hook=disable)

    with pytest.raises(RetryableError):
        deliver_queued(event)

    assert not every_gateway_trusts(emu, latest.authority_ids)


def test_rotation_to_a_new_intermediate_keeps_the_previous_chain_during_overlap(configured: Emulator) -> None:
    emu = configured
    old = import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    deliver(emu.vault.certificate_event("orders"))
    new_pki = Hierarchy(intermediates=1, organization="Fabrikam")
    new = import_version(emu, "orders", new_pki)

    deliver(emu.vault.certificate_event("orders"))

    assert every_gateway_trusts(emu, new.authority_ids | old.authority_ids)
    assert_no_private_keys(emu)


def test_out_of_order_delivery_converges_to_the_current_state(configured: Emulator) -> None:
    emu = configured
    import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    stale_event = emu.vault.certificate_event("orders")
    new = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    fresh_event = emu.vault.certificate_event("orders")

    deliver(fresh_event)
    after_fresh = trusted(emu)
    emu.clear_requests()
    deliver(stale_event)  # the old version's event arrives last

    assert trusted(emu) == after_fresh
    assert writes(emu) == 0
    assert every_gateway_trusts(emu, new.authority_ids)


def test_full_resync_removes_only_what_the_app_created_and_nobody_needs(configured: Emulator) -> None:
    emu = configured
    old = import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    deliver(emu.vault.certificate_event("orders"))
    new = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    deliver(emu.vault.certificate_event("orders"))
    foreign = make_certificate("Operator's own CA", is_ca=True)
    emu.apim.add_certificate("operators-ca", foreign.der)
    for gateway in GATEWAYS:
        emu.apim.set_gateway_ca(gateway, "operators-ca", trusted=True)
    old_version = emu.vault.versions("orders")[0]
    emu.vault.set_enabled("orders", old_version, False)  # the old version is retired

    answer = resync()

    assert answer.status == 200, answer.body
    assert answer.body["inSync"] is True
    removed = {a["certificateId"] for a in answer.body["actions"] if a["action"] == "delete-certificate"}
    assert removed == old.authority_ids - new.authority_ids
    assert set(emu.apim.certificates) == new.authority_ids | {"operators-ca"}
    for cas in trusted(emu).values():
        assert set(cas) == new.authority_ids | {"operators-ca"}


def test_resync_dry_run_plans_and_writes_nothing(configured: Emulator) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync({"dryRun": True})

    assert answer.status == 200
    assert answer.body["dryRun"] is True
    assert answer.body["inSync"] is False
    planned = {(a["action"], a["certificateId"], a["gateway"]) for a in answer.body["actions"]}
    assert {("upload-certificate", cid, None) for cid in backend.authority_ids} <= planned
    assert {("set-gateway-ca", cid, gw) for cid in backend.authority_ids for gw in GATEWAYS} <= planned
    assert all(a["status"] == "planned" and a["reason"] for a in answer.body["actions"])
    assert writes(emu) == 0

    applied = resync({"certificates": ["orders"]})

    assert applied.status == 200
    assert applied.body["inSync"] is True
    assert every_gateway_trusts(emu, backend.authority_ids)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (b'{"dryRun": 1}', "dryRun"),
        (b'{"certificates": ["nope"], "dryRun": true}', "not in CERTIFICATE_NAMES: nope"),
        (b'{"certificates": null}', "leave it out for every certificate"),
    ],
)
def test_resync_rejects_bad_requests_with_400(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, body: bytes, message: str
) -> None:
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders")
    answer = resync(body)
    assert answer.status == 400
    assert message in answer.body["error"]
    assert writes(configured) == 0


def test_drift_audit_reports_and_repairs_what_audit_remediate_allows(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    deliver(emu.vault.certificate_event("orders"))
    root_id = certificate_id_for(backend.authorities[-1])
    emu.apim.delete_gateway_ca("gw-east", root_id, if_match="*")  # someone removed it by hand
    caplog.set_level(logging.INFO, logger="trustsync")
    emu.clear_requests()
    monkeypatch.setenv("AUDIT_REMEDIATE", "false")

    audit()

    record = next(r for r in caplog.records if r.getMessage().startswith("TRUSTSYNC_AUDIT"))
    assert record.levelno == logging.WARNING
    assert "status=drift" in record.getMessage()
    report = json.loads(record.getMessage().split(" ", 2)[2])
    assert [(a["action"], a["certificateId"], a["gateway"]) for a in report["actions"]] == [
        ("set-gateway-ca", root_id, "gw-east")
    ]
    assert writes(emu) == 0

    monkeypatch.delenv("AUDIT_REMEDIATE")  # the default: add what is missing
    audit()
    assert every_gateway_trusts(emu, backend.authority_ids)

    caplog.clear()
    audit()
    assert any("TRUSTSYNC_AUDIT status=in-sync" in r.getMessage() for r in caplog.records)


def test_a_foreign_copy_of_a_needed_ca_is_never_referenced_nor_touched(configured: Emulator) -> None:
    emu = configured
    pki = Hierarchy(intermediates=1)
    root_der = Certificate.from_x509(pki.ca_certificates()[-1]).der
    emu.apim.add_certificate("corp-root", root_der)
    emu.apim.set_gateway_ca("gw-west", "corp-root", trusted=True)
    before = emu.apim.certificates["corp-root"]
    backend = import_version(emu, "orders", pki)

    deliver(emu.vault.certificate_event("orders"))
    answer = resync()

    ours = backend.authority_ids  # the app's own copy of the root too: its owner may retire theirs
    assert set(emu.apim.certificates) == {"corp-root", *ours}
    assert emu.apim.certificates["corp-root"].etag == before.etag
    assert trusted(emu) == {
        "gw-west": {"corp-root": True, **expected_entries(emu, ours)},
        "gw-east": expected_entries(emu, ours),
    }
    assert answer.body["inSync"] is True


def test_managed_gateway_and_unselected_gateways_are_never_touched(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    emu.apim.include_managed_gateway = True
    monkeypatch.setenv("APIM_GATEWAYS", "gw-west")
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    deliver(emu.vault.certificate_event("orders"))

    assert trusted(emu)["gw-east"] == {}
    assert set(trusted(emu)["gw-west"]) == backend.authority_ids
    touched = {r.path.split("/gateways/")[1].split("/")[0] for r in emu.requests if "/gateways/" in r.path}
    assert touched == {"gw-west"}


def test_events_for_other_vaults_types_and_certificates_change_nothing(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emu = configured
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders")
    import_version(emu, "orders", Hierarchy(intermediates=1))
    import_version(emu, "payments", Hierarchy(intermediates=1))
    good = emu.vault.certificate_event("orders")
    other_vault = json.loads(json.dumps(good).replace(emu.url, "https://elsewhere.vault.azure.net"))
    secret_event = emu.vault.certificate_event("orders", event_type="Microsoft.KeyVault.SecretNewVersionCreated")
    unbound = emu.vault.certificate_event("payments")
    malformed = {**good, "data": {"VaultName": "x"}}
    caplog.set_level(logging.INFO, logger="trustsync")

    for event in (other_vault, secret_event, unbound, malformed):
        deliver(event)

    assert writes(emu) == 0
    assert emu.count() == 0  # not even a read
    messages = [r.getMessage() for r in caplog.records]
    assert any("is not watched" in m for m in messages)
    assert any("needs no action" in m for m in messages)
    assert any("not in CERTIFICATE_NAMES" in m for m in messages)
    assert any(m.startswith("rejected event") and "no Id" in m for m in messages)


def test_user_assigned_identity_and_china_cloud_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(page_size=2, arm_audience="https://management.chinacloudapi.cn/") as emu:
        emu.apim.add_gateway("gw-cn")
        for name, value in emu.environ(AZURE_CLIENT_ID=OUR_CLIENT_ID).items():
            monkeypatch.setenv(name, value)
        backend = import_version(emu, "orders", Hierarchy(intermediates=1))

        deliver(emu.vault.certificate_event("orders"))

        assert set(trusted(emu)["gw-cn"]) == backend.authority_ids
        tokens = [r for r in emu.requests if r.operation == "identity.token"]
        assert tokens
        assert {r.client_id for r in tokens} == {OUR_CLIENT_ID}
        assert "https://management.chinacloudapi.cn" in {(r.audience or "").rstrip("/") for r in tokens}


def test_a_bound_certificate_missing_from_the_vault_is_reported_and_changes_nothing(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders")
    emu.vault.set_secret("orders", "a plain secret, not a certificate", content_type="text/plain")

    answer = resync({"certificates": ["orders"]})

    assert answer.status == 404
    assert answer.body == {"error": "certificates: not in Key Vault: orders"}
    assert writes(emu) == 0


def test_a_chain_without_its_root_uploads_what_exists_and_reports_it(configured: Emulator) -> None:
    emu = configured
    root = make_certificate("Offline Root", is_ca=True)
    issuing = make_certificate("Issuing CA", issuer=root, is_ca=True)
    leaf = make_certificate("backend.example", issuer=issuing)
    emu.vault.import_certificate("orders", pfx_secret(leaf.key, leaf.certificate, [issuing.certificate]))

    answer = resync()

    issuing_id = certificate_id_for(Certificate.from_x509(issuing.certificate))
    assert answer.status == 200
    assert set(emu.apim.certificates) == {issuing_id}
    assert any("root missing" in warning and "Offline Root" in warning for warning in answer.body["warnings"])
    assert every_gateway_trusts(emu, {issuing_id})


def test_operator_cli_plan_sync_audit_exit_codes(configured: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    from shared.__main__ import EXIT_DRIFT, EXIT_FAILED, EXIT_IN_SYNC, main

    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    assert main(["plan", "--json"]) == EXIT_DRIFT
    planned = json.loads(capsys.readouterr().out)
    assert planned["dryRun"] is True
    assert len(planned["actions"]) == 2 + 2 * len(GATEWAYS)
    assert writes(emu) == 0

    assert main(["sync"]) == EXIT_IN_SYNC
    table = capsys.readouterr().out
    assert "upload-certificate" in table
    assert "applied" in table
    assert every_gateway_trusts(emu, backend.authority_ids)

    assert "status: in-sync" in table
    assert (
        table.splitlines()[-1]
        == "summary: 4 set-gateway-ca applied, 2 upload-certificate applied; 0 conflict(s), 0 error(s)"
    )

    assert main(["plan"]) == EXIT_IN_SYNC
    assert "nothing to change" in capsys.readouterr().out
    assert main(["audit"]) == EXIT_IN_SYNC
    assert main(["plan", "--certificates", "unknown-cert"]) == EXIT_FAILED
    assert "unknown-cert does not exist" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "--certificates", ""],
        ["plan", "--certificates", "a,,b"],
        ["plan", "--certificates", "bad_name"],
        ["audit", "--certificates", "orders"],
        ["frobnicate"],
    ],
)
def test_operator_cli_usage_errors_have_their_own_exit_code(
    configured: Emulator, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    from shared.__main__ import EXIT_DRIFT, EXIT_USAGE, main

    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == EXIT_USAGE != EXIT_DRIFT
    assert "error:" in capsys.readouterr().err
    assert configured.count() == 0


def test_operator_cli_says_each_warning_once_and_verbose_shows_the_app_s_calls(
    configured: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.__main__ import EXIT_DRIFT, main

    emu = configured
    root = make_certificate("Offline Root", is_ca=True)
    issuing = make_certificate("Issuing CA", issuer=root, is_ca=True)
    leaf = make_certificate("backend.example", issuer=issuing)
    emu.vault.import_certificate("orders", pfx_secret(leaf.key, leaf.certificate, [issuing.certificate]))

    # Drift: without its root no gateway accepts the leaf (no partial chains, docs/gateway-model.md).
    assert main(["sync", "-v"]) == EXIT_DRIFT

    out, err = capsys.readouterr()
    assert (out + err).count("root missing: the secret stops at") == 1
    assert "versions orders" in err  # the app's own calls...
    assert "upload-certificate trustsync-local--issuing-ca-" in err  # ...and actions
    assert "Request headers" not in err  # not the SDK's HTTP logging
    assert "Authorization" not in err


def test_operator_cli_reports_configuration_errors(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.__main__ import EXIT_FAILED, main

    monkeypatch.setenv("TRUST_INTERMEDIATES", "perhaps")

    assert main(["plan"]) == EXIT_FAILED
    assert "TRUST_INTERMEDIATES" in capsys.readouterr().err


def test_a_near_expiry_event_is_one_warning_record_and_a_reconcile(
    configured: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    caplog.set_level(logging.INFO, logger="trustsync")

    deliver(emu.vault.certificate_event("orders", event_type=CERTIFICATE_NEAR_EXPIRY))

    (record,) = [r for r in caplog.records if r.getMessage().startswith("TRUSTSYNC_EXPIRY")]
    assert record.levelno == logging.WARNING
    assert "certificate=orders" in record.getMessage()
    days_left = (backend.leaf.certificate.not_valid_after_utc - datetime.now(UTC)).days
    assert f"days_left={days_left}" in record.getMessage()
    assert every_gateway_trusts(emu, backend.authority_ids)  # reconciled like any other event


def test_an_expired_version_leaves_the_desired_set(configured: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    emu = configured
    old_pki = Hierarchy(intermediates=1)
    old_leaf = old_pki.issue("orders.example", not_after=datetime.now(UTC) - timedelta(minutes=5))
    emu.vault.import_certificate(
        "orders", pfx_secret(old_leaf.key, old_leaf.certificate, old_pki.ca_certificates()), created=MONTH_AGO
    )
    old = Backend("orders", old_pki, old_leaf)
    arrange_trusted(emu, old)
    new = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))
    deliver(emu.vault.certificate_event("orders"))
    emu.clear_requests()
    caplog.set_level(logging.INFO, logger="trustsync")

    deliver(emu.vault.certificate_event("orders", emu.vault.versions("orders")[0], event_type=CERTIFICATE_EXPIRED))

    (record,) = [r for r in caplog.records if r.getMessage().startswith("TRUSTSYNC_EXPIRY")]
    assert "event=Microsoft.KeyVault.CertificateExpired" in record.getMessage()
    assert "days_left=-1" in record.getMessage()
    assert writes(emu) == 0  # an event only adds: what only the expired version needed goes in a full run
    planned = resync({"dryRun": True}).body["actions"]
    assert {(a["action"], a["certificateId"]) for a in planned if a["action"] == "delete-certificate"} == {
        ("delete-certificate", certificate_id) for certificate_id in old.authority_ids - new.authority_ids
    }


def test_verdicts_say_which_gateway_rejects_which_leaf_and_why(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    monkeypatch.setenv("TRUST_INTERMEDIATES", "false")  # the root is the gateways' only anchor
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    before = resync({"dryRun": True}).body
    assert before["verdicts"]["accepted"] == 0
    assert {(v["gateway"], v["certificate"]) for v in before["verdicts"]["rejected"]} == {
        (gateway, "orders") for gateway in GATEWAYS
    }
    assert all("missing intermediate" in v["reason"] for v in before["verdicts"]["rejected"])

    assert resync().body["inSync"] is True
    root_id = certificate_id_for(backend.authorities[-1])
    emu.apim.set_gateway_ca("gw-east", root_id, trusted=False)  # someone untrusts the root by hand

    after = resync({"dryRun": True}).body
    assert after["inSync"] is False
    ((rejected),) = after["verdicts"]["rejected"]
    assert (rejected["gateway"], rejected["verdict"]) == ("gw-east", "rejected")
    assert "no trusted anchor" in rejected["reason"]
    assert after["verdicts"]["accepted"] == 1


def test_operator_cli_status_shows_each_gateway_s_cas_and_verdicts(
    configured: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.__main__ import EXIT_DRIFT, EXIT_IN_SYNC, main

    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    emu.apim.add_certificate("corp-ca", backend.authorities[-1].der)
    emu.apim.set_gateway_ca("gw-west", "corp-ca", trusted=True)

    assert main(["status"]) == EXIT_DRIFT
    assert "REJECTED orders" in capsys.readouterr().out
    assert main(["sync"]) == EXIT_IN_SYNC
    capsys.readouterr()

    assert main(["status"]) == EXIT_IN_SYNC

    out = capsys.readouterr().out
    assert "gateway gw-west" in out
    assert "gateway gw-east" in out
    root_line = next(line for line in out.splitlines() if certificate_id_for(backend.authorities[-1]) in line)
    assert "Contoso Root CA" in root_line
    assert "true" in root_line
    assert " app " in root_line
    corp_line = next(line for line in out.splitlines() if "corp-ca" in line)
    assert "foreign" in corp_line
    assert out.count("accepted orders") == 2
    assert out.splitlines()[-1] == "summary: 2 accepted, 0 rejected verdict(s); 0 change(s) to make"
    assert writes(emu) == 2 + 2 * len(GATEWAYS)  # the sync's writes only: status writes nothing


def test_operator_cli_help_lists_exit_codes_settings_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    from shared.__main__ import main
    from shared.settings import SETTINGS

    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "``" not in shown  # plain text, not reStructuredText
    for code in ("0   in sync", "1   failed", "2   drift", "3   expiring", "4   partial", "64  usage"):
        assert code in shown
    assert all(setting.name in shown for setting in SETTINGS)
    assert "examples:" in shown
    assert "local.settings.json" in shown


def test_operator_cli_reads_local_settings_json_and_the_environment_wins(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.__main__ import EXIT_FAILED, EXIT_IN_SYNC, main

    values = {name: os.environ[name] for name in ("KEYVAULT_URL", "APIM_RESOURCE_ID")}
    for name in values:
        monkeypatch.delenv(name)
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"IsEncrypted": False, "Values": {**values, "MAX_CONCURRENCY": "many"}})
    )
    monkeypatch.chdir(tmp_path)

    assert main(["plan"]) == EXIT_FAILED  # the file's own bad value is read...
    assert "MAX_CONCURRENCY" in capsys.readouterr().err
    monkeypatch.setenv("MAX_CONCURRENCY", "4")  # ...and the environment wins over the file
    assert main(["plan"]) == EXIT_IN_SYNC
    assert "status: in-sync" in capsys.readouterr().out


def test_operator_cli_says_in_one_line_that_the_tls_roots_are_gone(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.__main__ import EXIT_FAILED, main

    gone = tmp_path / "emulator-ca.pem"  # what a stopped emulator leaves behind: a path to nothing
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(gone))

    assert main(["plan"]) == EXIT_FAILED

    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"cannot reach Azure: REQUESTS_CA_BUNDLE names {gone}, which does not exist")
    assert "Traceback" not in err


def test_operator_cli_without_a_credential_says_so_once_and_keeps_the_sdk_s_chatter_for_verbose(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.__main__ import EXIT_FAILED, main

    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "")  # no Azure CLI to fall back on either

    assert main(["plan"]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert "error:" in out
    assert "credential" in out.lower()
    assert err == ""  # the report's error line is the one place it is said

    assert main(["plan", "-v"]) == EXIT_FAILED
    assert "Credential" in capsys.readouterr().err  # the SDK's own account, when asked for


def test_two_deployments_on_one_apim_each_full_resync_leaves_the_other_s_entries_untouched(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two teams' deployments watch one vault (orders; payments and billing) and share one APIM
    service and a root hierarchy: each holds its own copies and takes away only its own."""
    emu = configured
    shared_pki = Hierarchy(intermediates=1)
    orders = import_version(emu, "orders", shared_pki, created=MONTH_AGO)
    import_version(emu, "payments", shared_pki, hostname="payments.internal.example")
    import_version(emu, "billing", Hierarchy(intermediates=1, organization="Fabrikam"), hostname="billing.example")
    team_a = {"DEPLOYMENT_ID": "teama", "CERTIFICATE_NAMES": "orders", "AUDIT_REMEDIATE": "true"}
    team_b = {"DEPLOYMENT_ID": "teamb", "CERTIFICATE_NAMES": "payments,billing", "AUDIT_REMEDIATE": "true"}

    def act_as(team: dict[str, str]) -> None:
        for name, value in team.items():
            monkeypatch.setenv(name, value)

    act_as(team_a)
    assert resync().body["status"] == "in-sync"
    act_as(team_b)
    answer = resync()
    assert answer.body["status"] == "in-sync", answer.body
    assert answer.body["deployment"] == "teamb"
    held_by = {
        team: {c.id for c in emu.apim.certificates.values() if c.id.startswith(f"trustsync-{team}--")}
        for team in ("teama", "teamb")
    }
    assert len(held_by["teama"]) == 2  # the shared chain twice: a copy each
    assert len(held_by["teamb"]) == 4
    b_certificates = {cid: emu.apim.certificates[cid].etag for cid in held_by["teamb"]}
    b_entries = {
        gw: {
            ca.certificate_id: ca.etag
            for ca in emu.apim.gateway_ca_entities(gw)
            if ca.certificate_id in held_by["teamb"]
        }
        for gw in GATEWAYS
    }
    # teama moves to another hierarchy and retires the shared one: its full runs take its copies away.
    import_version(emu, "orders", Hierarchy(intermediates=1, organization="Contoso 2"))
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    emu.clear_requests()

    act_as(team_a)
    answer = resync()
    audit()

    assert answer.status == 200
    assert answer.body["status"] == "in-sync", answer.body
    assert not orders.authority_ids & set(emu.apim.certificates)  # the default deployment's ids: never written
    assert not held_by["teama"] & set(emu.apim.certificates)  # teama's own copies of the shared chain: gone
    written = {record.path.rsplit("/", 1)[1] for record in emu.requests if record.is_write}
    assert written
    assert all(target.startswith("trustsync-teama--") for target in written), written
    assert {cid: emu.apim.certificates[cid].etag for cid in held_by["teamb"]} == b_certificates
    for gw in GATEWAYS:
        assert {
            ca.certificate_id: ca.etag
            for ca in emu.apim.gateway_ca_entities(gw)
            if ca.certificate_id in held_by["teamb"]
        } == b_entries[gw]
    act_as(team_b)
    assert resync({"dryRun": True}).body["actions"] == []  # teamb: still in sync, nothing of its own missing


def test_legacy_ids_migrate_to_the_deployment_s_own_with_no_moment_without_trust(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """APIM as the version before DEPLOYMENT_ID left it: every CA under a legacy id, trusted on both
    gateways, and one retired CA. In Azure (WEBSITE_SITE_NAME set, DEPLOYMENT_ID empty) the app
    adopts them: the additions come first, then the legacy entries go, and at no write does a
    gateway stop trusting a CA the needed leaf's path holds."""
    emu = configured
    monkeypatch.setenv("WEBSITE_SITE_NAME", "func-trustsync-abc")
    old = import_version(emu, "orders", Hierarchy(intermediates=1), created=MONTH_AGO)
    backend = import_version(emu, "orders", Hierarchy(intermediates=2, organization="Fabrikam"))
    retired = Certificate.from_x509(make_certificate("Retired CA", is_ca=True).certificate)
    legacy = {legacy_id(cert): cert for cert in [*old.authorities, *backend.authorities, retired]}
    for certificate_id, cert in legacy.items():
        emu.apim.add_certificate(certificate_id, cert.der)
        for gw in GATEWAYS:
            emu.apim.set_gateway_ca(gw, certificate_id, trusted=True)
    monitor = TrustMonitor(emu, [*old.authorities, *backend.authorities])
    monitor.watch()

    deliver(emu.vault.certificate_event("orders"))  # an event adds this deployment's entries, takes nothing
    assert set(legacy) < set(emu.apim.certificates)
    answer = resync()

    assert answer.status == 200
    assert answer.body["status"] == "in-sync", answer.body
    deployment = answer.body["deployment"]
    assert deployment == hashlib.sha256(b"func-trustsync-abc").hexdigest()[:10]
    own = {cid for cid in emu.apim.certificates if cid.startswith(f"trustsync-{deployment}--")}
    assert_trusts_exactly(emu, own)
    assert {emu.apim.certificates[cid].thumbprint for cid in own} == {
        cert.sha1_thumbprint for cert in [*old.authorities, *backend.authorities]
    }
    assert monitor.checks > 0
    monitor.assert_never_lost()
    removed = [r.path for r in emu.requests if r.operation == "arm.delete_gateway_ca"]
    assert len(removed) == len(legacy) * len(GATEWAYS)


def test_a_deployment_with_an_explicit_id_leaves_legacy_entries_to_the_one_that_adopts_them(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    retired = Certificate.from_x509(make_certificate("Retired CA", is_ca=True).certificate)
    emu.apim.add_certificate(legacy_id(retired), retired.der)
    for gw in GATEWAYS:
        emu.apim.set_gateway_ca(gw, legacy_id(retired), trusted=True)
    legacy_entries = {gw: emu.apim.gateway_ca_entities(gw) for gw in GATEWAYS}
    legacy_certificate = emu.apim.certificates[legacy_id(retired)].etag
    monkeypatch.setenv("DEPLOYMENT_ID", "teama")
    monkeypatch.setenv("AUDIT_REMEDIATE", "true")

    answer = resync()
    audit()

    assert answer.body["status"] == "in-sync", answer.body
    for gw in GATEWAYS:
        assert [ca for ca in emu.apim.gateway_ca_entities(gw) if ca.certificate_id == legacy_id(retired)] == (
            legacy_entries[gw]
        )
    assert emu.apim.certificates[legacy_id(retired)].etag == legacy_certificate
    assert legacy_id(retired) in emu.apim.certificates
    assert {cid for cid in emu.apim.certificates if cid.startswith("trustsync-teama--")} == {
        Ownership("teama").certificate_id(cert) for cert in backend.authorities
    }


def test_an_apim_without_a_self_hosted_gateway_is_not_in_sync_and_says_what_it_has(
    configured: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from shared.__main__ import EXIT_FAILED, main

    emu = configured
    for gw in GATEWAYS:
        emu.apim.remove_gateway(gw)
    emu.apim.sku = "BasicV2"  # a v2 tier: no self-hosted gateways
    import_version(emu, "orders", Hierarchy(intermediates=1))
    caplog.set_level(logging.INFO, logger="trustsync")

    answer = resync()
    deliver(emu.vault.certificate_event("orders"))  # logged as failed; a redelivery would not help
    monkeypatch.setenv("AUDIT_REMEDIATE", "false")
    audit()

    assert answer.status == 500
    assert answer.body["status"] == "failed"
    assert answer.body["inSync"] is False
    (error,) = answer.body["errors"]
    assert "tier BasicV2" in error
    assert "gateways: none" in error
    assert emu.apim.name in error
    (record,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TRUSTSYNC_AUDIT")]
    assert record.startswith("TRUSTSYNC_AUDIT status=failed ")
    assert main(["plan"]) == EXIT_FAILED
    assert "tier BasicV2" in capsys.readouterr().out
    assert emu.count("arm.get_service") == 4  # read once per run, each time no gateway was selected


def test_a_legacy_entry_whose_replacement_cannot_be_written_stays(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone else's certificate sits under the id the deployment would give the root: the root's
    legacy entry is then the only one trusting it, and it stays however often a full run comes."""
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    for cert in backend.authorities:
        emu.apim.add_certificate(legacy_id(cert), cert.der)
        for gw in GATEWAYS:
            emu.apim.set_gateway_ca(gw, legacy_id(cert), trusted=True)
    intermediate, root = backend.authorities
    squatter = Certificate.from_x509(make_certificate("Squatter", is_ca=True).certificate)
    emu.apim.add_certificate(certificate_id_for(root), squatter.der)
    monitor = TrustMonitor(emu, backend.authorities)
    monitor.watch()
    monkeypatch.setenv("AUDIT_REMEDIATE", "true")

    answer = resync()
    audit()

    assert answer.body["status"] == "drift"  # the squatter is a conflict until someone removes it
    monitor.assert_never_lost()
    for gw in GATEWAYS:
        assert emu.apim.gateway_cas(gw) == {legacy_id(root): True, certificate_id_for(intermediate): False}
    assert legacy_id(intermediate) not in emu.apim.certificates  # replaced, so gone
