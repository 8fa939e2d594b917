"""The workbook's and the alerts' KQL against what the code emits.

Runs that between them emit every record and metric (a rotation, an expiry event, an audit that
finds drift) are captured with in-memory exporters; every record prefix, metric name, custom
dimension, function name and compared value the queries use must be among what was emitted. A
rename on either side fails here, not in a dashboard that silently shows nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy, pfx_secret
from local.host import functions
from shared import records
from shared.events import CERTIFICATE_NEAR_EXPIRY
from shared.plan import ActionKind
from shared.records import AUDIT_RECORD, EXPIRY_RECORD
from shared.report import ActionStatus, RunStatus
from shared.scope import Mode
from shared.telemetry import Metric, Trigger
from tests.support.capture import Exported, attributes
from tests.support.harness import audit, deliver, import_version

ROOT = Path(__file__).resolve().parent.parent
WORKBOOK = ROOT / "infra" / "modules" / "workbook.json"
ALERTS = ROOT / "infra" / "modules" / "alerts.bicep"

PREFIX = re.compile(r"TRUSTSYNC_[A-Z_]+")
METRIC_NAME = re.compile(r"\"(trustsync\.[a-z_.]+)\"")
DIMENSION = re.compile(r"\bProperties(?:\.(\w+)|\[\s*[\"'](\w+)[\"']\s*\])")
# A value a column is compared with: == "x", != "x", in ("x", "y"), !in ("x").
COMPARED = re.compile(r"(?:==|!=|=~|!~)\s*\"([^\"]*)\"|\bin~?\s*\(([^)]*)\)")
# What the code's dimensions take their values from (a capture shows only some, e.g. no failed write).
VOCABULARY = {
    *(s.value for s in RunStatus),
    *(s.value for s in ActionStatus),
    *(kind.value for kind in ActionKind),
    *(trigger.value for trigger in Trigger),
    *(mode.value for mode in Mode),
    "accepted",
    "rejected",
    "full",
    "certificates",
}


@dataclass(frozen=True)
class Query:
    where: str
    text: str


def workbook_queries() -> list[Query]:
    workbook = json.loads(WORKBOOK.read_text())
    found = []

    def walk(item: Any, where: str) -> None:
        if isinstance(item, dict):
            content = item.get("content", {})
            if item.get("type") == 3:
                found.append(Query(f"workbook {item['name']}", content["query"]))
            for child in content.get("items", []) if isinstance(content, dict) else []:
                walk(child, where)

    for item in workbook["items"]:
        walk(item, "workbook")
    return found


def alert_queries() -> list[Query]:
    source = ALERTS.read_text()
    return [
        Query(f"alerts.bicep {name}", text)
        for name, text in re.findall(r"var (\w+Query) = format\('''(.*?)'''", source, re.DOTALL)
    ]


@dataclass(frozen=True)
class Emitted:
    prefixes: frozenset[str]
    metrics: frozenset[str]
    dimensions: frozenset[str]
    values: frozenset[str]
    bodies: tuple[str, ...]


@pytest.fixture
def emitted(configured: Emulator, exported: Exported, monkeypatch: pytest.MonkeyPatch) -> Emitted:
    emu = configured
    monkeypatch.setenv("AUDIT_REMEDIATE", "false")  # the audit reports the drift it finds
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("orders.example", not_after=datetime.now(UTC) + timedelta(days=12))
    emu.vault.import_certificate("orders", pfx_secret(leaf.key, leaf.certificate, pki.ca_certificates()))
    deliver(emu.vault.certificate_event("orders"))  # a rotation: uploads and gateway entries
    deliver(emu.vault.certificate_event("orders", event_type=CERTIFICATE_NEAR_EXPIRY))
    import_version(emu, "billing", Hierarchy(intermediates=1, organization="Billing"))  # no event: drift
    audit()  # drift (billing untrusted, rejected verdicts), the horizon, the audit record

    records = exported.logs.get_finished_logs()
    metrics = exported.metrics()
    bodies = [str(r.log_record.body) for r in records]
    dimensions = {key for r in records for key in attributes(r)}
    dimensions |= {key for points in metrics.values() for p in points for key in p.attributes}
    values = {str(value) for r in records for value in attributes(r).values()}
    values |= {str(value) for points in metrics.values() for p in points for value in p.attributes.values()}
    return Emitted(
        prefixes=frozenset(match.group() for body in bodies if (match := PREFIX.match(body))),
        metrics=frozenset(metrics),
        dimensions=frozenset(dimensions),
        values=frozenset(values),
        bodies=tuple(bodies),
    )


def test_the_capture_covers_every_record_metric_and_dimension_the_code_names(emitted: Emitted) -> None:
    assert {
        AUDIT_RECORD,
        EXPIRY_RECORD,
        records.RUN_RECORD,
        records.ACTION_RECORD,
        records.VERDICT_RECORD,
        records.HORIZON_RECORD,
    } <= emitted.prefixes
    assert set(Metric) <= emitted.metrics
    assert {str(d) for d in records.Dim} <= emitted.dimensions
    assert {"accepted", "rejected"} <= emitted.values


@pytest.mark.parametrize("query", [*workbook_queries(), *alert_queries()], ids=lambda q: q.where)
def test_each_query_names_only_what_the_code_emits(query: Query, emitted: Emitted) -> None:
    prefixes = set(PREFIX.findall(query.text))
    metrics = set(METRIC_NAME.findall(query.text))
    dimensions = {a or b for a, b in DIMENSION.findall(query.text)}
    assert prefixes <= emitted.prefixes, f"{query.where}: no record starts with {prefixes - emitted.prefixes}"
    assert metrics <= emitted.metrics, f"{query.where}: no metric named {metrics - emitted.metrics}"
    assert dimensions <= emitted.dimensions, f"{query.where}: no dimension {dimensions - emitted.dimensions}"
    # Every value a column is compared with is one the code emits: seen in the capture (a dimension's
    # value, a metric's name, a record's prefix) or in the vocabulary it draws from.
    known = emitted.values | emitted.metrics | emitted.prefixes | set(functions()) | VOCABULARY
    for single, listed in COMPARED.findall(query.text):
        compared = [single] if single else re.findall(r"\"([^\"]*)\"", listed)
        unknown = [value for value in compared if value and value not in known and not value.startswith("{")]
        assert not unknown, f"{query.where}: compares with {unknown}, which the code never emits"


def test_the_failure_queries_watch_the_app_s_functions() -> None:
    texts = "\n".join(q.text for q in [*workbook_queries(), *alert_queries()])
    watched = re.findall(r"OperationName in \(([^)]*)\)", texts)
    assert watched
    for names in watched:
        assert set(re.findall(r"\"(\w+)\"", names)) == set(functions())


def test_each_pattern_a_query_extracts_with_matches_the_records_it_reads(emitted: Emitted) -> None:
    patterns = [
        (query.where, pattern)
        for query in [*workbook_queries(), *alert_queries()]
        for pattern in re.findall(r"extract\(@\"([^\"]+)\"", query.text)
    ]
    assert any(AUDIT_RECORD in pattern for _, pattern in patterns)  # the alerts' status
    for where, pattern in patterns:
        prefix = PREFIX.search(pattern)
        meant = [b for b in emitted.bodies if b.startswith(prefix.group() if prefix else "TRUSTSYNC_")]
        assert meant, (where, pattern)
        for body in meant:
            match = re.match(pattern, body)
            assert match is not None, f"{where}: {pattern} does not match {body[:120]}"
            if prefix is not None and prefix.group() == AUDIT_RECORD:
                assert match.group(1) in {s.value for s in RunStatus}
                assert json.loads(body.split(" ", 2)[2])["status"] == match.group(1)


def test_a_renamed_metric_prefix_or_dimension_is_caught(emitted: Emitted) -> None:
    """The checks above can fail: the same queries with one name changed each do not pass."""
    renamed = [
        'AppTraces | where Message startswith "TRUSTSYNC_VERDICTS "',
        'AppMetrics | where Name == "trustsync.run"',
        "AppTraces | extend g = tostring(Properties.gatewayName)",
    ]
    for text in renamed:
        query = Query("renamed", text)
        with pytest.raises(AssertionError):
            test_each_query_names_only_what_the_code_emits(query, emitted)


def test_the_workbook_is_deployed_with_the_app_and_holds_no_other_names() -> None:
    main = (ROOT / "infra" / "main.bicep").read_text()
    assert "module workbook 'modules/workbook.bicep'" in main
    bicep = (ROOT / "infra" / "modules" / "workbook.bicep").read_text()
    placeholders = set(re.findall(r"__[A-Z_]+__", WORKBOOK.read_text()))
    assert placeholders == set(re.findall(r"'(__[A-Z_]+__)'", bicep))  # each one replaced at deployment
    assert "loadTextContent('workbook.json')" in bicep
