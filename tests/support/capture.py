"""What the app hands its OpenTelemetry exporters, captured in memory (no network): a MeterProvider
for its `Telemetry`, and an OpenTelemetry LoggingHandler on the trustsync logger, where the Azure
Monitor distro puts Azure Monitor's exporters in a deployment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from emulator import Emulator
from local.host import functions
from shared import telemetry
from shared.telemetry import Metric, Telemetry


@dataclass
class Exported:
    """What the app handed its OpenTelemetry exporters."""

    reader: InMemoryMetricReader
    logs: InMemoryLogRecordExporter

    def records(self, prefix: str = "") -> list[ReadableLogRecord]:
        return [r for r in self.logs.get_finished_logs() if str(r.log_record.body).startswith(prefix)]

    def points(self, name: Metric) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


def attributes(record: ReadableLogRecord) -> dict[str, Any]:
    return dict(record.log_record.attributes or {})


@pytest.fixture
def exported(configured: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Exported]:
    """The function app with in-memory exporters where the distro would put Azure Monitor's: a
    MeterProvider for its `Telemetry`, and an OpenTelemetry LoggingHandler on the trustsync logger."""
    functions()  # indexes function_app (its settings now point at the emulator)
    import function_app

    reader = InMemoryMetricReader()
    monkeypatch.setattr(function_app.trust_sync, "telemetry", Telemetry(MeterProvider(metric_readers=[reader])))
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger(telemetry.LOGGER_NAME)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield Exported(reader, logs)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
