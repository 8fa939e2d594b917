"""The engine: gather desired and observed state, plan with pure functions, then apply.

The event trigger, the resync endpoint and the drift audit are this one engine with a different
scope and ``apply`` on or off:

- an event reconciles one certificate to Key Vault's *current* state (not the event's version), so
  duplicate and out-of-order deliveries converge, and never removes anything;
- a full-scope run (resync without a certificate list, the audit) may also remove what the app
  created and no bound certificate needs any more.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from shared.chain import ChainError, TrustPath, read_secret, trust_path
from shared.desired import CertificateChains, Desired, VersionInfo, desired_authorities, merge, versions_to_trust
from shared.errors import AzureCallError, NotFoundError
from shared.keyvault import SecretValue
from shared.plan import (
    Action,
    ActionKind,
    ApimCertificate,
    CertificatePlan,
    Observed,
    Plan,
    make_plan,
    plan_certificates,
    plan_gateway,
)
from shared.settings import MANAGED_GATEWAY, ApimService, Binding, Settings
from shared.workers import TaskGroup

log = logging.getLogger("trustsync")
T = TypeVar("T")


# Task priorities (workers.TaskGroup): with more calls ready than MAX_CONCURRENCY, those with the
# longer chain of calls behind them go first, then those with more calls waiting on them. In an
# event's run a Key Vault read has a secret read, an upload and every gateway's put behind it; an
# upload and a gateway's CA list have puts behind them (every gateway's, or that gateway's two);
# a put has nothing. A full-scope run keeps the order reads became ready in: there the Key Vault
# reads are most of the work, and putting them all first would leave the paged CA lists for last.
_KEY_VAULT_READ = 3
_UPLOAD = 2
_CA_LIST = 1


class VaultPort(Protocol):
    async def certificate_names(self, each_page: Callable[[list[str]], None]) -> None: ...
    async def versions(self, name: str) -> list[VersionInfo]: ...
    async def secret(self, name: str, version: str) -> SecretValue: ...


class ApimPort(Protocol):
    async def certificates(self) -> dict[str, ApimCertificate]: ...
    async def gateways(self) -> list[str]: ...
    async def gateway_cas(self, gateway: str) -> dict[str, bool]: ...
    async def upload_certificate(self, certificate_id: str, pfx: bytes, *, replace: bool) -> None: ...
    async def set_gateway_ca(self, gateway: str, certificate_id: str, trusted: bool, *, replace: bool) -> None: ...
    async def remove_gateway_ca(self, gateway: str, certificate_id: str) -> None: ...
    async def delete_certificate(self, certificate_id: str) -> None: ...


class ClientsPort(Protocol):
    def vault(self, vault_url: str) -> VaultPort: ...
    def apim(self, service: ApimService) -> ApimPort: ...


@dataclass(frozen=True)
class Scope:
    """Which bound certificates a run looks at. No names: every one (full scope, removals allowed)."""

    certificates: frozenset[str] | None = None
    vault_host: str | None = None  # an event's vault: only its bindings

    @property
    def is_full(self) -> bool:
        return self.certificates is None and self.vault_host is None

    def __str__(self) -> str:
        return "full" if self.certificates is None else "certificates " + ", ".join(sorted(self.certificates))


class Status(enum.StrEnum):
    PLANNED = "planned"
    APPLIED = "applied"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class ActionResult:
    action: Action
    service: str
    status: Status = Status.PLANNED
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        action = self.action
        return {
            "action": action.kind.value,
            "certificateId": action.certificate_id,
            "gateway": action.gateway,
            "isTrusted": action.trusted,
            "reason": action.reason,
            "service": self.service,
            "status": self.status.value,
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class Report:
    scope: Scope
    dry_run: bool
    results: list[ActionResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retryable: bool = False  # an Azure call failed: running again may succeed

    @property
    def drift(self) -> bool:
        """APIM did not match Key Vault when the run looked."""
        return bool(self.results or self.conflicts)

    @property
    def in_sync(self) -> bool:
        """APIM matches Key Vault now: nothing was needed, or everything needed was applied."""
        if self.errors or self.conflicts:
            return False
        return all(result.status == Status.APPLIED for result in self.results) and not (self.dry_run and self.results)

    @property
    def status(self) -> str:
        if self.errors:
            return "failed"
        return "drift" if self.drift else "in-sync"

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": str(self.scope),
            "dryRun": self.dry_run,
            "inSync": self.in_sync,
            "drift": self.drift,
            "status": self.status,
            "actions": [result.to_dict() for result in self.results],
            "conflicts": list(self.conflicts),
            "warnings": list(self.warnings),
            "errors": list(self.errors),
        }


class Engine:
    def __init__(
        self,
        settings: Settings,
        clients: ClientsPort,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.clock = clock

    async def run(self, scope: Scope, *, apply: bool) -> Report:
        report = Report(scope=scope, dry_run=not apply)
        by_service: dict[ApimService, list[Binding]] = {}
        for binding in self.settings.bindings:
            if scope.vault_host is None or binding.vault_host == scope.vault_host:
                by_service.setdefault(binding.apim, []).append(binding)
        for service, bindings in by_service.items():
            await _ServiceRun(self, service, bindings, scope, report).run(apply=apply)
        # A full run that re-reads Key Vault before removing would otherwise say some things twice.
        report.warnings = list(dict.fromkeys(report.warnings))
        report.errors = list(dict.fromkeys(report.errors))
        for result in report.results:
            log.info("%s %s", result.status, result.action.describe())
        # Warnings (an expired CA left untrusted, a missing root, certificates ignored) and conflicts
        # (an entry not ours that blocks the desired trust) must reach the log too: an event run's
        # report goes nowhere else.
        for message in report.warnings:
            log.warning("%s", message)
        for message in report.conflicts:
            log.warning("conflict: %s", message)
        for message in report.errors:
            log.error("%s", message)
        return report


class _ServiceRun:
    """One run against one APIM service and the bindings that target it."""

    def __init__(self, engine: Engine, service: ApimService, bindings: Sequence[Binding], scope: Scope, report: Report):
        self.engine = engine
        self.settings = engine.settings
        self.service = service
        self.apim = engine.clients.apim(service)
        self.bindings = bindings
        self.scope = scope
        self.report = report

    async def run(self, *, apply: bool) -> None:
        now = self.engine.clock()
        async with TaskGroup(self.settings.max_concurrency) as tasks:
            writes = _Writes(self, tasks)
            early = _EarlyWrites(self, writes) if apply and not self.scope.is_full else None
            desired_state = _DesiredGathering(self, tasks, now, on_complete=early.desired_ready if early else None)
            observed_state = _ObservedGathering(self, tasks, early)
            await tasks.wait()
            observed = observed_state.result()
            if observed is None:
                return
            gateways = observed_state.selected
            desired = desired_state.result()
            plan = self._plan(desired, observed, gateways, observed_state.complete)
            if plan.has_removals:
                # Removals are confirmed against Key Vault read *after* APIM: a rotation that uploaded a
                # CA while this run was gathering is then seen as desired, never deleted as an orphan.
                desired_state = _DesiredGathering(self, tasks, now)
                await tasks.wait()
                desired = desired_state.result()
                plan = self._plan(desired, observed, gateways, observed_state.complete)
            for part in desired.values():
                self.report.warnings.extend(part.notes)
            self.report.warnings.extend(plan.notes)
            self.report.conflicts.extend(plan.conflicts)
            # The report lists the plan of the state as finally read; the writes already made for it
            # (an event's, started as their inputs arrived) keep their outcome and are not made again.
            results = early.results_for(plan) if early is not None else [self.result_of(a) for a in plan.actions]
            self.report.results.extend(results)
            if apply and results:
                await _Apply(tasks, writes, results).execute()

    def result_of(self, action: Action) -> ActionResult:
        return ActionResult(action, self.service.name)

    def desired_by_gateway(self, desired: dict[Binding, Desired], gateways: Sequence[str]) -> dict[str, Desired]:
        return {
            gateway: merge([part for binding, part in desired.items() if gateway in binding.gateways])
            for gateway in gateways
        }

    def _plan(
        self, desired: dict[Binding, Desired], observed: Observed, gateways: Sequence[str], complete: bool
    ) -> Plan:
        by_gateway = self.desired_by_gateway(desired, gateways)
        return make_plan(by_gateway, observed, allow_removals=self.scope.is_full and complete)

    def fail(self, message: str, *, retryable: bool) -> None:
        self.report.errors.append(message)
        self.report.retryable = self.report.retryable or retryable

    def warn(self, message: str) -> None:
        self.report.warnings.append(message)


class _DesiredGathering:
    """Key Vault → the chains of each bound certificate's versions to trust."""

    def __init__(
        self,
        run: _ServiceRun,
        tasks: TaskGroup,
        now: datetime,
        *,
        on_complete: Callable[[dict[Binding, Desired]], None] | None = None,
    ) -> None:
        self.run = run
        self.tasks = tasks
        self.now = now
        self.on_complete = on_complete
        self.outstanding = 0  # reads started and not yet handled
        self.chains: dict[tuple[Binding, str], dict[str, TrustPath]] = {}  # by version
        self.order: dict[tuple[Binding, str], tuple[VersionInfo, ...]] = {}
        self.failed: set[Binding] = set()
        self.priority = 0 if run.scope.is_full else _KEY_VAULT_READ
        self.outstanding += 1  # until every first read is started: completion is not reported midway
        for binding in run.bindings:
            self._start(binding)
        self._handled()

    def _read(
        self, call: Callable[[], Awaitable[T]], then: Callable[[T], None], on_error: Callable[[Exception], None]
    ) -> None:
        """Start one Key Vault read; once it and every read its continuation started are handled, the
        desired state is complete."""

        def handled_then(result: T) -> None:
            then(result)
            self._handled()

        def handled_error(error: Exception) -> None:
            on_error(error)
            self._handled()

        self.outstanding += 1
        self.tasks.start(call, then=handled_then, on_error=handled_error, priority=self.priority)

    def _handled(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0 and self.on_complete is not None:
            self.on_complete(self.result())

    def _start(self, binding: Binding) -> None:
        names = self.run.scope.certificates
        if names is not None:
            for name in sorted(names):
                if name in binding.certificates:
                    self._versions(binding, name)
        elif binding.certificates.names is not None:
            for name in sorted(binding.certificates.names):
                self._versions(binding, name)
        else:
            vault = self.run.engine.clients.vault(binding.keyvault_url)

            def listed_page(found: list[str]) -> None:
                # Each page's version reads start now, while the listing fetches the next page: with
                # C certificates the list is ceil(C/25) sequential round trips, not a prefix to wait out.
                for name in sorted(found):
                    self._versions(binding, name)

            self._read(
                lambda: vault.certificate_names(each_page=listed_page),
                then=lambda _: None,
                on_error=lambda error: self._failed(binding, error),
            )

    def _versions(self, binding: Binding, name: str) -> None:
        vault = self.run.engine.clients.vault(binding.keyvault_url)
        key = (binding, name)
        self.chains[key] = {}

        def chosen(versions: list[VersionInfo]) -> None:
            selected = versions_to_trust(versions, self.now)
            if not selected:
                # Retired on purpose: it needs nothing, so what only it needed may go in a full run.
                self.run.warn(f"certificate {name} has no enabled version: nothing of it is trusted")
                return
            self.order[key] = selected
            for version in selected:
                self._secret(binding, name, version)

        # versions → secrets → uploads → puts: the longest chain (an event's reads go first)
        self._read(lambda: vault.versions(name), then=chosen, on_error=lambda error: self._failed(binding, error))

    def _secret(self, binding: Binding, name: str, version: VersionInfo) -> None:
        vault = self.run.engine.clients.vault(binding.keyvault_url)

        def parsed(secret: SecretValue) -> None:
            try:
                chain = trust_path(
                    read_secret(secret.value, secret.content_type), leaf_thumbprint=version.leaf_thumbprint, at=self.now
                )
            except ChainError as error:
                self._failed(binding, ChainError(f"certificate {name} version {version.version}: {error}"))
                return
            self.chains[(binding, name)][version.version] = chain

        def unreadable(error: Exception) -> None:
            # Key Vault has just listed this version, so even a 404 now is a passing inconsistency (or a
            # deletion since), not bad input: retrying re-lists and settles it either way, whereas not
            # retrying would consume the event and leave the new chain untrusted.
            self._failed(binding, error, retryable=isinstance(error, AzureCallError))

        self._read(lambda: vault.secret(name, version.version), then=parsed, on_error=unreadable)

    def _failed(self, binding: Binding, error: Exception, *, retryable: bool | None = None) -> None:
        self.failed.add(binding)
        if retryable is None:
            # Bad input (an unparsable chain, a certificate that is not there) will not fix itself by retrying.
            retryable = isinstance(error, AzureCallError) and not isinstance(error, NotFoundError)
        self.run.fail(f"{binding.keyvault_url}: {error}", retryable=retryable)

    def result(self) -> dict[Binding, Desired]:
        found: dict[Binding, Desired] = {}
        for binding in self.run.bindings:
            certificates = []
            for (owner, name), chains in sorted(self.chains.items(), key=lambda item: item[0][1]):
                if owner == binding:
                    versions = self.order.get((owner, name), ())
                    certificates.append(
                        CertificateChains(name, tuple((v, chains[v.version]) for v in versions if v.version in chains))
                    )
            found[binding] = desired_authorities(
                certificates,
                trust_intermediates=self.run.settings.trust_intermediates,
                now=self.now,
                complete=binding not in self.failed,
            )
        return found


class _ObservedGathering:
    """APIM → its certificates, the selected gateways and their certificate authorities."""

    def __init__(self, run: _ServiceRun, tasks: TaskGroup, early: _EarlyWrites | None) -> None:
        self.run = run
        self.tasks = tasks
        self.early = early
        self.certificates: dict[str, ApimCertificate] | None = None
        self.gateway_cas: dict[str, dict[str, bool]] = {}
        self.selected: list[str] = []
        self.listed = False
        self.complete = True
        apim = run.apim
        tasks.start(apim.certificates, then=self._got_certificates, on_error=self._failed)
        tasks.start(apim.gateways, then=self._got_gateways, on_error=self._failed)

    def _got_certificates(self, certificates: dict[str, ApimCertificate]) -> None:
        self.certificates = certificates
        if self.early is not None:
            self.early.apim_listed(self)

    def _got_gateways(self, listed: list[str]) -> None:
        self_hosted = [gateway for gateway in listed if gateway.lower() != MANAGED_GATEWAY]
        selected = [g for g in self_hosted if any(g in binding.gateways for binding in self.run.bindings)]
        for binding in self.run.bindings:
            missing = sorted(
                name for name in binding.gateways.names or () if name.lower() not in {g.lower() for g in listed}
            )
            if missing:
                self.run.fail(
                    f"gateway(s) {', '.join(missing)} named in APIM_GATEWAYS do not exist in {self.run.service.name}",
                    retryable=False,
                )
        if not selected:
            self.run.warn(f"{self.run.service.name} has no self-hosted gateway to trust the certificates")
        self.selected = selected
        self.listed = True
        # A full-scope run also reads the other gateways: what they reference must never be deleted.
        to_read = self_hosted if self.run.scope.is_full else selected
        for gateway in to_read:
            self._read_cas(gateway)
        if self.early is not None:
            self.early.apim_listed(self)

    def _read_cas(self, gateway: str) -> None:
        def got(cas: dict[str, bool]) -> None:
            self.gateway_cas[gateway] = cas
            if self.early is not None:
                self.early.gateway_ready(self, gateway)

        def failed(error: Exception) -> None:
            # Unknown references: plan nothing for this gateway and remove nothing anywhere.
            self.complete = False
            if gateway in self.selected:
                self.selected.remove(gateway)
            self.run.fail(str(error), retryable=True)

        priority = 0 if self.run.scope.is_full else _CA_LIST
        self.tasks.start(lambda: self.run.apim.gateway_cas(gateway), then=got, on_error=failed, priority=priority)

    def _failed(self, error: Exception) -> None:
        self.run.fail(str(error), retryable=True)

    def result(self) -> Observed | None:
        if self.certificates is None or not self.listed:
            return None
        return Observed(certificates=self.certificates, gateway_cas=dict(self.gateway_cas))


class _EarlyWrites:
    """An event's writes, each started as soon as its inputs are in, instead of after every read.

    The uploads need the desired chains (every Key Vault read) and APIM's certificate list; a
    gateway's puts need those uploads' ids and that gateway's CA list, not the other gateways'.
    So a rotation's uploads overlap the CA lists still being read, and each gateway's puts start
    when its own list arrives. Only for runs that never remove (events, named resyncs): removals
    wait for the whole state and a second look at Key Vault. The plan of the whole state, made at
    the end, is what the report lists; it holds the same actions (the same pure functions of the
    same inputs), and those already written are not written again.
    """

    def __init__(self, run: _ServiceRun, writes: _Writes) -> None:
        self.run = run
        self.writes = writes
        self.desired: dict[Binding, Desired] | None = None  # once every Key Vault read is handled
        self.observed: _ObservedGathering | None = None  # once APIM has answered a list
        self.certificates: CertificatePlan | None = None  # once the uploads are planned
        self.started: dict[Action, ActionResult] = {}

    def desired_ready(self, desired: dict[Binding, Desired]) -> None:
        """Every Key Vault read of the run is handled."""
        self.desired = desired
        self._plan_uploads()

    def apim_listed(self, observed: _ObservedGathering) -> None:
        """APIM's certificate list or its gateway list has arrived."""
        self.observed = observed
        self._plan_uploads()

    def _plan_uploads(self) -> None:
        desired, observed = self.desired, self.observed
        if self.certificates is not None or desired is None or observed is None:
            return
        if observed.certificates is None or not observed.listed:
            return
        by_gateway = self.run.desired_by_gateway(desired, observed.selected)
        self.certificates = plan_certificates(by_gateway.values(), observed.certificates)
        self._start(self.certificates.uploads)
        for gateway in list(observed.gateway_cas):
            self.gateway_ready(observed, gateway)

    def gateway_ready(self, observed: _ObservedGathering, gateway: str) -> None:
        if self.certificates is None or self.desired is None:
            return  # _plan_uploads, once it can, plans the gateways whose lists are in by then
        if gateway not in observed.selected:
            return
        desired = self.run.desired_by_gateway(self.desired, [gateway])[gateway]
        changes = plan_gateway(gateway, desired, observed.gateway_cas[gateway], self.certificates)
        self._start(changes.actions)

    def _start(self, actions: Iterable[Action]) -> None:
        results = [self.run.result_of(action) for action in actions if action not in self.started]
        self.started.update((result.action, result) for result in results)
        self.writes.start(results)

    def results_for(self, plan: Plan) -> list[ActionResult]:
        results = [self.started.get(action) or self.run.result_of(action) for action in plan.actions]
        # A write made early that the final plan no longer holds (a gateway's CA list failed meanwhile) still happened.
        planned = set(plan.actions)
        return results + [result for action, result in self.started.items() if action not in planned]


class _Writes:
    """Starts uploads and gateway CA puts as they come; a put of a certificate being uploaded waits for the upload."""

    def __init__(self, run: _ServiceRun, tasks: TaskGroup) -> None:
        self.run = run
        self.tasks = tasks
        self.uploads: dict[str, ActionResult] = {}  # by certificate id, lower case
        self.waiting: dict[str, list[ActionResult]] = {}

    def start(self, results: Sequence[ActionResult]) -> None:
        uploads = [r for r in results if r.action.kind is ActionKind.UPLOAD_CERTIFICATE]
        for result in uploads:
            self.uploads[result.action.certificate_id.lower()] = result
        for result in uploads:
            self._write(result, then=self._released(result.action.certificate_id.lower()), priority=_UPLOAD)
        for result in results:
            if result.action.kind is ActionKind.SET_GATEWAY_CA:
                self._after_upload(result)
            elif result.action.kind is not ActionKind.UPLOAD_CERTIFICATE:
                self._write(result)  # removals and deletions: _Apply starts them once the additions are done

    def _after_upload(self, result: ActionResult) -> None:
        key = result.action.certificate_id.lower()
        upload = self.uploads.get(key)
        if upload is None or upload.status is Status.APPLIED:
            self._write(result)
        elif upload.status is Status.PLANNED:  # in flight
            self.waiting.setdefault(key, []).append(result)
        else:
            _skip([result], f"not set: uploading {upload.action.certificate_id} failed")

    def _released(self, key: str) -> Callable[[], None]:
        def release() -> None:
            for dependent in self.waiting.pop(key, []):
                self._after_upload(dependent)

        return release

    def _write(self, result: ActionResult, then: Callable[[], None] = lambda: None, priority: int = 0) -> None:
        def done(_: None) -> None:
            result.status = Status.APPLIED
            then()

        def failed(error: Exception) -> None:
            result.status = Status.FAILED
            result.error = str(error)
            self.run.fail(str(error), retryable=True)
            then()

        self.tasks.start(lambda: self._call(result.action), then=done, on_error=failed, priority=priority)

    async def _call(self, action: Action) -> None:
        apim = self.run.apim
        if action.kind is ActionKind.UPLOAD_CERTIFICATE:
            assert action.certificate is not None
            await apim.upload_certificate(
                action.certificate_id, action.certificate.public_pfx(), replace=action.replace
            )
        elif action.kind is ActionKind.SET_GATEWAY_CA:
            assert action.gateway is not None
            assert action.trusted is not None
            await apim.set_gateway_ca(action.gateway, action.certificate_id, action.trusted, replace=action.replace)
        elif action.kind is ActionKind.REMOVE_GATEWAY_CA:
            assert action.gateway is not None
            await apim.remove_gateway_ca(action.gateway, action.certificate_id)
        else:
            await apim.delete_certificate(action.certificate_id)


class _Apply:
    """Writes in dependency order: uploads → gateway CAs → (only if all of that worked) removals → deletions."""

    def __init__(self, tasks: TaskGroup, writes: _Writes, results: list[ActionResult]) -> None:
        self.tasks = tasks
        self.writes = writes
        self.results = results

    async def execute(self) -> None:
        by_kind: dict[ActionKind, list[ActionResult]] = {}
        for result in self.results:
            by_kind.setdefault(result.action.kind, []).append(result)
        additions = by_kind.get(ActionKind.UPLOAD_CERTIFICATE, []) + by_kind.get(ActionKind.SET_GATEWAY_CA, [])
        self.writes.start([result for result in additions if result.status is Status.PLANNED])  # not written early
        await self.tasks.wait()

        removals = by_kind.get(ActionKind.REMOVE_GATEWAY_CA, [])
        deletions = by_kind.get(ActionKind.DELETE_CERTIFICATE, [])
        if any(result.status != Status.APPLIED for result in additions):
            _skip(removals + deletions, "not removed: an addition failed, so trust is left as wide as it was")
            return
        self.writes.start(removals)
        await self.tasks.wait()
        failed_removals = {r.action.certificate_id.lower() for r in removals if r.status != Status.APPLIED}
        for result in deletions:
            if result.action.certificate_id.lower() in failed_removals:
                _skip([result], "not deleted: removing it from a gateway failed")
            else:
                self.writes.start([result])
        await self.tasks.wait()


def _skip(results: Iterable[ActionResult], why: str) -> None:
    for result in results:
        result.status = Status.SKIPPED
        result.error = why
