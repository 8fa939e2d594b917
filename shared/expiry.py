"""The expiry horizon: what will stop working next, and when. Pure.

Key Vault's own near-expiry events concern a certificate's current version only, never the
intermediates and roots on its chain; a CA that expires breaks every backend below it at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .desired import Desired
from .plan import Observed


@dataclass(frozen=True)
class CertificateExpiry:
    """One bound certificate version: when its leaf expires, and the earliest CA on its path."""

    certificate_name: str
    version: str
    leaf_expires: datetime
    earliest_ca: str  # subject; "" for a self-signed leaf, its own anchor
    earliest_ca_expires: datetime | None


@dataclass(frozen=True)
class GatewayExpiry:
    """The earliest expiry among the CAs a gateway trusts through the app's entries."""

    gateway: str
    certificate_id: str
    expires: datetime


@dataclass(frozen=True)
class Horizon:
    certificates: tuple[CertificateExpiry, ...]
    gateways: tuple[GatewayExpiry, ...]
    warning: timedelta
    now: datetime

    @property
    def earliest(self) -> datetime | None:
        moments = [
            *(c.leaf_expires for c in self.certificates),
            *(c.earliest_ca_expires for c in self.certificates if c.earliest_ca_expires is not None),
            *(g.expires for g in self.gateways),
        ]
        return min(moments, default=None)

    def expiring(self) -> list[str]:
        """What expires within the warning window (expired included), soonest first, in words."""
        found: list[tuple[datetime, str]] = []
        for item in self.certificates:
            where = f"{item.certificate_name} ({item.version})"
            found.append((item.leaf_expires, f"{where}: leaf"))
            if item.earliest_ca_expires is not None:
                found.append((item.earliest_ca_expires, f"{where}: CA {item.earliest_ca}"))
        found.extend((g.expires, f"{g.gateway}: {g.certificate_id}") for g in self.gateways)
        return [
            f"{what} {_when(expires, self.now)}"
            for expires, what in sorted(found, key=lambda item: item[0])  # stable: certificates, then gateways
            if within(expires, self.now, self.warning)
        ]

    def to_dict(self) -> dict[str, Any]:
        earliest = self.earliest
        return {
            "warningDays": self.warning.days,
            "earliest": earliest.isoformat() if earliest else None,
            "expiring": self.expiring(),
            "certificates": [
                {
                    "certificate": c.certificate_name,
                    "version": c.version,
                    "leafExpires": c.leaf_expires.isoformat(),
                    "earliestCa": c.earliest_ca or None,
                    "earliestCaExpires": c.earliest_ca_expires.isoformat() if c.earliest_ca_expires else None,
                }
                for c in self.certificates
            ],
            "gateways": [
                {"gateway": g.gateway, "certificateId": g.certificate_id, "earliestExpires": g.expires.isoformat()}
                for g in self.gateways
            ],
        }


def within(expires: datetime, now: datetime, warning: timedelta) -> bool:
    """Inside the warning window: expired, or expiring at most `warning` from now (the boundary included)."""
    return expires <= now + warning


def expiry_horizon(
    desired: Desired, observed: Observed, selected: Sequence[str], *, now: datetime, warning: timedelta
) -> Horizon:
    certificates = []
    for leaf in desired.leaves:
        cas = [a.certificate for a in leaf.path.authorities if a.certificate != leaf.leaf]
        earliest = min(cas, key=lambda cert: cert.not_after, default=None)
        certificates.append(
            CertificateExpiry(
                leaf.certificate_name,
                leaf.version,
                leaf.leaf.not_after,
                earliest.subject if earliest else "",
                earliest.not_after if earliest else None,
            )
        )
    gateways = []
    for gateway in selected:
        trusted = [
            held
            for certificate_id, is_trusted in observed.gateway_cas.get(gateway, {}).items()
            if is_trusted
            and (held := observed.certificates.get(certificate_id)) is not None
            and observed.owner.is_ours(held)
            and held.expires is not None
        ]
        soonest = min(trusted, key=lambda held: held.expires or now, default=None)
        if soonest is not None and soonest.expires is not None:
            gateways.append(GatewayExpiry(gateway, soonest.id, soonest.expires))
    return Horizon(tuple(certificates), tuple(gateways), warning, now)


def _when(expires: datetime, now: datetime) -> str:
    days = (expires - now).days
    if expires <= now:
        return f"expired on {expires:%Y-%m-%d}"
    return f"expires on {expires:%Y-%m-%d} ({days} day{'s' if days != 1 else ''} left)"
