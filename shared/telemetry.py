"""What a run tells Application Insights: metrics, and log records that carry the run's correlation.

An edge module (the core never imports it): it reads the finished `Report` and turns it into

- **metrics**, through the OpenTelemetry metrics API: runs by trigger and outcome, writes by action
  kind, drift items, rejected verdicts, seconds until the earliest expiry, run duration. Every
  dimension has a fixed, small vocabulary: no certificate, gateway or id is ever a metric dimension;
- **log records** on the ``trustsync`` logger, each starting with a prefix that queries look for:
  one ``TRUSTSYNC_RUN`` per run, one ``TRUSTSYNC_VERDICT`` per (gateway, certificate) the run
  judged, one ``TRUSTSYNC_HORIZON`` per needed certificate version and per gateway (what expires
  next), one ``TRUSTSYNC_ACTION`` per action with its outcome, the report's warnings, conflicts
  and errors, and for the drift audit one ``TRUSTSYNC_AUDIT`` with the whole report. `Telemetry.record`
  is the one place a finished run's records and metrics are written; the handlers' ``TRUSTSYNC_EXPIRY``
  (an event's, before any run) completes the vocabulary. Every record and dimension name is in
  `shared.records`, which the core imports too.

Correlation: `invocation` (the one place a trigger is set: each Function, and the CLI, enter through
it) and `correlate` (the handlers add the event) keep, in a context variable, the trigger, the Functions invocation id, the Event Grid event id and type and, when a run
is about one certificate, its name; `CorrelationFilter` copies them onto every record of the
``trustsync`` logger as attributes, which the OpenTelemetry log exporter sends as custom dimensions.
Asyncio tasks copy the context they are created in, so each concurrent invocation keeps its own.

Export: off unless `configure` finds ``APPLICATIONINSIGHTS_CONNECTION_STRING`` (the deployment sets
it; local runs and the tests do not). Then the Azure Monitor OpenTelemetry distro sends the metrics
and the ``trustsync`` records (authenticated with Entra ID when ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
says so), and those records stop propagating to the worker's root handler, so the Functions host
does not relay a second copy without the dimensions. Until then every instrument is the API's no-op.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import json
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import metrics
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .expiry import within
from .records import ACTION_RECORD, AUDIT_RECORD, HORIZON_RECORD, RUN_RECORD, VERDICT_RECORD, Dim
from .report import ActionStatus, Report, RunStatus

LOGGER_NAME = "trustsync"
CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# Set, the Python worker configures the distro itself (its root logger); the app then leaves it alone.
WORKER_TELEMETRY_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"

log = logging.getLogger(LOGGER_NAME)

# -- Names that queries, the workbook and the alerts use (tests/test_telemetry.py checks them) ------


class Trigger(enum.StrEnum):
    EVENT = "event"
    RESYNC = "resync"
    AUDIT = "audit"
    CLI = "cli"


class Metric(enum.StrEnum):
    RUNS = "trustsync.runs"  # counter: trigger, status, mode
    WRITES = "trustsync.writes"  # counter: trigger, action, status (every outcome, planned ones included)
    DRIFT_ITEMS = "trustsync.drift.items"  # histogram, one value per run: trigger, scope
    REJECTED_VERDICTS = "trustsync.verdicts.rejected"  # histogram, one value per run: trigger, scope
    EXPIRY_SECONDS = "trustsync.expiry.seconds"  # histogram, one value per run that needs anything: trigger, scope
    RUN_DURATION = "trustsync.run.duration"  # histogram (s): trigger, status


METRIC_DIMENSIONS: Mapping[Metric, frozenset[Dim]] = {
    Metric.RUNS: frozenset({Dim.TRIGGER, Dim.STATUS, Dim.MODE}),
    Metric.WRITES: frozenset({Dim.TRIGGER, Dim.ACTION, Dim.STATUS}),
    Metric.DRIFT_ITEMS: frozenset({Dim.TRIGGER, Dim.SCOPE}),
    Metric.REJECTED_VERDICTS: frozenset({Dim.TRIGGER, Dim.SCOPE}),
    Metric.EXPIRY_SECONDS: frozenset({Dim.TRIGGER, Dim.SCOPE}),
    Metric.RUN_DURATION: frozenset({Dim.TRIGGER, Dim.STATUS}),
}

# -- Correlation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Correlation:
    trigger: str | None = None
    invocation_id: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    certificate: str | None = None

    def dimensions(self) -> dict[str, str]:
        return dict(_dimensions(self))


@functools.lru_cache(maxsize=256)
def _dimensions(correlation: Correlation) -> tuple[tuple[str, str], ...]:
    """A correlation's dimensions, worked out once per correlation (frozen, so hashable): the filter
    asks for them on every record, and an audit logs one per gateway and certificate."""
    keys = {
        "trigger": Dim.TRIGGER,
        "invocation_id": Dim.INVOCATION_ID,
        "event_id": Dim.EVENT_ID,
        "event_type": Dim.EVENT_TYPE,
        "certificate": Dim.CERTIFICATE,
    }
    found = {keys[f.name]: getattr(correlation, f.name) for f in fields(correlation)}
    return tuple((str(key), value) for key, value in found.items() if value)


_current: contextvars.ContextVar[Correlation] = contextvars.ContextVar(
    "trustsync_correlation",
    default=Correlation(),  # noqa: B039 - frozen, never mutated
)


def current() -> Correlation:
    return _current.get()


@contextmanager
def correlate(**given: str | None) -> Iterator[Correlation]:
    """Add to the correlation of the code inside; what is not given (or None) stays as it was."""
    token = _current.set(replace(_current.get(), **{key: value for key, value in given.items() if value}))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def annotate(**given: str | None) -> None:
    """Add to the correlation until the enclosing `correlate` ends (which restores what it found)."""
    _current.set(replace(_current.get(), **{key: value for key, value in given.items() if value}))


class CorrelationFilter(logging.Filter):
    """Copies the correlation onto each record; what the call gave in ``extra`` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _dimensions(current()):
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def install_correlation(logger: logging.Logger = log) -> None:
    if not any(isinstance(existing, CorrelationFilter) for existing in logger.filters):
        logger.addFilter(CorrelationFilter())


