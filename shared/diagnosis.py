"""`status` as a diagnosis of "RemoteCertificateValidationCallback": per gateway and certificate, the
verdict and why, what expires when, the names a backend host must match, and the next step. Pure.

A gateway rejects a backend's certificate for one of a few reasons; only some are the trust this
app keeps. The diagnosis says which applies to each leaf as APIM is read, and names the others
(host name, managed gateway, a gateway cut off from its configuration) where the app cannot see.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from .chain import Certificate
from .expiry import within
from .report import ActionStatus, Report
from .verdicts import LeafVerdict

GATEWAY_KIND = "self-hosted"  # the engine selects self-hosted gateways only: the managed one has no CA list

# What the app cannot see, and a gateway answers with the same error: said once, under the table.
OTHER_CAUSES = (
    "the backend's host name is not among the leaf's SAN names (the gateway checks it as any TLS client does)",
    "the API is called through the managed gateway, whose trust this app does not manage",
    "the gateway has not fetched its configuration since (a self-hosted gateway cut off from APIM keeps its last)",
    "the backend presents a certificate other than the one in Key Vault (check with openssl s_client -showcerts)",
)


class Next(enum.StrEnum):
    """The next step for one leaf on one gateway."""

    NONE = "none"
    SYNC = "sync"
    REIMPORT = "reimport"  # the secret lacks what the gateway needs: re-import with the full chain
    RENEW = "renew"  # the leaf or a CA expires (or expired): renew it in Key Vault
    RESOLVE_CONFLICT = "resolve-conflict"  # an entry not this app's blocks the trust
    FIX = "fix"  # something else: the reason says what


_NEXT_WORDS = {
    Next.NONE: "nothing: the gateway accepts it",
    Next.SYNC: "run `sync`: the trust it needs is planned, not applied",
    Next.REIMPORT: "re-import it in Key Vault with the full chain, root included, then `sync`",
    Next.RENEW: "renew it in Key Vault before it expires; the app follows the new version",
    Next.RESOLVE_CONFLICT: "remove or rename the APIM certificate named in the conflict, then `sync`",
    Next.FIX: "fix what the reason names, then `plan`",
}


@dataclass(frozen=True)
class LeafDiagnosis:
    gateway: str
    gateway_kind: str
    certificate: str
    version: str
    subject: str
    accepted: bool
    reason: str
    leaf_expires: datetime
    earliest_ca: str
    earliest_ca_expires: datetime | None
    expiring: bool
    san_names: tuple[str, ...]
    next_step: Next

    @property
    def state(self) -> str:
        if not self.accepted:
            return "rejected"
        return "expiring" if self.expiring else "accepted"

    @property
    def advice(self) -> str:
        return _NEXT_WORDS[self.next_step]

    def to_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "gatewayKind": self.gateway_kind,
            "certificate": self.certificate,
            "version": self.version,
            "leaf": self.subject,
            "verdict": "accepted" if self.accepted else "rejected",
            "state": self.state,
            "reason": self.reason or None,
            "leafExpires": self.leaf_expires.isoformat(),
            "earliestCa": self.earliest_ca or None,
            "earliestCaExpires": self.earliest_ca_expires.isoformat() if self.earliest_ca_expires else None,
            "sanNames": list(self.san_names),
            "next": self.next_step.value,
            "advice": self.advice,
        }


def diagnose(report: Report) -> tuple[LeafDiagnosis, ...]:
    """A diagnosis per verdict of `report`, in its order (gateway, then certificate); "expiring" as
    the run's horizon (EXPIRY_WARNING_DAYS) counts it."""
    horizon = report.horizon
    now = horizon.now if horizon is not None else datetime.now(UTC)
    warning = horizon.warning if horizon is not None else timedelta(0)
    pending = {
        outcome.action.gateway
        for outcome in report.outcomes
        if outcome.status is not ActionStatus.APPLIED and outcome.action.gateway is not None
    }
    pending_uploads = any(
        outcome.status is not ActionStatus.APPLIED and outcome.action.gateway is None for outcome in report.outcomes
    )
    return tuple(_diagnose(v, report, now, warning, v.gateway in pending or pending_uploads) for v in report.verdicts)


def _diagnose(verdict: LeafVerdict, report: Report, now: datetime, warning: timedelta, pending: bool) -> LeafDiagnosis:
    needed = verdict.needed
    leaf = needed.leaf
    cas = [a.certificate for a in needed.path.authorities if a.certificate != leaf]
    earliest = min(cas, key=lambda cert: cert.not_after, default=None)
    expiring = within(leaf.not_after, now, warning) or (
        earliest is not None and within(earliest.not_after, now, warning)
    )
    return LeafDiagnosis(
        gateway=verdict.gateway,
        gateway_kind=GATEWAY_KIND,
        certificate=needed.certificate_name,
        version=needed.version,
        subject=leaf.subject,
        accepted=verdict.accepted,
        reason=verdict.verdict.reason,
        leaf_expires=leaf.not_after,
        earliest_ca=earliest.subject if earliest else "",
        earliest_ca_expires=earliest.not_after if earliest else None,
        expiring=expiring,
        san_names=san_names(leaf),
        next_step=_next(verdict, report, expiring=expiring, pending=pending),
    )


def _next(verdict: LeafVerdict, report: Report, *, expiring: bool, pending: bool) -> Next:
    if verdict.accepted:
        return Next.RENEW if expiring else Next.NONE
    reason = verdict.verdict.reason
    if " expired on " in reason or " is not valid before " in reason:
        return Next.RENEW
    if verdict.needed.path.root_missing:
        return Next.REIMPORT  # no sync helps: the app cannot trust a root it has never read
    if report.conflicts:
        return Next.RESOLVE_CONFLICT
    if pending:
        return Next.SYNC
    return Next.FIX


def san_names(leaf: Certificate) -> tuple[str, ...]:
    """The DNS names and IP addresses of the leaf's subjectAltName: what a backend's host must match."""
    try:
        names = leaf.parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    except Exception:  # an unreadable extension: the path validator says why elsewhere
        return ()
    return (
        *names.get_values_for_type(x509.DNSName),
        *(str(address) for address in names.get_values_for_type(x509.IPAddress)),
    )
