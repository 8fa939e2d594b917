"""Desired state: which versions backends may still present, which CA certificates the gateways
must hold for them, and how far to trust each.

Pure: Key Vault versions and validated chains in, authorities out. Nothing from ``azure.*``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .chain import Certificate, TrustPath
from .ports import VersionInfo

_EPOCH = datetime.min.replace(tzinfo=UTC)


def versions_to_trust(versions: Iterable[VersionInfo], now: datetime, grace: timedelta) -> tuple[VersionInfo, ...]:
    """The versions a backend may still present, newest first; none when every version is disabled
    or expired (the certificate is retired: nothing of it is needed).

    - the latest enabled version;
    - the previous enabled, unexpired one (a backend that has not reloaded yet keeps working);
    - every enabled, unexpired version that was the latest enabled one less than `grace` ago
      (backends that reload on a schedule, such as App Service's Key Vault references within 24 h,
      may still serve it after a quick second rotation). A version stopped being the latest when
      the first newer one became enabled, which a version created disabled does only later.
    """
    enabled = sorted(
        (version for version in versions if version.enabled),
        # Key Vault's timestamps have one-second resolution: a later validity start breaks a tie.
        key=lambda version: (version.created or _EPOCH, version.not_before or _EPOCH, version.version),
        reverse=True,
    )

    def unexpired(version: VersionInfo) -> bool:
        return version.expires is None or version.expires > now

    if not any(unexpired(version) for version in enabled):
        # An expired leaf is refused by every gateway whatever they trust: keeping its chain for it
        # would fail every run and keep the chain forever.
        return ()
    latest, *older = enabled
    previous = next((version for version in older if unexpired(version)), None)
    chosen = [latest]
    superseded: datetime | None = became_latest(latest)  # when the versions after it had a newer one
    for version in older:
        lately = superseded is not None and superseded > now - grace
        if unexpired(version) and (version is previous or lately):
            chosen.append(version)
        if (became := became_latest(version)) is not None:
            superseded = became if superseded is None else min(superseded, became)
    return tuple(chosen)


def became_latest(version: VersionInfo) -> datetime | None:
    """When `version` became the latest enabled one, as late as Key Vault's attributes allow: created,
    or updated when later (Key Vault keeps no "enabled at"; `updated` is at least as late as the
    enabling, and any later attribute change only keeps the older versions longer)."""
    if version.created is None:
        return version.updated
    if version.updated is None:
        return version.created
    return max(version.created, version.updated)


@dataclass(frozen=True)
class VersionPath:
    """A version to trust, the path its secret's chain validated to, and every certificate in the secret."""

    version: VersionInfo
    path: TrustPath
    secret_certificates: tuple[Certificate, ...] = ()


@dataclass(frozen=True)
class NeededLeaf:
    """A leaf a backend may present (every selected gateway must accept it), with its validated path."""

    certificate_name: str
    version: str
    path: TrustPath

    @property
    def leaf(self) -> Certificate:
        return self.path.leaf


@dataclass(frozen=True)
class DesiredAuthority:
    certificate: Certificate
    trusted: bool  # the gateway CA's isTrusted
    needed_by: frozenset[str]  # Key Vault certificate names whose paths hold it; "trust bundle <name>"


@dataclass(frozen=True)
class Desired:
    """Authorities by SHA-1 thumbprint, the leaves they serve, and whether every bound certificate was read."""

    authorities: Mapping[str, DesiredAuthority]
    leaves: tuple[NeededLeaf, ...] = ()
    notes: tuple[str, ...] = ()
    complete: bool = True
    # Every certificate read in a needed version's secret, by thumbprint: APIM lists certificates by
    # thumbprint only, so these are the ones the app can recognise on a gateway.
    known: Mapping[str, Certificate] = field(default_factory=dict)


def desired_state(
    paths: Mapping[str, Iterable[VersionPath]],
    *,
    trust_intermediates: bool,
    complete: bool = True,
    bundles: Mapping[str, Iterable[Certificate]] | None = None,
) -> Desired:
    """Merge the authorities of every certificate's paths: a CA is trusted if any path needs it trusted.

    A self-signed root is always trusted: a gateway accepts a chain only when it ends at a root whose
    entry there is trusted. Any other CA, the topmost one of a secret without its root included,
    only helps build chains, and is trusted only as TRUST_INTERMEDIATES says.
    `bundles` (TRUST_BUNDLES: name → its valid CAs) adds CAs whether or not a path uses them: a
    self-signed root trusted, any other CA as TRUST_INTERMEDIATES says.
    """
    found: dict[str, DesiredAuthority] = {}
    leaves: list[NeededLeaf] = []
    notes: list[str] = []
    known: dict[str, Certificate] = {}
    for name, versions in sorted(paths.items()):
        for item in versions:
            path, version = item.path, item.version.version
            for cert in (*item.secret_certificates, path.leaf, *(a.certificate for a in path.authorities)):
                known[cert.sha1_thumbprint] = cert
            leaves.append(NeededLeaf(name, version, path))
            notes.extend(f"{name} ({version}): {note}" for note in path.notes)
            for position, authority in enumerate(path.authorities):
                cert = authority.certificate
                is_root = position == len(path.authorities) - 1 and not path.root_missing
                trusted = is_root or trust_intermediates
                earlier = found.get(cert.sha1_thumbprint)
                if earlier is not None:
                    trusted = trusted or earlier.trusted
                    needed_by = earlier.needed_by | {name}
                else:
                    needed_by = frozenset({name})
                found[cert.sha1_thumbprint] = DesiredAuthority(cert, trusted, needed_by)
    for bundle, certificates in sorted((bundles or {}).items()):
        for cert in certificates:
            known[cert.sha1_thumbprint] = cert
            trusted = cert.is_self_signed or trust_intermediates
            label = f"trust bundle {bundle}"
            earlier = found.get(cert.sha1_thumbprint)
            if earlier is not None:
                trusted, needed_by = trusted or earlier.trusted, earlier.needed_by | {label}
            else:
                needed_by = frozenset({label})
            found[cert.sha1_thumbprint] = DesiredAuthority(cert, trusted, needed_by)
    return Desired(
        authorities=found, leaves=tuple(leaves), notes=tuple(dict.fromkeys(notes)), complete=complete, known=known
    )
