"""The engine: read what Key Vault needs and what APIM holds, plan with pure functions, write.

The event trigger, the resync endpoint and the drift audit are this one run with a different
scope and mode (`shared.scope`):

- a scoped run (an event, a resync naming certificates) reconciles those certificates to Key
  Vault's *current* state (not an event's version), so duplicate and out-of-order deliveries
  converge, and only ever adds trust;
- a full-scope run (a resync of everything, the audit) may also take away what the app created
  and nothing needs any more, once every addition is in and after one last look at Key Vault.

A run is values flowing into one executor: the reads (`shared.gather` for Key Vault,
`shared.observe` for APIM) return the desired and the observed state with their `Notes`; the pure
plan (`shared.plan`) turns them into actions, each stamped with its `Precedence`; the executor
(`shared.executor`: slots, pacer lane, time budget, progress, dry run, failures) turns actions into
outcomes; the report is built once, at the end, from those values. Everything else is tasks
awaiting what they need, so a run reads as the dependency graph it is:

    Key Vault: names → versions → secrets → paths ─┐
    APIM: certificate list ────────────────────────┴→ uploads ─┐
    APIM: gateway list → each gateway's CA list ───────────────┴→ that gateway's puts
    (full scope, removals planned) → Key Vault's version lists again → removals → deletions

A read every write waits on (Key Vault's certificate list, APIM's certificate and gateway lists)
that fails ends the run: its `AzureCallError` is reported, as a retryable error, by `Engine.run`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from .backend_sync import BackendSync, sync_backends
from .backend_tls import BackendOutcome
from .ca_store import keep_store_copies
from .desired import Desired
from .executor import LEFT, Executor, write_problems
from .expiry import Horizon, expiry_horizon
from .gather import KeyVaultReads, KnownVersions
from .observe import GatewayRead, read_gateway_cas, read_service, select
from .pacing import Pacer
from .plan import Action, ActionKind, Observed, Ownership, Uploads, plan_additions, plan_narrowing, plan_uploads
from .ports import ApimPort, AzureCallError, NoProgress, Progress, VaultPort
from .problems import NO_NOTES, Notes, Problem, gathered
from .report import ActionStatus, GatewayEntries, Outcome, Report, gateway_entries
from .scope import Mode, Scope
from .service_kind import ServiceKind, Target, kind_of
from .settings import Settings
from .store_sync import StoreSync, sync_store
from .verdicts import LeafVerdict, judge, keep_accepted

E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True)
class Found:
    """Everything a run read, did and judged: what its report is built from."""

    notes: Notes
    missing: tuple[str, ...] = ()  # certificates a scoped run named that Key Vault does not hold
    outcomes: tuple[Outcome, ...] = ()
    conflicts: tuple[str, ...] = ()
    horizon: Horizon | None = None
    verdicts: tuple[LeafVerdict, ...] = ()
    gateways: tuple[GatewayEntries, ...] = ()
    tier: str = ""
    targets: tuple[Target, ...] = ()
    store: StoreSync = field(default_factory=StoreSync)
    backends: tuple[BackendOutcome, ...] = ()


class Engine:
    def __init__(
        self,
        settings: Settings,
        vault: VaultPort,
        apim: ApimPort,
        *,
        pacer: Pacer | None = None,
        progress: Progress | None = None,
        known: KnownVersions | None = None,
    ) -> None:
        self.settings = settings
        self.vault = vault
        self.apim = apim
        self.known = known if known is not None else KnownVersions()  # the worker's, when it keeps one
        self.pacer = pacer or Pacer()  # the clients' (shared by the runs on a worker); unlimited alone
        self.progress = progress or NoProgress()

    async def run(self, scope: Scope, mode: Mode, *, budget: timedelta | None = None) -> Report:
        """One run. Azure failures end up in the report (and make it retryable); bugs propagate.

        Writes start only while the run is within `budget` (RUN_TIME_BUDGET by default); what does
        not fit is reported as left (``partial``) for the next run, which continues from APIM's state.
        """
        if mode is Mode.FULL and not scope.is_full:
            mode = Mode.ADDITIONS  # only a full-scope run sees enough to take anything away
        budget = budget or self.settings.run_time_budget
        started = time.monotonic()
        try:
            found = await _Run(self, scope, mode, budget).execute()
        except* AzureCallError as failures:
            found = Found(Notes(problems=tuple(Problem(str(error), True) for error in _leaves(failures))))
        return _report(found, scope, mode, self.settings.deployment.id, budget, time.monotonic() - started)


@dataclass(frozen=True)
class _Gateway:
    """One gateway's part of a run: its CA list as read, its puts' outcomes, and its conflicts."""

    read: GatewayRead
    outcomes: tuple[Outcome, ...] = ()
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Narrowed:
    """What taking away did: APIM as the run leaves it, the removals' outcomes, and the notes."""

    observed: Observed
    outcomes: tuple[Outcome, ...] = ()
    notes: Notes = NO_NOTES


