"""Azure Functions bindings for APIM Trust Sync. Binding glue only: the work is in shared.handlers."""

from __future__ import annotations

import contextlib
import json
import logging

import azure.functions as func

from shared import telemetry
from shared.handlers import TrustSync
from shared.settings import SettingsError
from shared.telemetry import Trigger

# The SDKs log every HTTP request at INFO: too much for Application Insights, and nothing we need.
for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

telemetry.configure()  # metrics and correlated records to Application Insights, when its connection string is set
app = func.FunctionApp()
trust_sync = TrustSync()
with contextlib.suppress(SettingsError):
    trust_sync.settings()  # an invalid setting is logged once at start, naming every one at fault


@app.function_name("on_keyvault_event")
@app.event_grid_trigger(arg_name="event")
async def on_keyvault_event(event: func.EventGridEvent, context: func.Context) -> None:
    """Key Vault → Event Grid (Event Grid or CloudEvents schema) → reconcile the certificate it names."""
    # The worker hands over an EventGridEvent or, for the CloudEvents schema, a CloudEvent.
    event_type = getattr(event, "event_type", None) or getattr(event, "type", None)
    async with telemetry.invocation(Trigger.EVENT, context, event_id=event.id):
        await trust_sync.handle_event(event_type, event.id, event.get_json())


@app.function_name("on_keyvault_event_queue")
@app.queue_trigger(arg_name="message", queue_name="%EVENT_QUEUE_NAME%", connection="EventQueue")
async def on_keyvault_event_queue(message: func.QueueMessage, context: func.Context) -> None:
    """Private network mode: Key Vault → Event Grid → storage queue → reconcile the certificate it names."""
    # EVENT_QUEUE_NAME and the identity-based connection EventQueue__* are host settings (Bicep).
    async with telemetry.invocation(Trigger.EVENT, context, event_id=message.id):
        await trust_sync.handle_queue_message(message.get_body(), message.id)


@app.function_name("resync")
@app.route(route="resync", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
async def resync(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    async with telemetry.invocation(Trigger.RESYNC, context):
        answer = await trust_sync.handle_resync(req.get_body())
    return func.HttpResponse(json.dumps(answer.body, indent=2), status_code=answer.status, mimetype="application/json")


@app.function_name("drift_audit")
@app.timer_trigger(arg_name="timer", schedule="%AUDIT_SCHEDULE%", run_on_startup=False, use_monitor=True)
async def drift_audit(timer: func.TimerRequest, context: func.Context) -> None:
    async with telemetry.invocation(Trigger.AUDIT, context):
        await trust_sync.handle_audit()
