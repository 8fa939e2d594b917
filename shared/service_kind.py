"""What kind of API Management service the app is pointed at, and where it can set trust there. Pure.

APIM's gateways differ in where a backend's private CA can be trusted (docs/gateway-kinds.md):

- self-hosted gateways (Developer, Premium): their certificate authorities (the app's main path);
- the classic managed gateway (Developer, Basic, Standard, Premium, Isolated): the service's CA store,
  ``properties.certificates[]`` (``Root`` entries are the anchors), written only with ``CA_STORE=manage``;
- the v2 tiers (BasicV2, StandardV2, PremiumV2): they ignore the CA store; a backend's own TLS
  settings are the only place (not managed by the app yet: reported);
- Consumption, and workspace gateways: no CA certificates can be set at all. A service's workspaces
  (on the tiers that offer them) are reported with the workspace gateways their links name, never judged:
  the service's own targets decide the run, and where none can take trust the run fails naming them too.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .ports import ApimWorkspace, ServiceFacts


class ServiceKind(enum.StrEnum):
    CLASSIC = "classic"  # the managed gateway reads the service's CA store
    V2 = "v2"  # backends carry their own TLS trust; the CA store is ignored
    CONSUMPTION = "consumption"  # no CA certificates at all
    UNKNOWN = "unknown"  # a tier this version of the app does not know


_CLASSIC: Final = frozenset({"developer", "basic", "standard", "premium", "isolated"})
_V2: Final = frozenset({"basicv2", "standardv2", "premiumv2"})
SELF_HOSTED_TIERS: Final = frozenset({"developer", "premium"})
# The tiers that offer workspaces (learn.microsoft.com, "Create and manage a workspace": Basic v2,
# Standard v2, Premium, Premium v2). Only there does a run list them, so a service of another tier
# costs no extra request.
WORKSPACE_TIERS: Final = frozenset({"premium", "basicv2", "standardv2", "premiumv2"})

WORKSPACE_REASON: Final = (
    "workspace gateways take no CA certificates (no certificate authorities, no CA store): "
    "a backend with a private CA cannot be trusted there"
)


def offers_workspaces(sku: str) -> bool:
    return sku.strip().lower() in WORKSPACE_TIERS


def workspace_target(workspace: ApimWorkspace) -> Target:
    """A workspace, reported with the gateways serving it and why no trust can be set there."""
    served = f"gateways {', '.join(workspace.gateways)}" if workspace.gateways else "no workspace gateway linked"
    return Target(TargetKind.NONE, f"workspace {workspace.id}", f"{WORKSPACE_REASON} ({served})", False)


def kind_of(sku: str) -> ServiceKind:
    """The kind from ARM's ``sku.name`` (case-insensitive, as ARM compares it)."""
    name = sku.strip().lower()
    if name in _CLASSIC:
        return ServiceKind.CLASSIC
    if name in _V2:
        return ServiceKind.V2
    if name == "consumption":
        return ServiceKind.CONSUMPTION
    return ServiceKind.UNKNOWN


class TargetKind(enum.StrEnum):
    SELF_HOSTED = "self-hosted gateway"
    CA_STORE = "managed gateway CA store"
    BACKENDS = "v2 backends"
    NONE = "no trust can be set"


@dataclass(frozen=True)
class Target:
    """One place in the service where a backend's CA could be trusted, and what the app does there."""

    kind: TargetKind
    name: str
    manages: str  # what the app does there, in the operator's words
    judged: bool  # whether its verdicts decide the run's status

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "manages": self.manages, "judged": self.judged}


def no_trust_reason(facts: ServiceFacts, *, self_hosted: Sequence[str], backend_tls: bool = False) -> str | None:
    """Why no CA certificate can be trusted anywhere in this service (None: somewhere it can)."""
    kind = kind_of(facts.sku)
    if kind is ServiceKind.CONSUMPTION:
        return (
            "the Consumption tier takes no CA certificates (no CA store, no self-hosted gateways): a backend "
            "with a private CA cannot be trusted there; move the backend to a public CA or the service to another tier"
        )
    if kind is ServiceKind.V2 and not self_hosted and not backend_tls:
        return (
            f"the {facts.sku} tier ignores the service's CA store and has no self-hosted gateways: trust is set in "
            "each backend's TLS settings, which the app manages only with BACKEND_TLS=manage"
        )
    if kind is ServiceKind.UNKNOWN and not self_hosted:
        return f"tier {facts.sku} is not one the app knows; nothing is trusted"
    return None


def targets(
    facts: ServiceFacts,
    *,
    self_hosted: Sequence[str],
    ca_store: bool,
    backend_tls: bool = False,
    workspaces: Sequence[ApimWorkspace] = (),
) -> tuple[Target, ...]:
    """Every place the app reports on, in the order the status shows them."""
    found = [Target(TargetKind.SELF_HOSTED, name, "gateway certificate authorities", True) for name in self_hosted]
    kind = kind_of(facts.sku)
    if kind is ServiceKind.CLASSIC:
        manages = "the service's CA store (CA_STORE=manage)" if ca_store else "verdicts only (CA_STORE=off)"
        # Judged when it is written, or when it is the only gateway the app can speak for.
        found.append(Target(TargetKind.CA_STORE, "managed", manages, ca_store or not self_hosted))
    elif kind is ServiceKind.V2:
        if backend_tls:
            found.append(Target(TargetKind.BACKENDS, facts.sku, "backend TLS pins (BACKEND_TLS=manage)", True))
        else:
            found.append(Target(TargetKind.BACKENDS, facts.sku, "not managed (BACKEND_TLS=off)", False))
    reason = no_trust_reason(facts, self_hosted=self_hosted, backend_tls=backend_tls)
    if reason is not None:
        found.append(Target(TargetKind.NONE, facts.sku, reason, True))
    # Reported, not judged: the service's own targets decide the run; when none can take trust the
    # run already fails with the tier's reason, which then names these workspaces too.
    found.extend(workspace_target(workspace) for workspace in workspaces)
    return tuple(found)
