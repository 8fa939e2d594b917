"""What each trigger does, free of the Functions binding types so that the CLI and tests share it.

`TrustSync` is the app as a worker runs it: settings read per invocation (an invalid one fails
that invocation with a message naming it), clients kept for the worker's life. The trigger of a
run's records is set where the invocation enters (`telemetry.invocation`: each Function, the CLI);
the handlers add the event and certificate, and `Telemetry.record` writes every record of a run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .clients import ClientPool
from .engine import Engine
from .events import EventError, Ignore, ReconcileBundle, parse_queue_message, route
from .gather import KnownVersions
from .ports import NoProgress, Progress
from .records import EXPIRY_RECORD, Dim
from .report import Report, RunStatus
from .scope import Mode, Scope
from .settings import (
    Remediation,
    Settings,
    SettingsError,
    is_keyvault_object_name,
    load_settings,
    unbound_certificates,
)
from .telemetry import Telemetry, annotate, correlate, install_correlation

log = logging.getLogger("trustsync")

MAX_RESYNC_BODY_BYTES = 64 * 1024
MAX_RESYNC_CERTIFICATES = 1000
# Azure's front end drops an HTTP request after 230 s whatever the function timeout: a resync stops
# starting writes in time to answer (partial, with what is left) before that.
HTTP_ANSWER_BUDGET = timedelta(seconds=220)
_AUDIT_MODES = {Remediation.REPORT: Mode.DRY_RUN, Remediation.ADDITIONS: Mode.ADDITIONS, Remediation.ALL: Mode.FULL}


class RetryableError(RuntimeError):
    """Raised from a trigger so that Event Grid delivers the event again later."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any]


