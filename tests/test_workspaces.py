"""Workspaces, end to end through the real SDK client's pipeline against the emulator: their gateways
take no CA certificates, so they are reported (with the gateways serving them and the reason), never
written; their backends are listed as not changed.

The emulator's routes follow the 2024-05-01 examples in Azure/azure-rest-api-specs,
specification/apimanagement/resource-manager/Microsoft.ApiManagement/stable/2024-05-01/examples/:
ApiManagementListWorkspaces.json (``name``, ``properties.displayName``) and
ApiManagementListWorkspaceLinks.json (``properties.workspaceId`` and ``properties.gateways[].id``, the
``Microsoft.ApiManagement/gateways`` resources serving the workspace); workspace backends are read at
the backends' pinned preview (2025-03-01-preview), as the service's are.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

from emulator import Emulator
from emulator.pki import Hierarchy
from tests.conftest import GATEWAYS
from tests.support.harness import audit, import_version, resync

REASON = "workspace gateways take no CA certificates"
SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "report.schema.json").read_text())


def with_workspaces(emu: Emulator, sku: str) -> Emulator:
    emu.apim.sku = sku
    emu.apim.add_workspace("payments", display_name="Payments team", gateways=("wsgw-eu", "wsgw-us"))
    emu.apim.add_workspace("search")  # served by the managed gateway: no link lists it
    return emu


def workspace_targets(body: dict[str, object]) -> list[dict[str, object]]:
    service = body["service"]
    assert isinstance(service, dict)
    return [t for t in service["targets"] if str(t["name"]).startswith("workspace ")]


def test_workspaces_and_their_gateways_are_reported_not_judged_across_pages(configured: Emulator) -> None:
    emu = with_workspaces(configured, "Premium")
    emu.page_size = 1  # every list in pages of one: nextLink is followed
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "in-sync", answer.body  # the self-hosted gateways trust the chain
    assert workspace_targets(answer.body) == [
        {
            "kind": "no trust can be set",
            "name": "workspace payments",
            "manages": f"{REASON} (no certificate authorities, no CA store): a backend with a private CA cannot "
            "be trusted there (gateways wsgw-eu, wsgw-us)",
            "judged": False,
        },
        {
            "kind": "no trust can be set",
            "name": "workspace search",
            "manages": f"{REASON} (no certificate authorities, no CA store): a backend with a private CA cannot "
            "be trusted there (no workspace gateway linked)",
            "judged": False,
        },
    ]
    jsonschema.validate(answer.body, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert emu.count("arm.list_workspaces") == 2  # two pages of one
    assert emu.count("arm.list_workspace_links") == 1  # one linked workspace: one page
    assert all(not r.operation.startswith("arm.list_workspace") or r.method == "GET" for r in emu.requests)


def test_the_audit_record_and_the_cli_status_name_the_workspaces(
    configured: Emulator, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.__main__ import main

    emu = with_workspaces(configured, "Premium")
    import_version(emu, "orders", Hierarchy(intermediates=1))
    caplog.set_level(logging.INFO, logger="trustsync")

    audit()
    main(["status"])

    (record,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("TRUSTSYNC_AUDIT")]
    report = json.loads(record.split(" ", 2)[2])
    assert [t["name"] for t in workspace_targets(report)] == ["workspace payments", "workspace search"]
    out = capsys.readouterr().out
    assert "no trust can be set workspace payments: workspace gateways take no CA certificates" in out
    assert "(gateways wsgw-eu, wsgw-us) (not judged)" in out


def test_a_tier_where_only_workspaces_could_serve_is_not_in_sync_and_names_them(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = with_workspaces(configured, "StandardV2")
    for gateway in GATEWAYS:
        emu.apim.remove_gateway(gateway)
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "failed"
    assert answer.body["inSync"] is False
    (error,) = answer.body["errors"]
    assert "ignores the service's CA store" in error
    assert f"its workspaces take none either ({REASON}" in error
    assert "payments (wsgw-eu, wsgw-us); search (no workspace gateway linked)" in error
    writes = [r for r in emu.requests if r.is_write]
    assert {r.operation for r in writes} == {"arm.put_certificate"}  # the CAs' copies only: none for a workspace


@pytest.mark.parametrize("sku", ["Developer", "Basic", "Standard", "Isolated", "Consumption"])
def test_a_tier_without_workspaces_costs_no_workspace_request(configured: Emulator, sku: str) -> None:
    emu = configured
    emu.apim.sku = sku
    emu.apim.add_workspace("payments", gateways=("wsgw-eu",))  # not offered there: never asked for
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert emu.count("arm.list_workspaces") == 0
    assert emu.count("arm.list_workspace_links") == 0
    assert workspace_targets(answer.body) == []


def test_workspace_backends_serving_a_bound_certificate_are_listed_not_changed(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = with_workspaces(configured, "PremiumV2")
    for gateway in GATEWAYS:
        emu.apim.remove_gateway(gateway)
    monkeypatch.setenv("BACKEND_TLS", "manage")
    emu.apim.add_backend("orders-api", "https://backend.internal.example/")
    emu.apim.add_workspace_backend("payments", "orders-ws", "https://backend.internal.example/pay")
    emu.apim.add_workspace_backend("payments", "public", "https://api.example.org/")  # serves no bound certificate
    before = dict(emu.apim.workspace("payments").backends)
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "in-sync", answer.body
    assert answer.body["service"]["backends"] == [
        {"backend": "orders-api", "certificate": "orders", "status": "applied"},
        {
            "backend": "payments/orders-ws",
            "certificate": "orders",
            "status": "not changed",
            "detail": "workspace backend",
        },
    ]
    jsonschema.validate(answer.body, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert emu.apim.workspace("payments").backends == before  # same contracts and ETags
    (patch,) = [r for r in emu.requests if r.operation == "arm.update_backend"]
    assert "/workspaces/" not in patch.path
    listed = [r for r in emu.requests if r.operation == "arm.list_workspace_backends"]
    assert sorted(r.path.rsplit("/", 2)[-2] for r in listed) == ["payments", "search"]  # each workspace, once
    assert {r.api_version for r in listed} == {"2025-03-01-preview"}


def test_only_workspace_backends_serving_the_certificate_is_not_in_sync(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = with_workspaces(configured, "StandardV2")
    for gateway in GATEWAYS:
        emu.apim.remove_gateway(gateway)
    monkeypatch.setenv("BACKEND_TLS", "manage")
    emu.apim.add_workspace_backend("payments", "orders-ws", "https://backend.internal.example/")
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "failed"
    (error,) = answer.body["errors"]
    assert "nothing is pinned (1 workspace backend(s) serve one, which the app does not change)" in error
    assert answer.body["service"]["backends"] == [
        {
            "backend": "payments/orders-ws",
            "certificate": "orders",
            "status": "not changed",
            "detail": "workspace backend",
        }
    ]
    assert emu.count("arm.update_backend") == 0


def test_without_permission_to_read_workspaces_the_run_says_so_and_stays_in_sync(configured: Emulator) -> None:
    emu = with_workspaces(configured, "Premium")
    emu.faults.add("arm.list_workspace_links", status=403)  # a deployment made before the tier offered workspaces
    import_version(emu, "orders", Hierarchy(intermediates=1))

    answer = resync()

    assert answer.body["status"] == "in-sync", answer.body  # the gateways the app manages trust the chain
    assert workspace_targets(answer.body) == []
    (warning,) = [w for w in answer.body["warnings"] if "its workspaces could not be read" in w]
    assert "Microsoft.ApiManagement/service/workspaces/read and workspaceLinks/read" in warning
