"""The operator's view: `status` as the diagnosis of a gateway's "RemoteCertificateValidationCallback",
the JSON contract of every command (docs/report.schema.json), and output that never contradicts
itself. End to end: the CLI in-process against the emulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization

from emulator import Emulator
from emulator.pki import Hierarchy, make_certificate, pfx_secret
from shared.__main__ import EXIT_DRIFT, EXIT_EXPIRING, TerminalProgress, main
from shared.findings import _RULES, Severity, classify
from shared.ports import Work
from tests.conftest import GATEWAYS
from tests.support.harness import import_version

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "report.schema.json").read_text())


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--json"])
    answer: dict[str, Any] = json.loads(capsys.readouterr().out)
    jsonschema.validate(answer, SCHEMA, format_checker=jsonschema.FormatChecker())
    return code, answer


def without_its_root(emu: Emulator, name: str = "payments") -> None:
    root = make_certificate("Offline Root", is_ca=True)
    issuing = make_certificate("Issuing CA", issuer=root, is_ca=True)
    leaf = make_certificate("payments.example", issuer=issuing, dns_names=["payments.example"])
    emu.vault.import_certificate(name, pfx_secret(leaf.key, leaf.certificate, [issuing.certificate]))


def foreign_entry(emu: Emulator, gateway: str, *, trusted: bool) -> None:
    corp = make_certificate("Corp CA", is_ca=True)
    emu.apim.add_certificate("corp-ca", corp.certificate.public_bytes(serialization.Encoding.DER))
    emu.apim.set_gateway_ca(gateway, "corp-ca", trusted=trusted)


def test_every_command_s_json_validates_against_the_schema_with_findings_and_ca_lists(
    configured: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = configured
    import_version(emu, "orders", Hierarchy(intermediates=1))
    without_its_root(emu)
    foreign_entry(emu, "gw-west", trusted=False)

    _, planned = run_json(capsys, "plan")
    _, synced = run_json(capsys, "sync")
    _, audited = run_json(capsys, "audit")
    code, status = run_json(capsys, "status")

    assert code == EXIT_DRIFT
    for answer in (planned, synced, audited, status):
        assert answer["schemaVersion"] == 1
        (finding,) = answer["findings"]
        assert (finding["severity"], finding["code"], finding["certificate"]) == ("warning", "root-missing", "payments")
        assert finding["message"] == answer["warnings"][0]  # the sentence readers before the schema read
    assert "diagnosis" not in planned  # plan and status answer different questions
    west = next(gateway for gateway in status["gateways"] if gateway["gateway"] == "gw-west")
    corp = next(entry for entry in west["certificateAuthorities"] if entry["certificateId"] == "corp-ca")
    assert (corp["isTrusted"], corp["owner"], corp["subject"]) == (False, "foreign", "CN=Corp CA")
    assert {gateway["gateway"] for gateway in status["gateways"]} == set(GATEWAYS)
    by_leaf = {(d["gateway"], d["certificate"]): d for d in status["diagnosis"]}
    assert set(by_leaf) == {(gateway, name) for gateway in GATEWAYS for name in ("orders", "payments")}
    payments = by_leaf[("gw-east", "payments")]
    assert (payments["verdict"], payments["next"], payments["gatewayKind"]) == ("rejected", "reimport", "self-hosted")
    assert payments["sanNames"] == ["payments.example"]
    orders = by_leaf[("gw-east", "orders")]
    assert (orders["verdict"], orders["next"], orders["reason"]) == ("accepted", "none", None)
    assert orders["sanNames"] == ["backend.internal.example"]


def test_a_conflict_and_an_error_are_objects_with_their_codes(
    configured: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    from shared.plan import certificate_id_for

    squatted = certificate_id_for(backend.authorities[-1])  # the root's id, holding another certificate
    foreign = make_certificate("Squatter CA", is_ca=True)
    emu.apim.add_certificate(squatted, foreign.certificate.public_bytes(serialization.Encoding.DER))
    monkeypatch.setenv("APIM_GATEWAYS", "gw-east,gw-north")

    _, planned = run_json(capsys, "plan")

    codes = {(f["severity"], f["code"]) for f in planned["findings"]}
    assert ("conflict", "foreign-certificate-id") in codes
    assert ("error", "gateway-not-found") in codes
    assert len(planned["findings"]) == len(planned["conflicts"]) + len(planned["warnings"]) + len(planned["errors"])


def test_status_shows_what_the_plan_says_of_an_expiring_leaf_and_a_secret_without_its_root(
    configured: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = configured
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("orders.example", not_after=datetime.now(UTC) + timedelta(days=4))
    emu.vault.import_certificate("orders", pfx_secret(leaf.key, leaf.certificate, pki.ca_certificates()))
    assert main(["sync"]) == EXIT_EXPIRING
    capsys.readouterr()

    assert main(["status"]) == EXIT_EXPIRING
    out = capsys.readouterr().out
    assert out.count("EXPIRING orders") == len(GATEWAYS)  # not "accepted": the plan says it expires
    assert "accepted orders" not in out
    assert "hosts: orders.example" in out
    assert "next: renew it in Key Vault" in out
    assert "the managed gateway" in out  # the causes the app cannot see, named
    assert (
        out.splitlines()[-1]
        == f"summary: {len(GATEWAYS)} accepted ({len(GATEWAYS)} expiring), 0 rejected verdict(s); 0 change(s) to make"
    )

    without_its_root(emu)
    assert main(["sync"]) == EXIT_DRIFT
    capsys.readouterr()
    assert main(["status"]) == EXIT_DRIFT
    out = capsys.readouterr().out
    shown = [line for line in out.splitlines() if "REJECTED payments" in line]
    assert len([line for line in shown if not line.lstrip().startswith("managed")]) == len(GATEWAYS)
    assert "accepted payments" not in out
    assert out.count("next: re-import it in Key Vault with the full chain") == len(GATEWAYS)
    assert out.splitlines()[-1].startswith(
        f"summary: {len(GATEWAYS)} accepted ({len(GATEWAYS)} expiring), {len(GATEWAYS)} rejected"
    )


def test_plan_never_says_nothing_to_change_beside_a_status_that_is_not_in_sync(
    configured: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = configured
    without_its_root(emu)
    assert main(["sync"]) == EXIT_DRIFT  # uploads what the secret holds; still rejected
    capsys.readouterr()

    assert main(["plan"]) == EXIT_DRIFT
    out = capsys.readouterr().out
    assert "status: drift" in out
    assert "nothing to change" not in out
    assert "no change this app can make, yet not in sync" in out
    assert "`status` says why" in out


def test_every_finding_code_the_classifier_gives_is_in_the_schema() -> None:
    schema_codes = set(SCHEMA["$defs"]["finding"]["properties"]["code"]["enum"])
    given = {code for _, code, _ in _RULES} | {severity.value for severity in Severity}

    assert given == schema_codes


@pytest.mark.parametrize(
    ("severity", "message", "code", "certificate", "gateway"),
    [
        (Severity.WARNING, "orders (v1): root missing: the secret stops at CN=I", "root-missing", "orders", None),
        (
            Severity.WARNING,
            "kept corp on gw-east: without it gw-east would reject orders (v1): no trusted anchor",
            "kept-for-verdict",
            "orders",
            "gw-east",
        ),
        (Severity.ERROR, "certificate web version 3: not a PFX", "invalid-chain", "web", None),
        (Severity.ERROR, "list gateways: HTTP 500 Internal: boom", "azure-call-failed", None, None),
        (Severity.WARNING, "something new on gw-west", "warning", None, "gw-west"),
    ],
)
def test_a_sentence_is_classified_by_its_form(
    severity: Severity, message: str, code: str, certificate: str | None, gateway: str | None
) -> None:
    found = classify(severity, message, gateways=["gw-east", "gw-west"])

    assert (found.code, found.certificate, found.gateway, found.message) == (code, certificate, gateway, message)


def test_the_progress_bar_only_moves_forward_when_more_work_is_planned() -> None:
    progress = TerminalProgress(after=3600.0, clock=lambda: 0.0)  # never shown: only its state is read
    seen = []
    steps = [("planned", 8), *[("done", 1)] * 8, ("planned", 8), *[("done", 1)] * 4, ("planned", 2), ("done", 6)]
    for what, count in steps:
        getattr(progress, what)(Work.KEYVAULT_READS, count)
        seen.append(progress.fraction(Work.KEYVAULT_READS))

    assert seen == sorted(seen)  # never back, though the count went from 8/8 to 12/16
    assert seen[8] < 1.0  # 8/8 is not shown as finished while the run may discover more
    assert seen[-1] > seen[8]
