"""What a run tells Application Insights, captured with in-memory OpenTelemetry exporters: the metrics
and their dimensions, the correlation every record carries, and what the Azure Monitor exporter makes
of them (customDimensions, operation id). Through the real functions against the emulator."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import pytest
from azure.monitor.opentelemetry.exporter.export.logs._exporter import _convert_log_to_envelope
from azure.monitor.opentelemetry.exporter.export.metrics._exporter import _convert_point_to_envelope

from emulator import Emulator
from emulator.keyvault import CertificateVersion
from emulator.pki import Hierarchy
from local.host import functions
from shared import telemetry
from shared.engine import Engine
from shared.records import ACTION_RECORD, AUDIT_RECORD, HORIZON_RECORD, RUN_RECORD, VERDICT_RECORD, Dim
from shared.scope import Mode, Scope
from shared.telemetry import METRIC_DIMENSIONS, Metric
from tests.conftest import GATEWAYS
from tests.support.capture import Exported, attributes
from tests.support.harness import audit, deliver, import_version, resync
from tests.support.memory import Calls, MemoryApim, MemoryVault
from tests.support.memory import settings as memory_settings

CORRELATION = {Dim.TRIGGER, Dim.INVOCATION_ID}


def test_a_rotation_event_counts_its_run_and_writes_with_bounded_dimensions(
    configured: Emulator, exported: Exported
) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))

    deliver(emu.vault.certificate_event("orders"))

    (run,) = exported.points(Metric.RUNS)
    assert dict(run.attributes) == {"trigger": "event", "status": "in-sync", "mode": "additions"}
    assert run.value == 1
    writes = {(p.attributes["action"], p.attributes["status"]): p.value for p in exported.points(Metric.WRITES)}
    assert writes == {("upload-certificate", "applied"): 2, ("set-gateway-ca", "applied"): 2 * len(GATEWAYS)}
    for name in (Metric.DRIFT_ITEMS, Metric.REJECTED_VERDICTS):
        (point,) = exported.points(name)
        assert (point.count, point.sum) == (1, 0), name
    (expiry,) = exported.points(Metric.EXPIRY_SECONDS)
    leaf_seconds = (
        backend.leaf.certificate.not_valid_after_utc - backend.leaf.certificate.not_valid_before_utc
    ).total_seconds()
    assert 0 < expiry.max <= leaf_seconds
    (duration,) = exported.points(Metric.RUN_DURATION)
    assert duration.count == 1
    assert duration.sum > 0

    # Bounded: each metric has only its own dimensions, whose values never name a certificate,
    # a gateway or an id.
    names = {"orders", *GATEWAYS, *backend.authority_ids}
    for metric, points in exported.metrics().items():
        for point in points:
            assert set(point.attributes) <= METRIC_DIMENSIONS[Metric(metric)], metric
            assert not names & set(point.attributes.values()), (metric, point.attributes)
    # Azure Monitor's exporter sends each point under its name, with the dimensions as properties.
    envelope = _convert_point_to_envelope(run, Metric.RUNS)
    assert envelope.data is not None
    data: Any = envelope.data.base_data
    assert data.metrics[0].name == "trustsync.runs"
    assert data.properties == {"trigger": "event", "status": "in-sync", "mode": "additions"}


def test_every_record_of_an_event_run_carries_its_invocation_event_and_certificate(
    configured: Emulator, exported: Exported
) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    event = emu.vault.certificate_event("orders")

    deliver(event)

    records = exported.records()
    assert records
    invocation_ids = {attributes(r)[Dim.INVOCATION_ID] for r in records}
    assert len(invocation_ids) == 1  # one invocation, one id, on every record
    for record in records:
        found = attributes(record)
        assert found[Dim.TRIGGER] == "event", record.log_record.body
        assert found[Dim.EVENT_ID] == event["id"], record.log_record.body
        assert found[Dim.EVENT_TYPE] == "Microsoft.KeyVault.CertificateNewVersionCreated"
        assert found[Dim.CERTIFICATE] == "orders", record.log_record.body
    # Each write names its action, certificate id, gateway (for gateway entries) and outcome.
    actions = [attributes(r) for r in exported.records(ACTION_RECORD)]
    assert {(a[Dim.ACTION], a[Dim.CERTIFICATE_ID], a.get(Dim.GATEWAY), a[Dim.STATUS]) for a in actions} == {
        *(("upload-certificate", cid, None, "applied") for cid in backend.authority_ids),
        *(("set-gateway-ca", cid, gw, "applied") for cid in backend.authority_ids for gw in GATEWAYS),
    }
    (run,) = exported.records(RUN_RECORD)
    assert attributes(run)[Dim.STATUS] == "in-sync"
    verdicts = {attributes(r)[Dim.GATEWAY]: attributes(r)[Dim.VERDICT] for r in exported.records(VERDICT_RECORD)}
    assert verdicts == dict.fromkeys(GATEWAYS, "accepted")

    # What Azure Monitor's exporter makes of one: the dimensions become customDimensions, and the
    # operation id is the trace the host handed the invocation (its AppRequests row has the same).
    envelope = _convert_log_to_envelope(run)
    assert envelope.data is not None
    message: Any = envelope.data.base_data
    properties = message.properties
    assert {key: properties[key] for key in (Dim.TRIGGER, Dim.EVENT_ID, Dim.CERTIFICATE, Dim.STATUS)} == {
        "trigger": "event",
        "eventId": event["id"],
        "certificate": "orders",
        "status": "in-sync",
    }
    assert properties[Dim.INVOCATION_ID] == next(iter(invocation_ids))
    assert envelope.tags is not None
    assert envelope.tags["ai.operation.id"] == f"{run.log_record.trace_id:032x}" != "0" * 32
    assert len({r.log_record.trace_id for r in records}) == 1


def test_an_audit_says_per_gateway_and_certificate_whether_it_would_accept_and_what_expires_next(
    configured: Emulator, exported: Exported, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    deliver(emu.vault.certificate_event("orders"))
    monkeypatch.setenv("AUDIT_REMEDIATE", "false")
    issuing_id = next(cid for cid in backend.authority_ids if "issuing" in cid)
    emu.apim.delete_gateway_ca(GATEWAYS[1], issuing_id, if_match="*")  # someone removes the intermediate by hand
    exported.logs.clear()

    audit()

    verdicts = {
        (attributes(r)[Dim.GATEWAY], attributes(r)[Dim.CERTIFICATE]): attributes(r)
        for r in exported.records(VERDICT_RECORD)
    }
    assert set(verdicts) == {(gateway, "orders") for gateway in GATEWAYS}
    assert verdicts[GATEWAYS[0], "orders"][Dim.VERDICT] == "accepted"
    assert verdicts[GATEWAYS[1], "orders"][Dim.VERDICT] == "rejected"
    assert verdicts[GATEWAYS[1], "orders"][Dim.REASON]
    horizon = [attributes(r) for r in exported.records(HORIZON_RECORD)]
    (version,) = emu.vault.versions("orders")
    assert [(h[Dim.CERTIFICATE], h[Dim.VERSION]) for h in horizon if Dim.CERTIFICATE in h] == [("orders", version)]
    assert {h[Dim.GATEWAY] for h in horizon if Dim.GATEWAY in h} == set(GATEWAYS)
    assert all(isinstance(h[Dim.DAYS_LEFT], int) and h[Dim.EXPIRES] and h[Dim.ITEM] for h in horizon)
    (record,) = exported.records(AUDIT_RECORD)
    assert attributes(record)[Dim.TRIGGER] == "audit"
    assert json.loads(str(record.log_record.body).split(" ", 2)[2])["status"] == "drift"

    (run,) = [p for p in exported.points(Metric.RUNS) if p.attributes["trigger"] == "audit"]
    assert dict(run.attributes) == {"trigger": "audit", "status": "drift", "mode": "dry-run"}
    (rejected,) = [p for p in exported.points(Metric.REJECTED_VERDICTS) if p.attributes["trigger"] == "audit"]
    assert rejected.sum == 1
    (drift,) = [p for p in exported.points(Metric.DRIFT_ITEMS) if p.attributes["trigger"] == "audit"]
    assert drift.sum == 1  # the intermediate's entry to put back, planned and not applied
    assert {p.attributes["status"] for p in exported.points(Metric.WRITES) if p.attributes["trigger"] == "audit"} == {
        "planned"
    }


def test_concurrent_invocations_keep_their_own_correlation(configured: Emulator, exported: Exported) -> None:
    emu = configured
    for name in ("orders", "billing"):
        import_version(emu, name, Hierarchy(intermediates=1, organization=name))
    events = {name: emu.vault.certificate_event(name) for name in ("orders", "billing")}
    start = threading.Barrier(2)

    def deliver_when_both_ready(event: dict[str, Any]) -> None:
        start.wait()
        deliver(event)

    threads = [threading.Thread(target=deliver_when_both_ready, args=(event,)) for event in events.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    by_event: dict[str, set[tuple[str, str]]] = {}
    for record in exported.records():
        found = attributes(record)
        by_event.setdefault(found[Dim.EVENT_ID], set()).add((found[Dim.CERTIFICATE], found[Dim.INVOCATION_ID]))
    assert {event_id: {c for c, _ in pairs} for event_id, pairs in by_event.items()} == {
        event["id"]: {name} for name, event in events.items()
    }
    assert all(len(pairs) == 1 for pairs in by_event.values())  # one invocation id per event
    assert len({pair for pairs in by_event.values() for pair in pairs}) == 2


def test_a_resync_s_records_say_resync_and_nothing_exported_holds_key_material(
    configured: Emulator, exported: Exported
) -> None:
    emu = configured
    import_version(emu, "orders", Hierarchy(intermediates=1))

    assert resync({"certificates": ["orders"]}).status == 200

    records = exported.records()
    assert {attributes(r)[Dim.TRIGGER] for r in records} == {"resync"}
    assert {attributes(r).get(Dim.CERTIFICATE) for r in records} == {"orders"}
    stored = emu.vault.secret("orders")
    assert isinstance(stored, CertificateVersion)
    secret = stored.secret_value
    for record in records:
        text = str(record.log_record.body) + json.dumps(attributes(record), default=str)
        assert "PRIVATE KEY" not in text
        assert secret[40:120] not in text


def test_telemetry_is_off_unless_a_connection_string_is_set(configured: Emulator) -> None:
    functions()

    assert telemetry.configure({}) is False
    assert telemetry.configure({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}) is False
    # The tests never set one: nothing configured the distro, nor attached its handler.
    assert not telemetry._configured
    handlers = logging.getLogger(telemetry.LOGGER_NAME).handlers
    assert not [h for h in handlers if type(h).__module__.startswith("opentelemetry")]


def test_a_run_s_records_are_written_by_telemetry_record_alone_and_the_audit_s_only_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = Calls()
    vault, apim = MemoryVault(calls), MemoryApim(calls)
    apim.add_gateways("gw-1")
    vault.add_version("orders", Hierarchy(intermediates=1))
    vault.add_version("retired", Hierarchy(intermediates=1, organization="Retired"), enabled=False)

    def lines() -> list[tuple[int, str]]:
        return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "trustsync"]

    with caplog.at_level(logging.INFO, logger="trustsync"):
        report = asyncio.run(Engine(memory_settings(), vault, apim).run(Scope(), Mode.FULL))
        assert report.outcomes
        assert report.warnings == ["certificate retired has no enabled version: nothing of it is trusted"]
        assert lines() == []  # the engine returns its report and writes no record of it

        telemetry.Telemetry().record(report, seconds=1.0)
        recorded = lines()
        assert [m for _, m in recorded if m.startswith(ACTION_RECORD)] == [
            f"{ACTION_RECORD} applied {outcome.action.describe()}" for outcome in report.outcomes
        ]
        assert (logging.WARNING, report.warnings[0]) in recorded
        assert sum(m.startswith(RUN_RECORD) for _, m in recorded) == 1
        assert not any(m.startswith(AUDIT_RECORD) for _, m in recorded)

        caplog.clear()
        telemetry.Telemetry().record(report, seconds=1.0, audit=True)
        (audit_line,) = [(level, m) for level, m in lines() if m.startswith(AUDIT_RECORD)]
        assert audit_line[0] == logging.INFO  # its level is the run's status: in sync
        assert json.loads(audit_line[1].split(" ", 2)[2]) == report.to_dict()