class _TraceContext(Protocol):
    @property
    def trace_parent(self) -> str: ...

    @property
    def trace_state(self) -> str: ...


class InvocationContext(Protocol):
    """What the app reads of the Functions worker's ``func.Context``."""

    @property
    def invocation_id(self) -> str: ...

    @property
    def trace_context(self) -> _TraceContext: ...


@asynccontextmanager
async def invocation(
    trigger: Trigger, context: InvocationContext | None, **given: str | None
) -> AsyncIterator[Correlation]:
    """One function invocation: its correlation, the host's trace as the current OpenTelemetry context
    (so exported records share the invocation's operation id), and exported telemetry flushed at the
    end (an idle Flex Consumption instance may be stopped before a periodic export)."""
    carrier = {}
    if context is not None and context.trace_context.trace_parent:
        carrier = {"traceparent": context.trace_context.trace_parent, "tracestate": context.trace_context.trace_state}
    token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier)) if carrier else None
    try:
        with correlate(
            trigger=trigger, invocation_id=context.invocation_id if context is not None else None, **given
        ) as correlation:
            yield correlation
    finally:
        if token is not None:
            otel_context.detach(token)
        await flush()


# -- Export ----------------------------------------------------------------------------------------

_configured = False
# The distro's instrumentations are left off: the app's own records say what each call did, and an
# instrumentation per Azure SDK call would multiply the telemetry (and the cold start).
_INSTRUMENTATIONS = ("azure_sdk", "django", "fastapi", "flask", "httpx", "psycopg2", "requests", "urllib", "urllib3")


def configure(environ: Mapping[str, str] = os.environ) -> bool:
    """Export metrics and ``trustsync`` records to Application Insights when the connection string
    is set; otherwise do nothing (locally, in tests). Returns whether telemetry is exported."""
    global _configured
    if _configured:
        return True
    if not environ.get(CONNECTION_STRING_SETTING, "").strip():
        return False
    install_correlation()
    if environ.get(WORKER_TELEMETRY_SETTING, "").strip().lower() == "true":
        _configured = True  # the worker configured the distro for its root logger already
        return True
    # Imported here: the distro costs about half a second of cold start, paid only where it exports.
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(
        connection_string=environ[CONNECTION_STRING_SETTING],
        logger_name=LOGGER_NAME,
        disable_tracing=True,
        enable_live_metrics=False,
        enable_performance_counters=False,
        instrumentation_options={name: {"enabled": False} for name in _INSTRUMENTATIONS},
    )
    log.propagate = False  # one copy of each record, with its dimensions: not relayed by the host too
    _configured = True
    return True