class _Run:
    def __init__(self, engine: Engine, scope: Scope, mode: Mode, budget: timedelta) -> None:
        self.settings = engine.settings
        self.apim = engine.apim
        self.now = datetime.now(UTC)
        self.scope = scope
        self.mode = mode
        lane = engine.pacer.lane(urgent=not scope.is_full, budget=budget.total_seconds())
        self.executor = Executor(
            engine.apim,
            lane,
            engine.progress,
            max_concurrency=self.settings.max_concurrency,
            dry_run=mode is Mode.DRY_RUN,
        )
        self.keyvault = KeyVaultReads(self.settings, engine.vault, self.executor, engine.known, scope, self.now)
        deployment = self.settings.deployment
        self.owner = Ownership(deployment.id, adopts_legacy=deployment.adopts_legacy)

    async def execute(self) -> Found:
        executor = self.executor
        async with asyncio.TaskGroup() as tasks:
            desired_task = tasks.create_task(self.keyvault.desired())
            certificates_task = tasks.create_task(executor.call(self.apim.certificates))
            service_task = tasks.create_task(read_service(executor, self.apim))

            async def start_uploads() -> tuple[Uploads, dict[str, asyncio.Task[Outcome]]]:
                """The uploads need Key Vault's paths and APIM's certificate list, no gateway's CA list."""
                read = await desired_task
                if read.missing:  # a scoped run naming a certificate Key Vault does not hold writes nothing
                    return Uploads({}, (), (), self.owner), {}
                uploads = plan_uploads(read.desired, await certificates_task, self.owner)
                executor.planned_writes(uploads.actions)
                return uploads, {a.certificate_id: tasks.create_task(executor.write(a)) for a in uploads.actions}

            uploads_task = tasks.create_task(start_uploads())
            listed = await executor.call(self.apim.gateways)
            selection = select(self.settings, listed, await service_task)

            async def sync_gateway(gateway: str) -> _Gateway:
                """Its own CA list, then the puts it needs, each once its upload is in."""
                read = await read_gateway_cas(executor, self.apim, gateway)
                wanted = await desired_task
                if read.cas is None or wanted.missing:
                    return _Gateway(read)
                uploads, uploading = await uploads_task
                plan = plan_additions(gateway, wanted.desired, read.cas, uploads, await certificates_task)
                executor.planned_writes(plan.actions)
                puts = await asyncio.gather(*(executor.put(a, uploading.get(a.certificate_id)) for a in plan.actions))
                return _Gateway(read, tuple(puts), plan.conflicts)

            gateway_tasks = [tasks.create_task(sync_gateway(gateway)) for gateway in selection.selected]
            # A full-scope run reads the other gateways too: what they use is never deleted.
            others = selection.others() if self.scope.is_full else []
            other_tasks = [tasks.create_task(read_gateway_cas(executor, self.apim, gateway)) for gateway in others]

        read = desired_task.result()
        if read.missing:
            return Found(read.notes, missing=read.missing)
        desired, certificates, service = read.desired, certificates_task.result(), service_task.result()
        uploads, uploading = uploads_task.result()
        gateways = [task.result() for task in gateway_tasks]
        additions = (
            *(uploading[a.certificate_id].result() for a in uploads.actions),
            *(outcome for gateway in gateways for outcome in gateway.outcomes),
        )
        cas_read = [*(gateway.read for gateway in gateways), *(task.result() for task in other_tasks)]
        observed = Observed(
            certificates,
            {gateway.name: gateway.cas for gateway in cas_read if gateway.cas is not None},
            complete=all(gateway.cas is not None for gateway in cas_read),
            owner=self.owner,
        ).after(_applied(additions))

        store, backends, selected = StoreSync(), BackendSync(), selection.selected
        if service.facts is not None:
            removals = self.scope.is_full and self.mode is not Mode.ADDITIONS
            store = await sync_store(
                executor,
                self.apim,
                self.settings,
                desired=desired,
                certificates=certificates,
                facts=service.facts,
                selected=selected,
                owner=self.owner,
                removals=removals,
                at=self.now,
            )
            if kind_of(service.facts.sku) is ServiceKind.V2 and self.settings.backend_tls:
                backends = await sync_backends(executor, self.apim, self.settings, desired, service.workspaces)
        narrowed = _Narrowed(observed)
        if self.scope.is_full:
            narrowed = await self.narrow(desired, observed, selected, additions, store.in_store)
        # What the run leaves behind, as far as its own reads and writes tell: judged against the
        # desired state it planned from (a version the last look found is the next run's to judge).
        left_behind = narrowed.observed
        notes = (
            read.notes,
            service.notes,
            selection.notes,
            *(gateway.notes for gateway in cas_read),
            Notes.warning(*desired.notes),
            store.notes,
            backends.notes,
            narrowed.notes,
        )
        return Found(
            gathered(notes),
            outcomes=(*additions, *narrowed.outcomes),
            conflicts=tuple(sorted({*uploads.conflicts, *(c for gateway in gateways for c in gateway.conflicts)})),
            horizon=expiry_horizon(desired, left_behind, selected, now=self.now, warning=self.settings.expiry_warning),
            verdicts=(*judge(desired, left_behind, selected, at=self.now), *store.verdicts),
            gateways=gateway_entries(left_behind, selected),
            tier=selection.tier,
            targets=selection.targets,
            store=store,
            backends=backends.outcomes,
        )

    async def narrow(
        self,
        desired: Desired,
        observed: Observed,
        selected: Sequence[str],
        additions: Sequence[Outcome],
        in_store: frozenset[str],
    ) -> _Narrowed:
        """Take away what nothing needs: only once every addition is in, after one last look at Key Vault
        when there is anything to take away."""
        if not (desired.complete and observed.complete):
            why = "nothing taken away: not every bound certificate and gateway could be read (see errors)"
            return _Narrowed(observed, notes=Notes.warning(why))
        planned, notes = self.plan_narrowing(desired, observed, selected, in_store)
        if not planned:  # nothing to take away: no last look (the run has read everything it needs)
            return _Narrowed(observed, notes=Notes.warning(*notes))
        not_all_in = any(outcome.status is not ActionStatus.APPLIED for outcome in additions)
        if self.mode is not Mode.FULL or not_all_in or self.executor.out_of_time:
            return _Narrowed(observed, _held_back(planned, self.mode, additions), Notes.warning(*notes))

        # The last look: a rotation that landed while the additions ran is needed, not an orphan. The
        # version lists are read again; a secret only for a version this run has not read.
        last_look = await self.keyvault.desired()
        if not last_look.desired.complete:
            why = "nothing taken away: Key Vault could not be read again before removing (see errors)"
            return _Narrowed(observed, notes=last_look.notes + Notes.warning(why))
        narrowing, notes = self.plan_narrowing(last_look.desired, observed, selected, in_store)
        self.executor.planned_writes(narrowing)
        entries = [a for a in narrowing if a.kind is not ActionKind.DELETE_CERTIFICATE]
        outcomes = list(await asyncio.gather(*(self.executor.write(action) for action in entries)))
        unfinished = {o.action.certificate_id: o.status for o in outcomes if o.status is not ActionStatus.APPLIED}
        still_referenced = {cid for cid, status in unfinished.items() if status is not ActionStatus.DEFERRED}
        for action in narrowing:
            if action.kind is not ActionKind.DELETE_CERTIFICATE:
                continue
            if action.certificate_id in still_referenced:
                why = "not deleted: removing it from a gateway failed"
                outcomes.append(self.executor.not_started(action, ActionStatus.SKIPPED, why))
            elif action.certificate_id in unfinished:
                outcomes.append(self.executor.not_started(action, ActionStatus.DEFERRED, LEFT))
            else:
                outcomes.append(await self.executor.write(action))
        return _Narrowed(observed.after(_applied(outcomes)), tuple(outcomes), last_look.notes + Notes.warning(*notes))

    def plan_narrowing(
        self, desired: Desired, observed: Observed, selected: Sequence[str], in_store: frozenset[str]
    ) -> tuple[tuple[Action, ...], list[str]]:
        """What nothing needs any more, less what a gateway would need to keep accepting a needed leaf;
        and the notes to report of it (once, from the plan the run acts on)."""
        narrowing = plan_narrowing(desired, observed, selected)
        kept, held_back = keep_accepted(narrowing.actions, desired, observed, selected, at=self.now)
        return keep_store_copies(kept, observed.certificates, in_store), [*narrowing.notes, *held_back]


