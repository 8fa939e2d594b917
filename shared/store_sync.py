"""The classic managed gateway's side of a run: its verdicts, and with CA_STORE=manage, the one write
of the service's CA store (the plan is the pure `shared.ca_store`'s)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .ca_store import StoreOutcome, StorePlan, StoreStatus, judge_store, plan_store
from .desired import Desired
from .executor import Executor
from .plan import Ownership
from .ports import ApimCertificate, ApimPort, AzureCallError, ServiceFacts
from .problems import NO_NOTES, Notes
from .service_kind import ServiceKind, kind_of
from .settings import Settings
from .verdicts import LeafVerdict

_CONFLICT = 409  # ARM: the service is updating (a CA store write runs 15 minutes or more)


@dataclass(frozen=True)
class StoreSync:
    """What a run did with the CA store and found of the managed gateway."""

    outcome: StoreOutcome | None = None  # with CA_STORE=manage
    verdicts: tuple[LeafVerdict, ...] = ()  # the managed gateway's, when its target is judged
    unjudged: tuple[LeafVerdict, ...] = ()  # beside self-hosted gateways and not written: said, not judged
    in_store: frozenset[str] = frozenset()  # thumbprints in the store: their APIM copies mark them the app's
    notes: Notes = NO_NOTES


async def sync_store(
    executor: Executor,
    apim: ApimPort,
    settings: Settings,
    *,
    desired: Desired,
    certificates: Mapping[str, ApimCertificate],
    facts: ServiceFacts,
    selected: Sequence[str],
    owner: Ownership,
    removals: bool,
    at: datetime,
) -> StoreSync:
    """A write only when the desired list differs, on a fresh read of the service, never while it is
    updating; nothing the app cannot reproduce is ever dropped (shared.ca_store)."""
    if kind_of(facts.sku) is not ServiceKind.CLASSIC:
        return StoreSync()
    verdicts = judge_store(desired, facts.ca_store, at=at)
    judged = StoreSync(verdicts=verdicts) if settings.ca_store or not selected else StoreSync(unjudged=verdicts)
    if not settings.ca_store:
        return judged
    in_store = frozenset(entry.thumbprint.upper() for entry in facts.ca_store)
    owned = {held.thumbprint.upper() for held in certificates.values() if owner.is_ours(held)}

    def ended(status: StoreStatus, why: str = "", plan: StorePlan | None = None, notes: Notes = NO_NOTES) -> StoreSync:
        return StoreSync(StoreOutcome(status, why, plan), judged.verdicts, judged.unjudged, in_store, notes)

    plan = plan_store(desired, facts.ca_store, owned=owned, removals=removals)
    if not plan.changes and plan.refusal is None:
        return ended(StoreStatus.IN_STEP)
    if plan.refusal is not None:
        return ended(StoreStatus.REFUSED, plan.refusal, plan)
    if not desired.complete:
        why = "not written: not every bound certificate could be read, and a write replaces the whole list"
        return ended(StoreStatus.PLANNED, why, plan)
    if executor.dry_run:
        return ended(StoreStatus.PLANNED, "a dry run", plan)
    try:
        fresh = await executor.call(apim.service_facts)  # the list may have changed since the run began
    except AzureCallError as error:
        return ended(StoreStatus.FAILED, str(error), plan, Notes.problem(str(error), retryable=True))
    if fresh.provisioning_state.lower() != "succeeded":
        busy = f"the service is updating (provisioningState {fresh.provisioning_state}): the next run writes"
        return ended(StoreStatus.BUSY, busy, plan)
    plan = plan_store(desired, fresh.ca_store, owned=owned, removals=removals)
    if plan.refusal is not None or not plan.changes:
        return ended(StoreStatus.REFUSED if plan.refusal is not None else StoreStatus.IN_STEP, plan.refusal or "", plan)
    try:
        await executor.call(apim.write_ca_store, plan.entries)
    except AzureCallError as error:
        if error.status == _CONFLICT:
            return ended(StoreStatus.BUSY, f"{error}: the next run writes", plan)
        return ended(StoreStatus.FAILED, str(error), plan, Notes.problem(str(error), retryable=True))
    started = "the service applies the update over the next minutes (15 or more); the next run confirms it"
    return ended(StoreStatus.STARTED, started, plan)
