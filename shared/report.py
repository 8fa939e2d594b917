"""What a run did and found: its actions with their outcomes, conflicts, warnings and errors.

One vocabulary for the HTTP answer, the CLI and the audit's log record:

- run ``status``: ``in-sync`` (APIM holds and trusts what Key Vault needs, as the run leaves it),
  ``expiring`` (in sync, but a leaf or CA a backend needs expires within EXPIRY_WARNING_DAYS),
  ``drift`` (something needed is missing or something unneeded remains: a dry run's plan, a
  change the run was not allowed to make, a conflict with an entry the app does not own),
  ``partial`` (no error, but the run's time budget ran out before every write could start: ``left``
  counts what is left, by action kind; the next run continues from what APIM holds),
  ``failed`` (an error: the run could not read or write what it needed);
- action ``status``: ``planned`` (not written: a dry run, or a change this run may not make),
  ``applied``, ``failed``, ``skipped`` (not written because something it depends on failed),
  ``deferred`` (not started: left for the next run when the time budget ran out).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .backend_tls import BackendOutcome
from .ca_store import StoreOutcome, StoreStatus
from .expiry import Horizon
from .findings import Finding, findings
from .plan import Action, Observed
from .scope import Mode, Scope
from .service_kind import Target, kind_of
from .verdicts import LeafVerdict


class ActionStatus(enum.StrEnum):
    """What became of one planned action."""

    PLANNED = "planned"
    APPLIED = "applied"
    FAILED = "failed"
    SKIPPED = "skipped"
    DEFERRED = "deferred"  # not started: the run's time budget ran out; the next run continues


class RunStatus(enum.StrEnum):
    IN_SYNC = "in-sync"
    EXPIRING = "expiring"
    DRIFT = "drift"
    PARTIAL = "partial"  # no error, but writes were left for the next run (the time budget ran out)
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: ActionStatus
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        action = self.action
        return {
            "action": action.kind.value,
            "certificateId": action.certificate_id,
            "gateway": action.gateway,
            "isTrusted": action.trusted,
            "reason": action.reason,
            "status": self.status.value,
            **({"error": self.error} if self.error else {}),
        }


@dataclass(frozen=True)
class GatewayEntry:
    """One certificate authority of a gateway, as the operator's status table shows it."""

    certificate_id: str
    subject: str
    trusted: bool
    ours: bool
    expires: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "certificateId": self.certificate_id,
            "subject": self.subject or None,  # None: APIM holds no certificate of that id
            "isTrusted": self.trusted,
            "owner": "app" if self.ours else "foreign",
            "expires": self.expires.isoformat() if self.expires else None,
        }


@dataclass(frozen=True)
class GatewayEntries:
    gateway: str
    entries: tuple[GatewayEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"gateway": self.gateway, "certificateAuthorities": [entry.to_dict() for entry in self.entries]}


# The version of the JSON form (docs/report.schema.json): raised when a key changes meaning or goes;
# new keys may come without it.
SCHEMA_VERSION = 1


