"""The engine: read what Key Vault needs and what APIM holds, plan with pure functions, write.

The event trigger, the resync endpoint and the drift audit are this one run with a different
scope and mode:

- a scoped run (an event, a resync naming certificates) reconciles those certificates to Key
  Vault's *current* state (not an event's version), so duplicate and out-of-order deliveries
  converge, and only ever adds trust;
- a full-scope run (a resync of everything, the audit) may also take away what the app created
  and nothing needs any more, once every addition is in and after one last look at Key Vault.

Every Azure call goes through its service's limiter (`MAX_CONCURRENCY` calls in flight to Key
Vault, as many to ARM: neither waits for the other's slots; a free slot goes first to the reads
every write waits on) and the pacer (`shared.pacing`: ARM's and Key Vault's limits, a priority per
call, the run's time budget); everything else is tasks awaiting what they need, so a run reads as
the dependency graph it is:

    Key Vault: names → versions → secrets → paths ─┐
    APIM: certificate list ────────────────────────┴→ uploads ─┐
    APIM: gateway list → each gateway's CA list ───────────────┴→ that gateway's puts
    (full scope, removals planned) → Key Vault's version lists again → removals → deletions

A version's secret is read once: the run keeps what it read for the last look, and a worker keeps
the public certificates of the versions it has read (`KnownVersions`; Key Vault versions never
change), so a warm worker's audit reads only the secrets of versions it has not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .backend_tls import BackendOutcome, plan_backends
from .backing_secret import read_secret
from .bundles import Bundle, bundle_certificates, path_with_bundles, read_bundle
from .ca_store import StoreOutcome, StoreStatus, judge_store, plan_store
from .chain import Certificate, ChainError
from .desired import Desired, VersionPath, desired_state, versions_to_trust
from .expiry import expiry_horizon
from .pacing import Kind, Pacer
from .plan import (
    Action,
    ActionKind,
    Observed,
    Ownership,
    Uploads,
    plan_additions,
    plan_narrowing,
    plan_uploads,
)
from .ports import (
    ApimCertificate,
    ApimPort,
    ApimWorkspace,
    AzureCallError,
    GatewayCas,
    NoProgress,
    NotFoundError,
    Progress,
    ServiceFacts,
    Throttled,
    VaultPort,
    VersionInfo,
    Work,
)
from .records import ACTION_RECORD, Dim
from .report import Mode, Outcome, Report, Scope, Status, gateway_entries
from .service_kind import WORKSPACE_REASON, ServiceKind, kind_of, no_trust_reason, offers_workspaces, targets
from .settings import MANAGED_GATEWAY, Settings
from .verdicts import LeafVerdict, judge, keep_accepted

log = logging.getLogger("trustsync")
T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

# What goes first when ARM's limits make calls wait (a lower rank first; any scoped run's calls
# before any full-scope run's): reads, which every write waits for; a needed CA that no gateway
# trusts (its upload and its puts); a copy missing on one more gateway, or an isTrusted to raise;
# then removals and deletions, which start only once every addition is in.
_READ, _FIRST, _NEXT, _NARROW = 0, 1, 2, 3
# Who gets a service's free slot first (lower first, then the earlier): the reads every write waits
# on (Key Vault's, APIM's certificate and gateway lists, the service), the writes of a CA no gateway
# trusts yet (its upload every put of it waits on), then a gateway's own CA list (only that gateway's
# puts wait on it), then the other writes.
_CRITICAL_READ = 0
_GATEWAY_READ = 2 * _FIRST + 1  # a write's order is twice its rank: this falls between _FIRST and _NEXT
_LIMIT_OF = {
    ActionKind.UPLOAD_CERTIFICATE: Kind.ARM_WRITES,
    ActionKind.SET_GATEWAY_CA: Kind.ARM_WRITES,
    ActionKind.REMOVE_GATEWAY_CA: Kind.ARM_DELETES,
    ActionKind.DELETE_CERTIFICATE: Kind.ARM_DELETES,
}
# What a 403 from Key Vault means: a role the app's identity lacks (infra/access/keyvault.bicep).
_ROLE_TO_LIST = (
    "the app's identity lacks the Key Vault Reader role on the vault, which lists its certificates "
    "(CERTIFICATE_NAMES=*); nothing is taken away until that is fixed"
)
_ROLE_TO_READ_CHAIN = (
    "the app's identity lacks the Key Vault Secrets User role on secret {name} (or on the vault), which reads "
    "a certificate's chain"
)
_VERSION_DISABLED = "Forbidden/SecretDisabled"  # a version disabled since it was listed: not a role
_LEFT = "not started: the run's time budget ran out; the next run continues from what APIM holds"
_CONFLICT = 409  # ARM: the service is updating (a CA store write runs 15 minutes or more)


class MissingCertificates(Exception):
    """A scoped run named certificates Key Vault does not hold: nothing is written."""

    def __init__(self, names: Sequence[str], vault_url: str) -> None:
        listed = ", ".join(names)
        what = f"certificate {listed} does" if len(names) == 1 else f"certificates {listed} do"
        super().__init__(f"{what} not exist in {vault_url}")
        self.names = tuple(names)


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
        report = Report(scope, mode, deployment=self.settings.deployment.id)
        budget = budget or self.settings.run_time_budget
        started = time.monotonic()
        try:
            await _Run(self, scope, mode, report, budget).execute()
        except* AzureCallError as failures:
            for failure in _leaves(failures):
                report.fail(str(failure), retryable=True)
        except* MissingCertificates as missing:
            for error in _leaves(missing):
                report.missing = sorted(set(report.missing) | set(error.names))
                report.fail(str(error), retryable=False)
        if left := report.left():
            counts = ", ".join(f"{kind}: {count}" for kind, count in left.items())
            report.warn(f"time budget of {budget.total_seconds():g}s ran out; left for the next run: {counts}")
            if not any(outcome.status is Status.APPLIED for outcome in report.outcomes):
                # The next run reads as much again, so it would end the same way: say so, once, plainly.
                report.warn(
                    f"no write could start within the time budget of {budget.total_seconds():g}s (this run took "
                    f"{time.monotonic() - started:.1f}s, most of it reading Key Vault and APIM): every run will end "
                    "the same way until RUN_TIME_BUDGET is raised well above that"
                )
        _log(report)
        return report


class KnownVersions:
    """The public certificates read from each certificate version's secret, kept across the runs of a
    worker: Key Vault versions are immutable, so a version read once is never read again while kept.

    Public certificates only (what `read_secret` returns: never the secret value or a key); bounded,
    the least recently used version going first. Keyed by the vault's URL, the name and the version.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[tuple[str, str, str], tuple[Certificate, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, vault: str, name: str, version: str) -> tuple[Certificate, ...] | None:
        key = (vault.lower(), name.lower(), version.lower())
        certificates = self._kept.get(key)
        if certificates is not None:
            self._kept.move_to_end(key)
        return certificates

    def keep(self, vault: str, name: str, version: str, certificates: tuple[Certificate, ...]) -> None:
        key = (vault.lower(), name.lower(), version.lower())
        self._kept[key] = certificates
        self._kept.move_to_end(key)
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)

    def clear(self) -> None:
        self._kept.clear()