class TrustSync:
    def __init__(self, environ: Mapping[str, str] = os.environ, telemetry: Telemetry | None = None) -> None:
        self.environ = environ
        self.clients = ClientPool(environ)
        self.telemetry = telemetry or Telemetry()  # metrics and summary records of each run
        self.progress: Progress = NoProgress()  # the CLI shows it on a terminal
        self.known = KnownVersions()  # the worker's: a version's secret is read once while it is kept
        install_correlation()  # every trustsync record carries the run's trigger, invocation and event

    def settings(self) -> Settings:
        """The settings for one invocation; a configuration error is logged (one line naming every
        invalid setting) and raised, so that the invocation fails and an event is delivered again
        once it is fixed."""
        try:
            return load_settings(self.environ)
        except SettingsError as error:
            log.error("configuration error: %s", error)
            raise

    def engine(self, settings: Settings) -> Engine:
        clients = self.clients.clients_for(settings)
        return Engine(
            settings, clients.vault, clients.apim, pacer=clients.pacer, progress=self.progress, known=self.known
        )

    async def run(
        self, settings: Settings, scope: Scope, mode: Mode, *, budget: timedelta | None = None, audit: bool = False
    ) -> Report:
        """One engine run, recorded (`Telemetry.record`: its metrics and every record of it)."""
        started = time.monotonic()
        report = await self.engine(settings).run(scope, mode, budget=budget)
        self.telemetry.record(report, seconds=time.monotonic() - started, audit=audit)
        return report

    async def close(self) -> None:
        await self.clients.close()

    async def handle_event(self, event_type: object, event_id: object, data: object) -> Report | None:
        """Reconcile the certificate a Key Vault event names. Raises `RetryableError` when a retry can help."""
        with correlate(
            event_id=str(event_id)[:100] if event_id else None,
            event_type=event_type[:200] if isinstance(event_type, str) else None,
        ):
            return await self._handle_event(event_type, event_id, data)

    async def _handle_event(self, event_type: object, event_id: object, data: object) -> Report | None:
        settings = self.settings()
        try:
            decision = route(event_type, event_id, data, settings)
        except EventError as error:
            # A malformed event will be just as malformed when Event Grid delivers it again: no retry.
            log.error("rejected event %s: %s", str(event_id)[:100], error)
            return None
        if isinstance(decision, Ignore):
            log.info("ignored event %s: %s", event_id, decision.reason)
            return None
        if isinstance(decision, ReconcileBundle):
            return await self._handle_bundle_event(settings, event_id, decision)
        event = decision.event
        annotate(certificate=decision.certificate_name)
        if event.is_expiry:
            days = "unknown" if event.expires is None else (event.expires - datetime.now(UTC)).days
            log.warning(
                "%s certificate=%s version=%s event=%s days_left=%s",
                EXPIRY_RECORD,
                decision.certificate_name,
                event.version,
                event.event_type,
                days,
                extra={Dim.VERSION: event.version or "", **({Dim.DAYS_LEFT: days} if isinstance(days, int) else {})},
            )
        log.info(
            "event %s: %s for certificate %s (version %s)",
            event_id,
            event.event_type,
            decision.certificate_name,
            event.version,
        )
        scope = Scope(certificates=frozenset({decision.certificate_name}))
        report = await self.run(settings, scope, Mode.ADDITIONS)
        if report.retryable:
            raise RetryableError(f"event {event_id}: {'; '.join(report.errors)}")
        if report.status is RunStatus.PARTIAL:
            # What the rotation needs is not all in yet: a redelivery (minutes away, not the next audit)
            # continues from what APIM holds; the writes already made are not repeated.
            raise RetryableError(f"event {event_id}: partial, left for a redelivery: {report.left()}")
        return report

    async def _handle_bundle_event(self, settings: Settings, event_id: object, decision: ReconcileBundle) -> Report:
        """A bundle's new version: a run over the bundles alone (no certificate), adding trust only, as
        for a certificate's event; the audit's full run takes away what left the bundle."""
        log.info("event %s: %s for trust bundle %s", event_id, decision.event.event_type, decision.secret_name)
        report = await self.run(settings, Scope(certificates=frozenset()), Mode.ADDITIONS)
        if report.retryable:
            raise RetryableError(f"event {event_id}: {'; '.join(report.errors)}")
        if report.status is RunStatus.PARTIAL:
            raise RetryableError(f"event {event_id}: partial, left for a redelivery: {report.left()}")
        return report

    async def handle_queue_message(self, body: bytes | str, message_id: object = None) -> Report | None:
        """An event Event Grid wrote to the storage queue (private network mode), as `handle_event`.

        A message that holds no event is logged and dropped: like a malformed event, it would be just
        as malformed on every dequeue. `RetryableError` fails the invocation, so the queue delivers
        the message again (host.json ``extensions.queues``) and after the last attempt moves it to the
        poison queue.
        """
        try:
            queued = parse_queue_message(body)
        except EventError as error:
            log.error("rejected queue message %s: %s", str(message_id)[:100], error)
            return None
        return await self.handle_event(queued.event_type, queued.event_id, queued.data)

    async def handle_resync(self, body: bytes) -> HttpAnswer:
        """``POST /api/resync`` with an optional ``{"certificates": [...], "dryRun": bool}``."""
        with correlate():  # what the run annotates ends with it
            return await self._handle_resync(body)

    async def _handle_resync(self, body: bytes) -> HttpAnswer:
        try:
            settings = self.settings()
        except SettingsError as error:
            return HttpAnswer(500, {"error": f"configuration error: {error}"})
        try:
            certificates, dry_run = parse_resync_body(body)
        except ValueError as error:
            return HttpAnswer(400, {"error": str(error)})
        unbound = unbound_certificates(settings, certificates or ())
        if unbound:
            return HttpAnswer(400, {"error": f"certificates: not in CERTIFICATE_NAMES: {', '.join(unbound)}"})
        mode = Mode.DRY_RUN if dry_run else Mode.FULL
        annotate(certificate=next(iter(certificates)) if certificates is not None and len(certificates) == 1 else None)
        budget = min(settings.run_time_budget, HTTP_ANSWER_BUDGET)
        report = await self.run(settings, Scope(certificates=certificates), mode, budget=budget)
        if report.missing:
            return HttpAnswer(404, {"error": f"certificates: not in Key Vault: {', '.join(report.missing)}"})
        return HttpAnswer(500 if report.errors else 200, report.to_dict())

    async def handle_audit(self) -> Report:
        """The drift audit: a full-scope run that writes what AUDIT_REMEDIATE allows, and one log record."""
        settings = self.settings()
        return await self.run(settings, Scope(), _AUDIT_MODES[settings.audit_remediate], audit=True)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON parsers disagree on which of two equal keys wins: {"dryRun": true, "dryRun": false} must
    # not apply because this one takes the last.
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"request body names {key} twice")
        found[key] = value
    return found


def parse_resync_body(body: bytes) -> tuple[frozenset[str] | None, bool]:
    """The certificates to resync (None: all) and whether to only plan. ValueError names the problem."""
    if len(body) > MAX_RESYNC_BODY_BYTES:
        raise ValueError(f"request body is {len(body)} bytes; at most {MAX_RESYNC_BODY_BYTES} are accepted")
    if not body.strip():
        return None, False
    try:
        request = json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"request body is not JSON: {error}") from None
    except RecursionError:
        raise ValueError("request body is not JSON this endpoint accepts: nested too deeply") from None
    if not isinstance(request, dict):
        raise ValueError('request body must be a JSON object like {"certificates": ["name"], "dryRun": true}')
    unknown = sorted(set(request) - {"certificates", "dryRun"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; expected certificates and dryRun")
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise ValueError("dryRun must be true or false")
    if "certificates" not in request:
        return None, dry_run
    names = request["certificates"]
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError(
            "certificates must be a non-empty list of Key Vault certificate names (leave it out for every certificate)"
        )
    if len(names) > MAX_RESYNC_CERTIFICATES:
        raise ValueError(f"certificates lists {len(names)} names; at most {MAX_RESYNC_CERTIFICATES} per request")
    invalid = [name for name in names if not is_keyvault_object_name(name)]
    if invalid:
        raise ValueError(f"certificates: {', '.join(map(repr, invalid[:10]))} is not a Key Vault certificate name")
    return frozenset(names), dry_run