@dataclass
class Report:
    scope: Scope
    mode: Mode
    outcomes: list[Outcome] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retryable: bool = False  # an Azure call failed: running again later may succeed
    missing: list[str] = field(default_factory=list)  # named certificates Key Vault does not hold
    horizon: Horizon | None = None
    verdicts: tuple[LeafVerdict, ...] = ()
    gateways: tuple[GatewayEntries, ...] = ()  # APIM as the run leaves it: for `python -m shared status`
    deployment: str = ""  # DEPLOYMENT_ID as the run used it: the mark in the ids it owns
    tier: str = ""  # the service's sku.name, when it could be read
    targets: tuple[Target, ...] = ()  # where in the service the app sets or judges trust (service_kind)
    ca_store: StoreOutcome | None = None  # the classic CA store, when CA_STORE=manage
    backends: tuple[BackendOutcome, ...] = ()  # v2 backends' TLS pins, when BACKEND_TLS=manage
    unjudged: tuple[LeafVerdict, ...] = ()  # the managed gateway's, when its target is not judged

    @property
    def status(self) -> RunStatus:
        if self.errors:
            return RunStatus.FAILED
        if self.left():
            return RunStatus.PARTIAL
        store = self.ca_store.status if self.ca_store is not None else None
        if store in (StoreStatus.STARTED, StoreStatus.BUSY):
            return RunStatus.PARTIAL  # the service applies (or is busy with) an update: the next run confirms
        if store in (StoreStatus.PLANNED, StoreStatus.REFUSED):
            return RunStatus.DRIFT
        # A workspace backend is reported "not changed": the app writes none, so it is no drift of the app's.
        if any(backend.status not in ("in-step", "applied", "not changed") for backend in self.backends):
            return RunStatus.DRIFT
        if self.conflicts or any(outcome.status is not ActionStatus.APPLIED for outcome in self.outcomes):
            return RunStatus.DRIFT
        if any(not verdict.accepted for verdict in self.verdicts):
            return RunStatus.DRIFT
        if self.horizon is not None and self.horizon.expiring():
            return RunStatus.EXPIRING
        return RunStatus.IN_SYNC

    @property
    def in_sync(self) -> bool:
        """APIM holds and trusts what Key Vault needs (something may still expire soon)."""
        return self.status in (RunStatus.IN_SYNC, RunStatus.EXPIRING)

    def summary(self) -> dict[str, int]:
        """How many actions of each kind ended in each status, e.g. ``{"set-gateway-ca applied": 4}``."""
        counts = Counter(f"{outcome.action.kind.value} {outcome.status.value}" for outcome in self.outcomes)
        return dict(sorted(counts.items()))

    def left(self) -> dict[str, int]:
        """How many writes of each action kind were left for the next run, e.g. ``{"set-gateway-ca": 40}``."""
        return self.count_left(self.outcomes)

    @staticmethod
    def count_left(outcomes: Sequence[Outcome]) -> dict[str, int]:
        counts = Counter(outcome.action.kind.value for outcome in outcomes if outcome.status is ActionStatus.DEFERRED)
        return dict(sorted(counts.items()))

    def findings(self) -> list[Finding]:
        """The conflicts, warnings and errors as objects with a code (classified from their sentences)."""
        return findings(
            self.conflicts, self.warnings, self.errors, gateways=[gateway.gateway for gateway in self.gateways]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "scope": str(self.scope),
            "deployment": self.deployment,
            "mode": self.mode.value,
            "dryRun": self.mode is Mode.DRY_RUN,
            "status": self.status.value,
            "inSync": self.in_sync,
            "summary": self.summary(),
            "left": self.left(),
            "actions": [outcome.to_dict() for outcome in self.outcomes],
            "verdicts": {
                "accepted": sum(verdict.accepted for verdict in self.verdicts),
                "rejected": [verdict.to_dict() for verdict in self.verdicts if not verdict.accepted],
            },
            # The sentences, as readers before the schema version read them; `findings` has each as an object.
            "conflicts": list(self.conflicts),
            "warnings": list(self.warnings),
            "errors": list(self.errors),
            "findings": [finding.to_dict() for finding in self.findings()],
            "gateways": [gateway.to_dict() for gateway in self.gateways],
            **({"expiry": self.horizon.to_dict()} if self.horizon is not None else {}),
            **({"service": self.service_dict()} if self.tier else {}),
        }

    def service_dict(self) -> dict[str, Any]:
        """The service's kind, each target with what the app does there, and the CA store's outcome."""
        return {
            "tier": self.tier,
            "kind": kind_of(self.tier).value,
            "targets": [target.to_dict() for target in self.targets],
            **({"caStore": self.ca_store.to_dict()} if self.ca_store is not None else {}),
            **({"backends": [backend.to_dict() for backend in self.backends]} if self.backends else {}),
            **(
                {
                    "unjudgedVerdicts": {
                        "accepted": sum(v.accepted for v in self.unjudged),
                        "rejected": [v.to_dict() for v in self.unjudged if not v.accepted],
                    }
                }
                if self.unjudged
                else {}
            ),
        }


def gateway_entries(observed: Observed, gateways: Sequence[str]) -> tuple[GatewayEntries, ...]:
    """Each gateway's certificate authorities as `observed`, for the status table."""
    found = []
    for gateway in sorted(gateways):
        entries = []
        for certificate_id, trusted in sorted(observed.gateway_cas.get(gateway, {}).items()):
            held = observed.certificates.get(certificate_id)
            subject, expires = (held.subject, held.expires) if held is not None else ("", None)
            entries.append(
                GatewayEntry(
                    certificate_id, subject, trusted, held is not None and observed.owner.is_ours(held), expires
                )
            )
        found.append(GatewayEntries(gateway, tuple(entries)))
    return tuple(found)