class _Slots:
    """One service's calls in flight, at most `size`; a free slot goes to the waiter of the lowest
    order (then the earliest), so a read every write waits on never queues behind one only some need."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def hold(self, order: int) -> AsyncIterator[None]:
        if self.free > 0 and not self._waiters:
            self.free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (order, next(self._arrivals), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._release()  # handed a slot just as it was cancelled: pass it on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            _, _, turn = heapq.heappop(self._waiters)
            if not turn.done():  # a cancelled waiter's turn is done already: skipped
                turn.set_result(None)
                return
        self.free += 1


@dataclass(frozen=True)
class _Certificate:
    """One bound certificate as read: the paths of its versions to trust (None: not all readable)."""

    name: str
    paths: tuple[VersionPath, ...] | None
    exists: bool = True


@dataclass(frozen=True)
class _Bundles:
    """The TRUST_BUNDLES secrets as read: the bundles that could be used, and whether all could."""

    found: Mapping[str, Bundle]
    complete: bool


@dataclass(frozen=True)
class _Gateway:
    """One selected gateway's part of a run: its CA list as read (None: unreadable) and its writes."""

    name: str
    cas: GatewayCas | None
    outcomes: tuple[Outcome, ...]


class _Run:
    def __init__(self, engine: Engine, scope: Scope, mode: Mode, report: Report, budget: timedelta) -> None:
        self.settings = engine.settings
        self.vault = engine.vault
        self.apim = engine.apim
        self.now = datetime.now(UTC)
        self.scope = scope
        self.mode = mode
        self.report = report
        self.keyvault_slots = _Slots(self.settings.max_concurrency)
        self.arm_slots = _Slots(self.settings.max_concurrency)
        self.known = engine.known
        self.read_paths: dict[tuple[str, str], VersionPath] = {}  # (name, version) → its path, as this run read it
        self.progress = engine.progress
        self.lane = engine.pacer.lane(urgent=not scope.is_full, budget=budget.total_seconds())
        self.trusted: set[str] = set()  # ids (lower case) some gateway read so far trusts
        self.held: set[str] = set()  # ids (lower case) some gateway read so far holds, trusted or not
        self.bundles: asyncio.Task[_Bundles] | None = None  # the current read of TRUST_BUNDLES
        deployment = self.settings.deployment
        self.owner = Ownership(deployment.id, adopts_legacy=deployment.adopts_legacy)
        self.store_verdicts: tuple[LeafVerdict, ...] = ()  # the managed gateway's, when they are judged
        self.in_store: set[str] = set()  # thumbprints in the CA store: their APIM copies mark them the app's
        self.workspaces: tuple[ApimWorkspace, ...] = ()  # reported: their gateways take no CA certificates

    async def execute(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            desired_task = tasks.create_task(self.read_desired())
            certificates_task = tasks.create_task(self.call(self.apim.certificates))
            facts_task = tasks.create_task(self.read_service())

            async def start_uploads() -> tuple[Uploads, dict[str, asyncio.Task[Outcome]]]:
                uploads = plan_uploads(await desired_task, await certificates_task, self.owner)
                self.planned_writes(uploads.actions)
                started = {a.certificate_id: tasks.create_task(self.write(a, _FIRST)) for a in uploads.actions}
                return uploads, started

            uploads_task = tasks.create_task(start_uploads())

            listed = await self.call(self.apim.gateways)
            self_hosted = [gateway for gateway in listed if gateway.lower() != MANAGED_GATEWAY]
            selected = await self.select(listed, self_hosted, await facts_task)

            async def sync_gateway(gateway: str) -> _Gateway:
                """Its own CA list, then the puts it needs, each once its upload is in."""
                cas = await self.gateway_cas(gateway)
                if cas is None:
                    return _Gateway(gateway, None, ())
                desired, certificates = await desired_task, await certificates_task
                uploads, uploading = await uploads_task
                plan = plan_additions(gateway, desired, cas, uploads, certificates)
                self.report.conflicts.extend(plan.conflicts)
                self.planned_writes(plan.actions)
                outcomes = await asyncio.gather(
                    *(self.put(a, uploading.get(a.certificate_id), self.rank(a, uploading)) for a in plan.actions)
                )
                return _Gateway(gateway, cas, tuple(outcomes))

            gateway_tasks = [tasks.create_task(sync_gateway(gateway)) for gateway in selected]
            # A full-scope run reads the other gateways too: what they use is never deleted.
            others = [g for g in self_hosted if g not in selected] if self.scope.is_full else []
            other_tasks = {gateway: tasks.create_task(self.gateway_cas(gateway)) for gateway in others}

        desired, certificates = desired_task.result(), certificates_task.result()
        uploads, uploading = uploads_task.result()
        gateways = [task.result() for task in gateway_tasks]
        additions = [
            *(uploading[a.certificate_id].result() for a in uploads.actions),
            *(outcome for gateway in gateways for outcome in gateway.outcomes),
        ]
        self.report.outcomes.extend(additions)
        self.report.conflicts[:] = sorted(set(self.report.conflicts) | set(uploads.conflicts))
        self.report.warnings.extend(desired.notes)

        read = {g.name: g.cas for g in gateways} | {g: task.result() for g, task in other_tasks.items()}
        observed = Observed(
            certificates,
            {gateway: cas for gateway, cas in read.items() if cas is not None},
            complete=all(cas is not None for cas in read.values()),
            owner=self.owner,
        ).after(_applied(additions))
        facts = facts_task.result()
        if facts is not None:
            await self.sync_store(desired, certificates, facts, selected)
            if kind_of(facts.sku) is ServiceKind.V2 and self.settings.backend_tls:
                await self.sync_backends(desired)
        if self.scope.is_full:
            observed = await self.narrow(desired, observed, selected, additions)
        # What the run leaves behind, as far as its own reads and writes tell: judged against the
        # desired state it planned from (a version the last look found is the next run's to judge).
        self.report.horizon = expiry_horizon(
            desired, observed, selected, now=self.now, warning=self.settings.expiry_warning
        )
        self.report.verdicts = (*judge(desired, observed, selected, at=self.now), *self.store_verdicts)
        self.report.gateways = gateway_entries(observed, selected)

    async def narrow(
        self, desired: Desired, observed: Observed, selected: Sequence[str], additions: Sequence[Outcome]
    ) -> Observed:
        """Take away what nothing needs: only once every addition is in, after one last look at Key Vault
        when there is anything to take away.

        Returns APIM as the run leaves it."""
        if not (desired.complete and observed.complete):
            self.report.warn("nothing taken away: not every bound certificate and gateway could be read (see errors)")
            return observed
        planned, notes = self.plan_narrowing(desired, observed, selected)
        if not planned:  # nothing to take away: no last look (the run has read everything it needs)
            self.report.warnings.extend(notes)
            return observed
        out_of_time = self.lane.time_left <= 0
        if self.mode is not Mode.FULL or any(o.status is not Status.APPLIED for o in additions) or out_of_time:
            self.report.warnings.extend(notes)
            if self.mode is Mode.DRY_RUN:
                self.report.outcomes.extend(Outcome(action, Status.PLANNED) for action in planned)
            elif self.mode is Mode.ADDITIONS:
                why = "not applied: this run only adds trust"
                self.report.outcomes.extend(Outcome(action, Status.PLANNED, why) for action in planned)
            elif any(outcome.status in (Status.FAILED, Status.SKIPPED) for outcome in additions):
                why = "not applied: an addition failed, so trust is left as wide as it was"
                self.report.outcomes.extend(Outcome(action, Status.SKIPPED, why) for action in planned)
            else:  # additions left for the next run, or no time left: removals wait for every addition
                self.report.outcomes.extend(Outcome(action, Status.DEFERRED, _LEFT) for action in planned)
            return observed

        # The last look: a rotation that landed while the additions ran is needed, not an orphan. The
        # version lists are read again; a secret only for a version this run has not read.
        last_look = await self.read_desired()
        if not last_look.complete:
            self.report.warn("nothing taken away: Key Vault could not be read again before removing (see errors)")
            return observed
        narrowing, notes = self.plan_narrowing(last_look, observed, selected)
        self.report.warnings.extend(notes)
        self.planned_writes(narrowing)
        entries = [a for a in narrowing if a.kind is not ActionKind.DELETE_CERTIFICATE]
        outcomes = list(await asyncio.gather(*(self.write(action, _NARROW) for action in entries)))
        unfinished = {o.action.certificate_id.lower(): o.status for o in outcomes if o.status is not Status.APPLIED}
        still_referenced = {cid for cid, status in unfinished.items() if status is not Status.DEFERRED}
        for action in narrowing:
            if action.kind is not ActionKind.DELETE_CERTIFICATE:
                continue
            if action.certificate_id.lower() in still_referenced:
                self.progress.done(Work.WRITES)
                outcomes.append(Outcome(action, Status.SKIPPED, "not deleted: removing it from a gateway failed"))
            elif action.certificate_id.lower() in unfinished:
                self.progress.done(Work.WRITES)
                outcomes.append(Outcome(action, Status.DEFERRED, _LEFT))
            else:
                outcomes.append(await self.write(action, _NARROW))
        self.report.outcomes.extend(outcomes)
        return observed.after(_applied(outcomes))

    def plan_narrowing(
        self, desired: Desired, observed: Observed, selected: Sequence[str]
    ) -> tuple[tuple[Action, ...], list[str]]:
        """What nothing needs any more, less what a gateway would need to keep accepting a needed leaf;
        and the notes to report of it (once, from the plan the run acts on)."""
        narrowing = plan_narrowing(desired, observed, selected)
        kept, held_back = keep_accepted(narrowing.actions, desired, observed, selected, at=self.now)
        notes = [*narrowing.notes, *held_back]
        if self.in_store:
            # The app's copy in APIM Certificates is what marks a CA store entry as the app's own (the
            # store has no ids): it goes only once the store no longer holds the CA.
            held = {cid.lower(): c.thumbprint.upper() for cid, c in observed.certificates.items()}
            kept = tuple(
                action
                for action in kept
                if action.kind is not ActionKind.DELETE_CERTIFICATE
                or held.get(action.certificate_id.lower()) not in self.in_store
            )
        return kept, notes

    # -- Key Vault --------------------------------------------------------------------------------

    async def read_desired(self) -> Desired:
        """The paths of every version to trust of every certificate in scope; incomplete when one failed."""
        listed = True
        async with asyncio.TaskGroup() as reads:
            # Path building waits for the bundles: a secret without its root may find it there.
            bundles = self.bundles = reads.create_task(self.read_bundles())
            started: list[tuple[str, asyncio.Task[_Certificate]]] = []
            try:
                async for page in self.certificate_names():
                    started.extend((name, reads.create_task(self.read_certificate(name))) for name in page)
            except AzureCallError as error:
                if error.status != 403:
                    raise
                # Not every certificate is known: nothing may be taken away, and a retry will not help.
                self.report.fail(f"{error}: {_ROLE_TO_LIST}", retryable=False)
                listed = False
        read = [task.result() for _, task in started]
        missing = sorted(certificate.name for certificate in read if not certificate.exists)
        if missing and not self.scope.is_full:
            raise MissingCertificates(missing, self.settings.keyvault_url)
        read_bundles = bundles.result()
        return desired_state(
            {certificate.name: certificate.paths or () for certificate in read},
            trust_intermediates=self.settings.trust_intermediates,
            # A bundle that could not be used blocks removals as an unreadable certificate does.
            complete=listed and read_bundles.complete and all(certificate.paths is not None for certificate in read),
            bundles={name: bundle.authorities for name, bundle in read_bundles.found.items()},
        )

    async def read_bundles(self) -> _Bundles:
        """Every TRUST_BUNDLES secret's valid CAs; incomplete when one is missing, unreadable or refused."""
        names = sorted(self.settings.trust_bundles)
        if not names:
            return _Bundles({}, complete=True)
        self.progress.planned(Work.KEYVAULT_READS, len(names))
        read = await asyncio.gather(*(self.read_bundle(name) for name in names))
        found = {bundle.name: bundle for bundle in read if bundle is not None}
        return _Bundles(found, complete=len(found) == len(names))

    async def read_bundle(self, name: str) -> Bundle | None:
        """One bundle; None (and a run error) when it cannot be used. Each is a configuration error, as
        for a named certificate: a retry will not help, and nothing is taken away until it is fixed."""
        vault = self.settings.keyvault_url
        blocks = "nothing of it is trusted and nothing is taken away until then"
        try:
            secret = await self.read(self.vault.bundle, name)
        except NotFoundError:
            self.report.fail(
                f"TRUST_BUNDLES names secret {name}, which {vault} does not hold (missing or deleted): correct the "
                f"setting or restore the secret; {blocks}",
                retryable=False,
            )
            return None
        except AzureCallError as error:
            if error.status != 403:
                self.report.fail(str(error), retryable=True)
            elif error.code == _VERSION_DISABLED:
                self.report.fail(
                    f"{error}: the current version of trust bundle {name} is disabled; {blocks}", retryable=False
                )
            else:
                self.report.fail(
                    f"{error}: the app's identity lacks the Key Vault Secrets User role on secret {name}, which "
                    f"TRUST_BUNDLES names; {blocks}",
                    retryable=False,
                )
            return None
        try:
            bundle = read_bundle(name, secret.value, at=self.now)
        except ChainError as error:
            self.report.fail(f"{error}; {blocks}", retryable=False)
            return None
        for note in bundle.notes:
            self.report.warn(note)
        return bundle

    async def certificate_names(self) -> AsyncIterator[list[str]]:
        named = self.scope.certificates if self.scope.certificates is not None else self.settings.certificates.names
        if named is not None:
            self.progress.planned(Work.KEYVAULT_READS, len(named))
            yield sorted(named)
            return
        pages = self.vault.certificate_names()
        while True:
            # Each page's reads start while the next page is fetched: C certificates are C/25 pages.
            async with self.keyvault_slots.hold(_CRITICAL_READ):
                with self.lane.calling(_READ):
                    page = await anext(pages, None)
            if page is None:
                return
            self.progress.planned(Work.KEYVAULT_READS, len(page))
            yield page

    async def read_certificate(self, name: str) -> _Certificate:
        try:
            versions = await self.read(self.vault.versions, name)
        except NotFoundError:
            if not self.scope.is_full:
                return _Certificate(name, (), exists=False)  # a scoped run writes nothing: MissingCertificates
            return await self.confirm_deleted(name)
        except AzureCallError as error:
            self.vault_failed(name, error)
            return _Certificate(name, None)
        chosen = versions_to_trust(versions, self.now, self.settings.rotation_grace)
        if not chosen:
            # Retired on purpose: it needs nothing, so what only it needed may go in a full run.
            if any(version.enabled for version in versions):
                self.report.warn(f"certificate {name} has only expired versions: retired, nothing of it is trusted")
            else:
                self.report.warn(f"certificate {name} has no enabled version: nothing of it is trusted")
            return _Certificate(name, ())
        unread = [v for v in chosen if not self.has_read(name, v.version)]
        if unread:
            self.progress.planned(Work.KEYVAULT_READS, len(unread))
        paths = await asyncio.gather(*(self.read_path(name, version) for version in chosen))
        found = tuple(path for path in paths if path is not None)
        return _Certificate(name, found if len(found) == len(paths) else None)

    async def confirm_deleted(self, name: str) -> _Certificate:
        """A full run met a 404 on a certificate's versions: retired only on Key Vault's word that it was
        deleted, since a name that never existed (a typo in CERTIFICATE_NAMES) answers the same 404, and
        taking its chains away would break every backend that uses them."""
        vault = self.settings.keyvault_url
        self.progress.planned(Work.KEYVAULT_READS)
        try:
            deleted = await self.read(self.vault.deleted, name)
            if deleted is None:
                # The identity may not read deleted certificates (roles on named certificates only),
                # where a misspelt name answers 403, not 404: a second 404 is taken as the deletion.
                self.progress.planned(Work.KEYVAULT_READS)
                deleted = not await self.exists(name)
                if not deleted:  # recreated or recovered between the two looks: the next run reads it
                    self.report.fail(f"certificate {name} was not found in {vault}, then found", retryable=True)
                    return _Certificate(name, None)
        except AzureCallError as error:
            self.vault_failed(name, error)
            return _Certificate(name, None)
        named = self.settings.certificates.names is not None
        if deleted:
            fix = "; remove it from CERTIFICATE_NAMES" if named else ""
            self.report.warn(f"certificate {name} was deleted from {vault}: retired, nothing of it is trusted{fix}")
            return _Certificate(name, ())
        if named:
            self.report.fail(
                f"CERTIFICATE_NAMES names certificate {name}, which {vault} does not hold, not even as deleted: "
                "correct the setting; nothing is taken away until then",
                retryable=False,
            )
        else:  # listed by the vault a moment ago, gone now without a trace (purged): the next list settles it
            self.report.fail(
                f"certificate {name} was listed by {vault}, then not found, not even as deleted: nothing is taken away",
                retryable=True,
            )
        return _Certificate(name, None)

    async def exists(self, name: str) -> bool:
        try:
            await self.read(self.vault.versions, name)
        except NotFoundError:
            return False
        return True

    def vault_failed(self, name: str, error: AzureCallError) -> None:
        """A read of a certificate's versions failed: a 403 is a role to grant or a name to correct (a
        retry will not help: the run is failed, not retryable), anything else may pass."""
        if error.status != 403:
            self.report.fail(str(error), retryable=True)
            return
        named = name in self.settings.certificates and not self.settings.certificates.is_all
        fix = f"; if {name} is misspelt, correct CERTIFICATE_NAMES" if named else ""
        self.report.fail(
            f"{error}: the app's identity lacks the Key Vault Reader role on certificate {name} (or on the vault), "
            f"which lists its versions; nothing is taken away until that is fixed{fix}",
            retryable=False,
        )

    def has_read(self, name: str, version: str) -> bool:
        """Whether this run or the worker has read the version's secret already."""
        known = (name.lower(), version.lower()) in self.read_paths
        return known or self.known.get(self.settings.keyvault_url, name, version) is not None

    async def read_path(self, name: str, version: VersionInfo) -> VersionPath | None:
        """A version's path; its secret read only when neither this run nor the worker has read it."""
        if (read := self.read_paths.get((name.lower(), version.version.lower()))) is not None:
            return VersionPath(version, read.path, read.secret_certificates)  # the last look: as listed now
        vault = self.settings.keyvault_url
        known = self.known.get(vault, name, version.version)
        try:
            certificates = known if known is not None else await self.read_certificates(name, version)
            if certificates is None:
                return None
            assert self.bundles is not None  # started by read_desired before any certificate read
            pool = bundle_certificates((await self.bundles).found)
            path = path_with_bundles(certificates, leaf_thumbprint=version.leaf_thumbprint, at=self.now, bundles=pool)
        except ChainError as error:
            # Bad input: retrying will not fix it. The other versions are still trusted.
            self.report.fail(f"certificate {name} version {version.version}: {error}", retryable=False)
            return None
        self.known.keep(vault, name, version.version, certificates)
        read = self.read_paths[name.lower(), version.version.lower()] = VersionPath(version, path, certificates)
        return read

    async def read_certificates(self, name: str, version: VersionInfo) -> tuple[Certificate, ...] | None:
        """The certificates of a version's secret (the secret itself goes no further); None (and an
        error) when it cannot be read; `ChainError` when it holds no certificates."""
        try:
            secret = await self.read(self.vault.secret, name, version.version)
        except AzureCallError as error:
            if error.status == 403 and error.code != _VERSION_DISABLED:
                self.report.fail(f"{error}: {_ROLE_TO_READ_CHAIN.format(name=name)}", retryable=False)
                return None
            # Key Vault has just listed this version, so even a 404 is a passing inconsistency (or a
            # deletion since), not bad input: a retry re-lists and settles it either way.
            self.report.fail(str(error), retryable=True)
            return None
        return read_secret(secret.value, secret.content_type)

    # -- APIM -------------------------------------------------------------------------------------

    async def select(self, listed: Sequence[str], self_hosted: Sequence[str], facts: ServiceFacts | None) -> list[str]:
        """The selected self-hosted gateways. None selected is an error unless the service's own
        (classic managed) gateway can be judged instead; the error names what the service has and its tier."""
        wanted = self.settings.gateways
        service = self.settings.apim.name
        missing = sorted(name for name in wanted.names or () if name.lower() not in {g.lower() for g in self_hosted})
        if missing:
            self.report.fail(
                f"gateway(s) {', '.join(missing)} named in APIM_GATEWAYS do not exist in {service}", retryable=False
            )
        selected = [gateway for gateway in self_hosted if gateway in wanted]
        if facts is not None:
            self.report.tier = facts.sku
            self.report.targets = targets(
                facts,
                self_hosted=selected,
                ca_store=self.settings.ca_store,
                backend_tls=self.settings.backend_tls,
                workspaces=self.workspaces,
            )
        backends = facts is not None and kind_of(facts.sku) is ServiceKind.V2 and self.settings.backend_tls
        if not selected and not backends and (facts is None or kind_of(facts.sku) is not ServiceKind.CLASSIC):
            tier = facts.sku if facts is not None else "unknown (the service could not be read)"
            reason = (
                no_trust_reason(facts, self_hosted=selected, backend_tls=self.settings.backend_tls) if facts else None
            )
            existing = ", ".join(sorted(listed)) or "none"
            # Nothing can be trusted anywhere: not in sync, whatever else the run finds. A setting or
            # the service must change, so an event is not delivered again for it; the audit alerts.
            self.report.fail(
                f"no self-hosted gateway selected in {service} (tier {tier}; gateways: {existing}; "
                f"APIM_GATEWAYS={wanted}): nothing is trusted: "
                + (
                    reason
                    or "check APIM_RESOURCE_ID, and that the tier supports self-hosted gateways (Developer, Premium) "
                    "and one is created"
                )
                + _workspaces_too(self.workspaces),
                retryable=False,
            )
        return selected

    async def sync_backends(self, desired: Desired) -> None:
        """The v2 tiers: each backend serving a bound certificate gets the pins its needed versions need.

        Only the tls block changes, under the backend's ETag; a backend already pinning every needed
        version is left alone. Workspace backends are not read."""
        try:
            backends = await self.call(self.apim.backends)
        except AzureCallError as error:
            self.report.fail(str(error), retryable=error.code != "NoRegisteredProviderFound")
            return
        outcomes = []
        in_workspaces = await self.workspace_backends(desired)
        for plan in plan_backends(desired, backends, dict(self.settings.backend_certificates)):
            name, certificate = plan.backend.id, plan.certificate
            rejected = [f"{n.version}: {why}" for n, why in plan.verdicts if why]
            if not plan.changes and not rejected:
                outcomes.append(BackendOutcome(name, certificate, "in-step"))
                continue
            if self.mode is Mode.DRY_RUN or not desired.complete:
                why = "a dry run" if self.mode is Mode.DRY_RUN else "not every bound certificate could be read"
                outcomes.append(BackendOutcome(name, certificate, "planned", f"{why}; as found: {'; '.join(rejected)}"))
                continue
            try:
                await self.call(self.apim.set_backend_tls, name, plan.tls)
            except AzureCallError as error:
                if error.status == 412:
                    outcomes.append(BackendOutcome(name, certificate, "planned", str(error)))
                    continue
                self.report.fail(str(error), retryable=True)
                outcomes.append(BackendOutcome(name, certificate, "failed", str(error)))
                continue
            outcomes.append(BackendOutcome(name, certificate, "applied"))
        self.report.backends = (*outcomes, *in_workspaces)
        if not outcomes:
            # Nothing is trusted anywhere on a v2 tier then: not in sync, and a redelivery would not help.
            self.report.fail(
                f"BACKEND_TLS=manage: no backend of {self.settings.apim.name} serves a bound certificate (by its URL's "
                "host or BACKEND_CERTIFICATES): nothing is pinned"
                + (
                    f" ({len(in_workspaces)} workspace backend(s) serve one, which the app does not change)"
                    if in_workspaces
                    else ""
                ),
                retryable=False,
            )

    async def workspace_backends(self, desired: Desired) -> list[BackendOutcome]:
        """Workspace backends that serve a bound certificate, matched as the service's are: listed as
        not changed (the app writes no workspace entity), never written."""
        found = []
        for workspace in self.workspaces:
            try:
                backends = await self.call(self.apim.workspace_backends, workspace.id)
            except AzureCallError as error:
                self.workspace_read_failed(
                    error, "workspaces/backends/read", f"the backends of workspace {workspace.id}"
                )
                continue
            mapping = dict(self.settings.backend_certificates)
            for plan in plan_backends(desired, backends, mapping):
                found.append(
                    BackendOutcome(
                        f"{workspace.id}/{plan.backend.id}", plan.certificate, "not changed", "workspace backend"
                    )
                )
        return found

    def workspace_read_failed(self, error: AzureCallError, actions: str, what: str) -> None:
        """Workspaces are reported, never written: without the permission to read them (a deployment
        made before the service's tier offered them) the run says what it could not report; any
        other fault fails the run like any read, to be retried."""
        if error.status == 403:
            self.report.warn(
                f"{what} could not be read ({error}): not reported; a deployment for this tier grants "
                f"Microsoft.ApiManagement/service/{actions}"
            )
        else:
            self.report.fail(str(error), retryable=True)

    async def read_service(self) -> ServiceFacts | None:
        """The service's tier and CA store; None (and an error) when it cannot be read."""
        try:
            facts = await self.call(self.apim.service_facts)
        except AzureCallError as error:
            self.report.fail(str(error), retryable=True)
            return None
        if offers_workspaces(facts.sku):
            try:
                self.workspaces = tuple(await self.call(self.apim.workspaces))
            except AzureCallError as error:
                self.workspace_read_failed(error, "workspaces/read and workspaceLinks/read", "its workspaces")
        return facts

    async def sync_store(
        self,
        desired: Desired,
        certificates: Mapping[str, ApimCertificate],
        facts: ServiceFacts,
        selected: Sequence[str],
    ) -> None:
        """The classic managed gateway: its verdicts, and with CA_STORE=manage, the one write of its CA store.

        A write only when the desired list differs, on a fresh read of the service, never while it is
        updating; nothing the app cannot reproduce is ever dropped (shared.ca_store)."""
        if kind_of(facts.sku) is not ServiceKind.CLASSIC:
            return
        verdicts = judge_store(desired, facts.ca_store, at=self.now)
        if self.settings.ca_store or not selected:
            self.store_verdicts = verdicts
        else:  # beside self-hosted gateways and not written: said, but not what the run's status rests on
            self.report.unjudged = verdicts
        if not self.settings.ca_store:
            return
        self.in_store = {entry.thumbprint.upper() for entry in facts.ca_store}
        owned = {held.thumbprint.upper() for held in certificates.values() if self.owner.is_ours(held)}
        removals = self.scope.is_full and self.mode is not Mode.ADDITIONS
        plan = plan_store(desired, facts.ca_store, owned=owned, removals=removals)
        if not plan.changes and plan.refusal is None:
            self.report.ca_store = StoreOutcome(StoreStatus.IN_STEP)
            return
        if plan.refusal is not None:
            self.report.ca_store = StoreOutcome(StoreStatus.REFUSED, plan.refusal, plan)
            return
        if not desired.complete:
            why = "not written: not every bound certificate could be read, and a write replaces the whole list"
            self.report.ca_store = StoreOutcome(StoreStatus.PLANNED, why, plan)
            return
        if self.mode is Mode.DRY_RUN:
            self.report.ca_store = StoreOutcome(StoreStatus.PLANNED, "a dry run", plan)
            return
        try:
            fresh = await self.call(self.apim.service_facts)  # the list may have changed since the run began
        except AzureCallError as error:
            self.report.fail(str(error), retryable=True)
            self.report.ca_store = StoreOutcome(StoreStatus.FAILED, str(error), plan)
            return
        if fresh.provisioning_state.lower() != "succeeded":
            busy = f"the service is updating (provisioningState {fresh.provisioning_state}): the next run writes"
            self.report.ca_store = StoreOutcome(StoreStatus.BUSY, busy, plan)
            return
        plan = plan_store(desired, fresh.ca_store, owned=owned, removals=removals)
        if plan.refusal is not None or not plan.changes:
            status = StoreStatus.REFUSED if plan.refusal is not None else StoreStatus.IN_STEP
            self.report.ca_store = StoreOutcome(status, plan.refusal or "", plan)
            return
        try:
            await self.call(self.apim.write_ca_store, plan.entries)
        except AzureCallError as error:
            if error.status == _CONFLICT:
                self.report.ca_store = StoreOutcome(StoreStatus.BUSY, f"{error}: the next run writes", plan)
                return
            self.report.fail(str(error), retryable=True)
            self.report.ca_store = StoreOutcome(StoreStatus.FAILED, str(error), plan)
            return
        started = "the service applies the update over the next minutes (15 or more); the next run confirms it"
        self.report.ca_store = StoreOutcome(StoreStatus.STARTED, started, plan)

    async def gateway_cas(self, gateway: str) -> GatewayCas | None:
        """A gateway's certificate authorities; None (and an error) when they cannot be read."""
        try:
            cas = await self.call(self.apim.gateway_cas, gateway, order=_GATEWAY_READ)
        except AzureCallError as error:
            self.report.fail(str(error), retryable=True)
            return None
        self.trusted.update(certificate_id.lower() for certificate_id, trusted in cas.items() if trusted)
        self.held.update(certificate_id.lower() for certificate_id in cas)
        return cas

    def rank(self, action: Action, uploading: Mapping[str, object]) -> int:
        """First a CA no gateway trusts yet (it is being uploaded, or no gateway read so far trusts it)."""
        # A root counts once some gateway trusts it; another CA once some gateway holds it (it builds chains).
        somewhere = self.trusted if action.trusted else self.held
        nowhere = action.certificate_id in uploading or action.certificate_id.lower() not in somewhere
        return _FIRST if nowhere else _NEXT

    async def put(self, action: Action, upload: asyncio.Task[Outcome] | None, rank: int) -> Outcome:
        if upload is not None:
            uploaded = (await upload).status
            if uploaded is Status.FAILED:
                self.progress.done(Work.WRITES)
                return Outcome(action, Status.SKIPPED, f"not set: uploading {action.certificate_id} failed")
            if uploaded is Status.DEFERRED:
                self.progress.done(Work.WRITES)
                return Outcome(action, Status.DEFERRED, _LEFT)
        return await self.write(action, rank)

    async def write(self, action: Action, rank: int) -> Outcome:
        if self.mode is Mode.DRY_RUN:
            return Outcome(action, Status.PLANNED)
        try:
            # The time budget: a write starts only with a token had before the run's deadline.
            admitted = await self.lane.admit(_LIMIT_OF[action.kind], rank)
            if admitted is None:
                return Outcome(action, Status.DEFERRED, _LEFT)
            log.debug("%s", action.describe())
            with self.lane.calling(rank, prepaid=admitted):  # a token left unused is given back, even if cancelled
                try:
                    async with self.arm_slots.hold(2 * rank):
                        if self.lane.time_left <= 0:
                            return Outcome(action, Status.DEFERRED, _LEFT)
                        await self._apply(action)
                except Throttled as error:
                    return Outcome(action, Status.DEFERRED, f"{_LEFT} ({error})")
                except AzureCallError as error:
                    self.report.fail(str(error), retryable=True)
                    return Outcome(action, Status.FAILED, str(error))
            return Outcome(action, Status.APPLIED)
        finally:
            self.progress.done(Work.WRITES)

    def planned_writes(self, actions: Sequence[Action]) -> None:
        if self.mode is not Mode.DRY_RUN and actions:
            self.progress.planned(Work.WRITES, len(actions))

    async def _apply(self, action: Action) -> None:
        if action.kind is ActionKind.UPLOAD_CERTIFICATE:
            assert action.certificate is not None
            await self.apim.upload_certificate(action.certificate_id, action.certificate.public_pfx())
        elif action.kind is ActionKind.SET_GATEWAY_CA:
            assert action.gateway is not None
            await self.apim.set_gateway_ca(
                action.gateway, action.certificate_id, bool(action.trusted), replace=action.replace
            )
        elif action.kind is ActionKind.REMOVE_GATEWAY_CA:
            assert action.gateway is not None
            await self.apim.remove_gateway_ca(action.gateway, action.certificate_id)
        else:
            await self.apim.delete_certificate(action.certificate_id)

    async def read(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A Key Vault read, counted as done for the progress whether it worked or not."""
        try:
            return await self._call(self.keyvault_slots, _CRITICAL_READ, function, *args)
        finally:
            self.progress.done(Work.KEYVAULT_READS)

    async def call(self, function: Callable[..., Awaitable[T]], *args: Any, order: int = _CRITICAL_READ) -> T:
        """One ARM call (a read, or a write of the managed gateway's CA store or a backend)."""
        return await self._call(self.arm_slots, order, function, *args)

    async def _call(self, slots: _Slots, order: int, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One Azure call, holding a slot of its service while in flight; its requests are paced as reads."""
        log.debug("%s %s", getattr(function, "__name__", "call"), " ".join(a for a in args if isinstance(a, str)))
        async with slots.hold(order):
            with self.lane.calling(_READ):
                return await function(*args)


def _applied(outcomes: Sequence[Outcome]) -> list[Action]:
    return [outcome.action for outcome in outcomes if outcome.status is Status.APPLIED]


def _leaves(group: BaseExceptionGroup[E]) -> Iterator[E]:
    """The exceptions in a group raised by nested task groups."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


def _log(report: Report) -> None:
    for outcome in report.outcomes:
        action = outcome.action
        dimensions: dict[str, str] = {
            Dim.ACTION: action.kind.value,
            Dim.CERTIFICATE_ID: action.certificate_id,
            Dim.STATUS: outcome.status.value,
            **({Dim.GATEWAY: action.gateway} if action.gateway else {}),
        }
        log.info("%s %s %s", ACTION_RECORD, outcome.status.value, action.describe(), extra=dimensions)
    # Warnings (a missing root, a retired certificate) and conflicts (an entry not ours that blocks the
    # desired trust) reach the log too: an event run's report goes nowhere else.
    for message in report.warnings:
        log.warning("%s", message)
    for message in report.conflicts:
        log.warning("conflict: %s", message)
    for message in report.errors:
        log.error("%s", message)


def _workspaces_too(workspaces: Sequence[ApimWorkspace]) -> str:
    """The failure's tail naming the service's workspaces, whose gateways take no CA certificates either."""
    if not workspaces:
        return ""
    named = "; ".join(f"{w.id} ({', '.join(w.gateways) or 'no workspace gateway linked'})" for w in workspaces)
    return f"; its workspaces take none either ({WORKSPACE_REASON}): {named}"
