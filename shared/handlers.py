"""What each trigger does, free of the Functions binding types so the CLI and tests share it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.connect import clients_for
from shared.engine import Engine, Report, Scope
from shared.events import EventError, Ignore, route
from shared.settings import Settings, SettingsError, is_keyvault_object_name, load_settings, unbound_certificates

log = logging.getLogger("trustsync")

AUDIT_LOG_PREFIX = "TRUSTSYNC_AUDIT"  # the audit's one log record per run; the Azure Monitor alert queries it
MAX_RESYNC_BODY_BYTES = 64 * 1024
MAX_RESYNC_CERTIFICATES = 1000


class RetryableError(RuntimeError):
    """Raised from a trigger so that Event Grid delivers the event again later."""


def current_settings(environ: Mapping[str, str] | None = None) -> Settings:
    return load_settings(os.environ if environ is None else environ)


def engine_for(settings: Settings) -> Engine:
    return Engine(settings, clients_for(settings))


def check_settings_at_start() -> None:
    """Log a configuration error once at start; each invocation then fails with the same message."""
    try:
        current_settings()
    except SettingsError as error:
        log.error("configuration error: %s", error)


def invocation_settings() -> Settings:
    """The settings for one invocation; a configuration error is logged (one line naming the setting)
    and raised, so that the invocation fails and an event is delivered again once it is fixed."""
    try:
        return current_settings()
    except SettingsError as error:
        log.error("configuration error: %s", error)
        raise


async def handle_event(event_type: object, event_id: object, data: object) -> Report | None:
    """Reconcile the certificate a Key Vault event names. Raises `RetryableError` when a retry can help."""
    settings = invocation_settings()
    try:
        decision = route(event_type, event_id, data, settings.bindings)
    except EventError as error:
        # A malformed event will be just as malformed when Event Grid delivers it again: no retry.
        log.error("rejected event %s: %s", event_id, error)
        return None
    if isinstance(decision, Ignore):
        log.info("ignored event %s: %s", event_id, decision.reason)
        return None
    log.info(
        "event %s: %s for certificate %s (version %s)",
        event_id,
        decision.event.event_type,
        decision.certificate_name,
        decision.event.version,
    )
    scope = Scope(certificates=frozenset({decision.certificate_name}), vault_host=decision.binding.vault_host)
    report = await engine_for(settings).run(scope, apply=True)
    if report.retryable:
        raise RetryableError(f"event {event_id}: {'; '.join(report.errors)}")
    return report


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any]


async def handle_resync(body: bytes) -> HttpAnswer:
    """``POST /api/resync`` with an optional ``{"certificates": [...], "dryRun": bool}``."""
    try:
        settings = invocation_settings()
    except SettingsError as error:
        return HttpAnswer(500, {"error": f"configuration error: {error}"})
    try:
        certificates, dry_run = parse_resync_body(body)
    except ValueError as error:
        return HttpAnswer(400, {"error": str(error)})
    unbound = unbound_certificates(settings, certificates or ())
    if unbound:
        return HttpAnswer(400, {"error": f"not bound by CERTIFICATE_NAMES: {', '.join(unbound)}"})
    report = await engine_for(settings).run(Scope(certificates=certificates), apply=not dry_run)
    return HttpAnswer(500 if report.errors else 200, report.to_dict())


def parse_resync_body(body: bytes) -> tuple[frozenset[str] | None, bool]:
    """The certificates to resync (None: all) and whether to only plan. ValueError names the problem."""
    if len(body) > MAX_RESYNC_BODY_BYTES:
        raise ValueError(f"request body is {len(body)} bytes; at most {MAX_RESYNC_BODY_BYTES} are accepted")
    if not body.strip():
        return None, False
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"request body is not JSON: {error}") from None
    if not isinstance(request, dict):
        raise ValueError('request body must be a JSON object like {"certificates": ["name"], "dryRun": true}')
    unknown = sorted(set(request) - {"certificates", "dryRun"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; expected certificates and dryRun")
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise ValueError("dryRun must be true or false")
    names = request.get("certificates")
    if names is None:
        return None, dry_run
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError("certificates must be a non-empty list of Key Vault certificate names")
    if len(names) > MAX_RESYNC_CERTIFICATES:
        raise ValueError(f"certificates lists {len(names)} names; at most {MAX_RESYNC_CERTIFICATES} per request")
    invalid = [name for name in names if not is_keyvault_object_name(name)]
    if invalid:
        raise ValueError(f"certificates: {', '.join(map(repr, invalid))} is not a Key Vault certificate name")
    return frozenset(names), dry_run


async def handle_audit() -> Report:
    """The drift audit: a full-scope plan, applied only when AUDIT_REMEDIATE is true."""
    settings = invocation_settings()
    report = await engine_for(settings).run(Scope(), apply=settings.audit_remediate)
    level = {"in-sync": logging.INFO, "drift": logging.WARNING}.get(report.status, logging.ERROR)
    log.log(level, "%s status=%s %s", AUDIT_LOG_PREFIX, report.status, json.dumps(report.to_dict(), sort_keys=True))
    return report
