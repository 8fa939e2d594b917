"""Desired state: which CA certificates the gateways must know, and how far to trust each.

Pure: Key Vault versions and parsed chains in, authorities out. Nothing from ``azure.*``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.chain import Certificate, Role, TrustPath

_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class VersionInfo:
    """What Key Vault's version list says of one certificate version."""

    version: str
    enabled: bool
    created: datetime | None
    expires: datetime | None
    leaf_thumbprint: str | None  # SHA-1 hex of the leaf (Key Vault's x5t)
    not_before: datetime | None = None


def versions_to_trust(versions: Iterable[VersionInfo], now: datetime) -> tuple[VersionInfo, ...]:
    """The latest enabled version, and the previous enabled, unexpired one.

    The previous version stays trusted so that a backend which has not yet reloaded its new
    certificate keeps working through the rotation.
    """
    enabled = sorted(
        (version for version in versions if version.enabled),
        # Key Vault's timestamps have one-second resolution: a later validity start breaks a tie.
        key=lambda version: (version.created or _EPOCH, version.not_before or _EPOCH, version.version),
        reverse=True,
    )
    if not enabled:
        return ()
    latest, *older = enabled
    previous = next((version for version in older if version.expires is None or version.expires > now), None)
    return (latest,) if previous is None else (latest, previous)


@dataclass(frozen=True)
class CertificateChains:
    """The chains of the versions of one Key Vault certificate that are to be trusted."""

    name: str
    chains: tuple[tuple[VersionInfo, TrustPath], ...]


@dataclass(frozen=True)
class DesiredAuthority:
    certificate: Certificate
    trusted: bool  # the gateway CA's isTrusted
    needed_by: frozenset[str]  # Key Vault certificate names whose chains hold it


@dataclass(frozen=True)
class Desired:
    """Authorities by SHA-1 thumbprint, and whether every bound certificate could be read."""

    authorities: Mapping[str, DesiredAuthority]
    notes: tuple[str, ...] = ()
    complete: bool = True


def desired_authorities(
    certificates: Iterable[CertificateChains], *, trust_intermediates: bool, now: datetime, complete: bool = True
) -> Desired:
    """Merge the authorities of every chain: a CA is trusted if any chain needs it trusted."""
    found: dict[str, DesiredAuthority] = {}
    notes: list[str] = []
    for item in certificates:
        for version, chain in item.chains:
            notes.extend(f"{item.name} ({version.version}): {note}" for note in chain.notes)
            for authority in chain.authorities:
                cert = authority.certificate
                if cert.is_expired(now):
                    notes.append(
                        f"{item.name} ({version.version}): {authority.role.value} {cert.subject} expired on "
                        f"{cert.not_after:%Y-%m-%d}; it is not trusted"
                    )
                    continue
                trusted = authority.role is Role.ROOT or trust_intermediates
                known = found.get(cert.sha1_thumbprint)
                if known is not None:
                    trusted = trusted or known.trusted
                    needed_by = known.needed_by | {item.name}
                else:
                    needed_by = frozenset({item.name})
                found[cert.sha1_thumbprint] = DesiredAuthority(cert, trusted, needed_by)
    return Desired(authorities=found, notes=tuple(dict.fromkeys(notes)), complete=complete)


def merge(parts: Sequence[Desired]) -> Desired:
    """One APIM service's desired state out of the bindings that target it."""
    found: dict[str, DesiredAuthority] = {}
    for part in parts:
        for thumbprint, authority in part.authorities.items():
            known = found.get(thumbprint)
            if known is None:
                found[thumbprint] = authority
            else:
                found[thumbprint] = DesiredAuthority(
                    authority.certificate, known.trusted or authority.trusted, known.needed_by | authority.needed_by
                )
    return Desired(
        authorities=found,
        notes=tuple(note for part in parts for note in part.notes),
        complete=all(part.complete for part in parts),
    )