def _held_back(planned: Sequence[Action], mode: Mode, additions: Sequence[Outcome]) -> tuple[Outcome, ...]:
    """The removals a run plans but does not make: why each waits (the run's mode, or its additions)."""
    if mode is Mode.DRY_RUN:
        return tuple(Outcome(action, ActionStatus.PLANNED) for action in planned)
    if mode is Mode.ADDITIONS:
        return tuple(
            Outcome(action, ActionStatus.PLANNED, "not applied: this run only adds trust") for action in planned
        )
    if any(outcome.status in (ActionStatus.FAILED, ActionStatus.SKIPPED) for outcome in additions):
        why = "not applied: an addition failed, so trust is left as wide as it was"
        return tuple(Outcome(action, ActionStatus.SKIPPED, why) for action in planned)
    # Additions left for the next run, or no time left: removals wait for every addition.
    return tuple(Outcome(action, ActionStatus.DEFERRED, LEFT) for action in planned)


def _report(found: Found, scope: Scope, mode: Mode, deployment: str, budget: timedelta, seconds: float) -> Report:
    """The run's report, built once from what it found."""
    problems = (*found.notes.problems, *write_problems(found.outcomes).problems)
    warnings = [*found.notes.warnings, *_budget_warnings(found.outcomes, budget, seconds)]
    return Report(
        scope,
        mode,
        outcomes=list(found.outcomes),
        conflicts=list(found.conflicts),
        warnings=list(dict.fromkeys(warnings)),
        errors=list(dict.fromkeys(problem.message for problem in problems)),
        retryable=any(problem.retryable for problem in problems),
        missing=list(found.missing),
        horizon=found.horizon,
        verdicts=found.verdicts,
        gateways=found.gateways,
        deployment=deployment,
        tier=found.tier,
        targets=found.targets,
        ca_store=found.store.outcome,
        backends=found.backends,
        unjudged=found.store.unjudged,
    )


def _budget_warnings(outcomes: Sequence[Outcome], budget: timedelta, seconds: float) -> Iterator[str]:
    left = Report.count_left(outcomes)
    if not left:
        return
    counts = ", ".join(f"{kind}: {count}" for kind, count in left.items())
    yield f"time budget of {budget.total_seconds():g}s ran out; left for the next run: {counts}"
    if not any(outcome.status is ActionStatus.APPLIED for outcome in outcomes):
        # The next run reads as much again, so it would end the same way: say so, once, plainly.
        yield (
            f"no write could start within the time budget of {budget.total_seconds():g}s (this run took "
            f"{seconds:.1f}s, most of it reading Key Vault and APIM): every run will end "
            "the same way until RUN_TIME_BUDGET is raised well above that"
        )


def _applied(outcomes: Sequence[Outcome]) -> list[Action]:
    return [outcome.action for outcome in outcomes if outcome.status is ActionStatus.APPLIED]


def _leaves(group: BaseExceptionGroup[E]) -> Iterator[E]:
    """The exceptions in a group raised by nested task groups."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error