async def flush() -> None:
    """Send what the exporters hold, off the event loop; nothing when telemetry is not exported."""
    if _configured:
        await asyncio.to_thread(_flush_providers)


def _flush_providers() -> None:
    from opentelemetry._logs import get_logger_provider

    for provider in (metrics.get_meter_provider(), get_logger_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            force_flush(5_000)


# -- Metrics and records of a finished run -----------------------------------------------------------


class Telemetry:
    """Records a finished run: its metrics (through `meter_provider`, by default the global one,
    a no-op until `configure` installs the distro's) and its summary records."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("trustsync")
        self._runs = meter.create_counter(Metric.RUNS, unit="{run}", description="Runs by trigger, status and mode")
        self._writes = meter.create_counter(
            Metric.WRITES,
            unit="{action}",
            description="Actions by kind and outcome (applied, failed, skipped, planned)",
        )
        self._drift = meter.create_histogram(
            Metric.DRIFT_ITEMS, unit="{item}", description="Actions left undone and conflicts, per run"
        )
        self._rejected = meter.create_histogram(
            Metric.REJECTED_VERDICTS, unit="{verdict}", description="Rejected verdicts (gateway x needed leaf), per run"
        )
        self._expiry = meter.create_histogram(
            Metric.EXPIRY_SECONDS,
            unit="s",
            description="Seconds until the earliest expiry the run found (negative: expired)",
        )
        self._duration = meter.create_histogram(Metric.RUN_DURATION, unit="s", description="Run duration")

    def record(self, report: Report, *, seconds: float, audit: bool = False) -> None:
        """Every record and metric of a finished run; `audit`: the drift audit's record too."""
        trigger = current().trigger or "unknown"
        _log_outcomes(report)
        status, mode = report.status.value, report.mode.value
        scope = "full" if report.scope.is_full else "certificates"
        drift = sum(o.status is not ActionStatus.APPLIED for o in report.outcomes) + len(report.conflicts)
        rejected = sum(not verdict.accepted for verdict in report.verdicts)
        earliest = report.horizon.earliest if report.horizon is not None else None

        self._runs.add(1, _extra({Dim.TRIGGER: trigger, Dim.STATUS: status, Dim.MODE: mode}))
        done = Counter((o.action.kind.value, o.status.value) for o in report.outcomes)
        for (kind, outcome), count in sorted(done.items()):
            self._writes.add(count, _extra({Dim.TRIGGER: trigger, Dim.ACTION: kind, Dim.STATUS: outcome}))
        by_scope = _extra({Dim.TRIGGER: trigger, Dim.SCOPE: scope})
        self._drift.record(drift, by_scope)
        self._rejected.record(rejected, by_scope)
        if earliest is not None and report.horizon is not None:
            self._expiry.record((earliest - report.horizon.now).total_seconds(), by_scope)
        self._duration.record(seconds, _extra({Dim.TRIGGER: trigger, Dim.STATUS: status}))

        _log_verdicts(report)
        _log_horizon(report)
        log.info(
            "%s status=%s trigger=%s scope=%s mode=%s actions=%d errors=%d seconds=%.1f",
            RUN_RECORD,
            status,
            trigger,
            scope,
            mode,
            len(report.outcomes),
            len(report.errors),
            seconds,
            extra=_extra(
                {
                    Dim.STATUS: status,
                    Dim.MODE: mode,
                    Dim.SCOPE: scope,
                    Dim.DURATION_SECONDS: round(seconds, 3),
                    Dim.DRIFT_ITEMS: drift,
                    Dim.REJECTED_VERDICTS: rejected,
                    Dim.ERRORS: len(report.errors),
                    Dim.EARLIEST_EXPIRY: earliest.isoformat() if earliest else None,
                }
            ),
        )
        if audit:
            level = _AUDIT_LEVELS.get(report.status, logging.WARNING)
            log.log(level, "%s status=%s %s", AUDIT_RECORD, status, json.dumps(report.to_dict(), sort_keys=True))


_AUDIT_LEVELS = {RunStatus.IN_SYNC: logging.INFO, RunStatus.FAILED: logging.ERROR}  # the rest: WARNING


def _log_outcomes(report: Report) -> None:
    """One record per action with its outcome; then the warnings (a missing root, a retired
    certificate), the conflicts (an entry not ours that blocks the desired trust) and the errors:
    an event run's report goes nowhere else."""
    for outcome in report.outcomes:
        action = outcome.action
        dimensions: dict[str, str] = {
            Dim.ACTION: action.kind.value,
            Dim.CERTIFICATE_ID: action.certificate_id,
            Dim.STATUS: outcome.status.value,
            **({Dim.GATEWAY: action.gateway} if action.gateway else {}),
        }
        log.info("%s %s %s", ACTION_RECORD, outcome.status.value, action.describe(), extra=dimensions)
    for message in report.warnings:
        log.warning("%s", message)
    for message in report.conflicts:
        log.warning("conflict: %s", message)
    for message in report.errors:
        log.error("%s", message)


def _log_verdicts(report: Report) -> None:
    """One record per (gateway, certificate): rejected when any needed version's leaf is."""
    pairs: dict[tuple[str, str], list[Any]] = {}
    for verdict in report.verdicts:
        pairs.setdefault((verdict.gateway, verdict.needed.certificate_name), []).append(verdict)
    for (gateway, certificate), verdicts in sorted(pairs.items()):
        rejected = [v for v in verdicts if not v.accepted]
        word = "rejected" if rejected else "accepted"
        log.info(
            "%s %s gateway=%s certificate=%s versions=%d%s",
            VERDICT_RECORD,
            word,
            gateway,
            certificate,
            len(verdicts),
            f": {rejected[0].verdict.reason}" if rejected else "",
            extra=_extra(
                {
                    Dim.GATEWAY: gateway,
                    Dim.CERTIFICATE: certificate,
                    Dim.VERDICT: word,
                    Dim.VERSION: ",".join(v.needed.version for v in verdicts),
                    Dim.REASON: rejected[0].verdict.reason if rejected else None,
                }
            ),
        )


def _log_horizon(report: Report) -> None:
    """What expires next: each needed certificate version (its leaf or its earliest CA, whichever
    is first) and each gateway (the earliest CA it trusts through the app)."""
    horizon = report.horizon
    if horizon is None:
        return
    for item in horizon.certificates:
        ca_first = item.earliest_ca_expires is not None and item.earliest_ca_expires < item.leaf_expires
        expires = item.earliest_ca_expires if ca_first and item.earliest_ca_expires else item.leaf_expires
        what = f"CA {item.earliest_ca}" if ca_first else "leaf"
        _log_expiry(
            f"certificate={item.certificate_name} version={item.version} {what}",
            expires,
            horizon.now,
            horizon.warning.days,
            {Dim.CERTIFICATE: item.certificate_name, Dim.VERSION: item.version, Dim.ITEM: what},
            within(expires, horizon.now, horizon.warning),
        )
    for gateway in horizon.gateways:
        _log_expiry(
            f"gateway={gateway.gateway} {gateway.certificate_id}",
            gateway.expires,
            horizon.now,
            horizon.warning.days,
            {
                Dim.GATEWAY: gateway.gateway,
                Dim.CERTIFICATE_ID: gateway.certificate_id,
                Dim.ITEM: gateway.certificate_id,
            },
            within(gateway.expires, horizon.now, horizon.warning),
        )


def _log_expiry(
    what: str, expires: datetime, now: datetime, warning_days: int, dims: dict[Dim, Any], expiring: bool
) -> None:
    days = (expires - now).days
    log.info(
        "%s %s expires=%s days_left=%d%s",
        HORIZON_RECORD,
        what,
        expires.isoformat(),
        days,
        f" (within EXPIRY_WARNING_DAYS={warning_days})" if expiring else "",
        extra=_extra({**dims, Dim.EXPIRES: expires.isoformat(), Dim.DAYS_LEFT: days, Dim.EXPIRING: expiring}),
    )


def _extra(dims: Mapping[Dim, Any]) -> dict[str, Any]:
    """Record or metric attributes: plain string keys, no None (OpenTelemetry drops it with a warning)."""
    return {str(key): value for key, value in dims.items() if value is not None}
