"""The v2 tiers' side of a run (BACKEND_TLS=manage): each backend serving a bound certificate gets the
pins its needed versions need (the plan is the pure `shared.backend_tls`'s)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .backend_tls import BackendOutcome, plan_backends
from .desired import Desired
from .executor import Executor
from .observe import workspace_read_failed
from .ports import ApimPort, ApimWorkspace, AzureCallError
from .problems import NO_NOTES, Notes, gathered
from .settings import Settings

_PRECONDITION_FAILED = 412  # the backend changed since it was read: the next run pins it


@dataclass(frozen=True)
class BackendSync:
    outcomes: tuple[BackendOutcome, ...] = ()
    notes: Notes = NO_NOTES


async def sync_backends(
    executor: Executor, apim: ApimPort, settings: Settings, desired: Desired, workspaces: Sequence[ApimWorkspace]
) -> BackendSync:
    """Only the tls block changes, under the backend's ETag; a backend already pinning every needed
    version is left alone. Workspace backends are listed, never written."""
    try:
        backends = await executor.call(apim.backends)
    except AzureCallError as error:
        return BackendSync(notes=Notes.problem(str(error), retryable=error.code != "NoRegisteredProviderFound"))
    outcomes, notes = [], [Notes()]
    in_workspaces, workspace_notes = await workspace_backends(executor, apim, settings, desired, workspaces)
    for plan in plan_backends(desired, backends, dict(settings.backend_certificates)):
        name, certificate = plan.backend.id, plan.certificate
        rejected = [f"{n.version}: {why}" for n, why in plan.verdicts if why]
        if not plan.changes and not rejected:
            outcomes.append(BackendOutcome(name, certificate, "in-step"))
            continue
        if executor.dry_run or not desired.complete:
            why = "a dry run" if executor.dry_run else "not every bound certificate could be read"
            outcomes.append(BackendOutcome(name, certificate, "planned", f"{why}; as found: {'; '.join(rejected)}"))
            continue
        try:
            await executor.call(apim.set_backend_tls, name, plan.tls)
        except AzureCallError as error:
            if error.status == _PRECONDITION_FAILED:
                outcomes.append(BackendOutcome(name, certificate, "planned", str(error)))
                continue
            notes.append(Notes.problem(str(error), retryable=True))
            outcomes.append(BackendOutcome(name, certificate, "failed", str(error)))
            continue
        outcomes.append(BackendOutcome(name, certificate, "applied"))
    if not outcomes:
        # Nothing is trusted anywhere on a v2 tier then: not in sync, and a redelivery would not help.
        why = (
            f"BACKEND_TLS=manage: no backend of {settings.apim.name} serves a bound certificate (by its URL's "
            "host or BACKEND_CERTIFICATES): nothing is pinned"
            + (
                f" ({len(in_workspaces)} workspace backend(s) serve one, which the app does not change)"
                if in_workspaces
                else ""
            )
        )
        notes.append(Notes.problem(why, retryable=False))
    return BackendSync((*outcomes, *in_workspaces), gathered((workspace_notes, *notes)))


async def workspace_backends(
    executor: Executor, apim: ApimPort, settings: Settings, desired: Desired, workspaces: Sequence[ApimWorkspace]
) -> tuple[list[BackendOutcome], Notes]:
    """Workspace backends that serve a bound certificate, matched as the service's are: listed as
    not changed (the app writes no workspace entity), never written."""
    found, notes = [], Notes()
    for workspace in workspaces:
        try:
            backends = await executor.call(apim.workspace_backends, workspace.id)
        except AzureCallError as error:
            what = f"the backends of workspace {workspace.id}"
            notes = notes + workspace_read_failed(error, "workspaces/backends/read", what)
            continue
        for plan in plan_backends(desired, backends, dict(settings.backend_certificates)):
            backend = f"{workspace.id}/{plan.backend.id}"
            found.append(BackendOutcome(backend, plan.certificate, "not changed", "workspace backend"))
    return found, notes
