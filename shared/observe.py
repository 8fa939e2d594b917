"""APIM's side of a run's reads: the service (its tier, CA store, workspaces), which gateways the run
syncs, and each gateway's certificate authorities. Each read returns its value with its `Notes`.

APIM's certificate and gateway lists are read by the engine directly (`Executor.call`): every write
waits on them, so a failure there ends the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .executor import Executor, Turn
from .ports import ApimPort, ApimWorkspace, AzureCallError, GatewayCas, ServiceFacts
from .problems import NO_NOTES, Notes
from .service_kind import WORKSPACE_REASON, ServiceKind, Target, kind_of, no_trust_reason, offers_workspaces, targets
from .settings import MANAGED_GATEWAY, Settings


@dataclass(frozen=True)
class ServiceRead:
    """The service as read: its facts (None: unreadable) and its workspaces (reported, never written)."""

    facts: ServiceFacts | None
    workspaces: tuple[ApimWorkspace, ...]
    notes: Notes


@dataclass(frozen=True)
class Selection:
    """The gateways a run syncs, and what the report says of the service."""

    self_hosted: tuple[str, ...]  # every self-hosted gateway the service has
    selected: tuple[str, ...]  # those APIM_GATEWAYS selects
    tier: str
    targets: tuple[Target, ...]
    notes: Notes

    def others(self) -> list[str]:
        """The self-hosted gateways not selected: a full-scope run reads them too (what they use stays)."""
        return [gateway for gateway in self.self_hosted if gateway not in self.selected]


@dataclass(frozen=True)
class GatewayRead:
    """One gateway's certificate authorities as read (None: unreadable)."""

    name: str
    cas: GatewayCas | None
    notes: Notes = NO_NOTES


async def read_service(executor: Executor, apim: ApimPort) -> ServiceRead:
    """The service's tier and CA store, and its workspaces when its tier offers them."""
    try:
        facts = await executor.call(apim.service_facts)
    except AzureCallError as error:
        return ServiceRead(None, (), Notes.problem(str(error), retryable=True))
    if not offers_workspaces(facts.sku):
        return ServiceRead(facts, (), Notes())
    try:
        return ServiceRead(facts, tuple(await executor.call(apim.workspaces)), Notes())
    except AzureCallError as error:
        return ServiceRead(
            facts, (), workspace_read_failed(error, "workspaces/read and workspaceLinks/read", "its workspaces")
        )


def workspace_read_failed(error: AzureCallError, actions: str, what: str) -> Notes:
    """Workspaces are reported, never written: without the permission to read them (a deployment
    made before the service's tier offered them) the run says what it could not report; any
    other fault fails the run like any read, to be retried."""
    if error.status == 403:
        return Notes.warning(
            f"{what} could not be read ({error}): not reported; a deployment for this tier grants "
            f"Microsoft.ApiManagement/service/{actions}"
        )
    return Notes.problem(str(error), retryable=True)


async def read_gateway_cas(executor: Executor, apim: ApimPort, gateway: str) -> GatewayRead:
    try:
        return GatewayRead(gateway, await executor.call(apim.gateway_cas, gateway, turn=Turn.GATEWAY_READ))
    except AzureCallError as error:
        return GatewayRead(gateway, None, Notes.problem(str(error), retryable=True))


def select(settings: Settings, listed: Sequence[str], service: ServiceRead) -> Selection:
    """The selected self-hosted gateways. None selected is an error unless the service's own
    (classic managed) gateway can be judged instead; the error names what the service has and its tier."""
    wanted, name, facts = settings.gateways, settings.apim.name, service.facts
    self_hosted = tuple(gateway for gateway in listed if gateway != MANAGED_GATEWAY)
    notes = Notes()
    missing = sorted(g for g in wanted.names or () if g.lower() not in self_hosted)
    if missing:
        why = f"gateway(s) {', '.join(missing)} named in APIM_GATEWAYS do not exist in {name}"
        notes = Notes.problem(why, retryable=False)
    selected = tuple(gateway for gateway in self_hosted if gateway in wanted)
    found: tuple[Target, ...] = ()
    if facts is not None:
        found = tuple(
            targets(
                facts,
                self_hosted=list(selected),
                ca_store=settings.ca_store,
                backend_tls=settings.backend_tls,
                workspaces=service.workspaces,
            )
        )
    backends = facts is not None and kind_of(facts.sku) is ServiceKind.V2 and settings.backend_tls
    if not selected and not backends and (facts is None or kind_of(facts.sku) is not ServiceKind.CLASSIC):
        tier_said = facts.sku if facts is not None else "unknown (the service could not be read)"
        reason = no_trust_reason(facts, self_hosted=list(selected), backend_tls=settings.backend_tls) if facts else None
        existing = ", ".join(sorted(listed)) or "none"
        # Nothing can be trusted anywhere: not in sync, whatever else the run finds. A setting or
        # the service must change, so an event is not delivered again for it; the audit alerts.
        why = (
            f"no self-hosted gateway selected in {name} (tier {tier_said}; gateways: {existing}; "
            f"APIM_GATEWAYS={wanted}): nothing is trusted: "
            + (
                reason
                or "check APIM_RESOURCE_ID, and that the tier supports self-hosted gateways (Developer, Premium) "
                "and one is created"
            )
            + _workspaces_too(service.workspaces)
        )
        notes = notes + Notes.problem(why, retryable=False)
    return Selection(self_hosted, selected, facts.sku if facts is not None else "", found, notes)


def _workspaces_too(workspaces: Sequence[ApimWorkspace]) -> str:
    """The failure's tail naming the service's workspaces, whose gateways take no CA certificates either."""
    if not workspaces:
        return ""
    named = "; ".join(f"{w.id} ({', '.join(w.gateways) or 'no workspace gateway linked'})" for w in workspaces)
    return f"; its workspaces take none either ({WORKSPACE_REASON}): {named}"
