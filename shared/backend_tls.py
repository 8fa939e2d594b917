"""The v2 tiers' backend TLS pins: which backends serve a bound certificate, the pins its versions
need, and whether the pins as found accept each needed leaf. Pure.

A v2 gateway ignores the service's CA store; a backend's own TLS settings say what it accepts
(api-version 2025-03-01-preview, ``properties.properties.tls``): a presented chain whose leaf
thumbprint is pinned (``serverCertificateThumbprints``), or whose leaf name and issuer thumbprint
match an entry of ``serverX509Names``. The app writes ``serverX509Names``: one entry per needed
version's (leaf name, issuing CA), so during the rotation grace both the old and the new issuer
stay listed, and a renewal under the same issuer changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from .desired import Desired, NeededLeaf
from .ports import ApimBackend, BackendTls


@dataclass(frozen=True)
class BackendPlan:
    backend: ApimBackend
    certificate: str  # the bound Key Vault certificate it serves
    tls: BackendTls  # the pins it should have
    verdicts: tuple[tuple[NeededLeaf, str | None], ...]  # each needed leaf, and why it is rejected as found

    @property
    def changes(self) -> bool:
        return set(self.tls.x509_names) != set(self.backend.tls.x509_names)


@dataclass(frozen=True)
class BackendOutcome:
    backend: str
    certificate: str
    status: str  # in-step | planned | applied | failed
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "certificate": self.certificate,
            "status": self.status,
            **({"detail": self.detail} if self.detail else {}),
        }


def leaf_name(needed: NeededLeaf) -> str:
    """The name a backend pins: the leaf's common name, else its first DNS name."""
    return needed.leaf.common_name or next(iter(_dns_names(needed.leaf.parsed)), needed.leaf.subject)


def issuer_thumbprint(needed: NeededLeaf) -> str | None:
    """The SHA-1 thumbprint of the CA that issued the leaf (None: a self-signed leaf)."""
    authorities = needed.path.authorities
    if not authorities or authorities[0].certificate.sha1_thumbprint == needed.leaf.sha1_thumbprint:
        return None
    return authorities[0].certificate.sha1_thumbprint


def plan_backends(
    desired: Desired, backends: Sequence[ApimBackend], mapping: Mapping[str, str]
) -> tuple[BackendPlan, ...]:
    """The backends that serve a bound certificate (named in `mapping`, or whose URL host is one of
    its leaves' DNS names), with the pins every needed version of it needs."""
    leaves: dict[str, list[NeededLeaf]] = {}
    for needed in desired.leaves:
        leaves.setdefault(needed.certificate_name, []).append(needed)
    plans = []
    for backend in sorted(backends, key=lambda b: b.id.lower()):
        certificate = mapping.get(backend.id) or _by_host(backend.url, leaves)
        if certificate is None or certificate not in leaves:
            continue
        versions = leaves[certificate]
        names = tuple(
            sorted({(leaf_name(n), issuer_thumbprint(n)) for n in versions}, key=lambda p: (p[0], p[1] or ""))
        )
        plans.append(
            BackendPlan(
                backend,
                certificate,
                BackendTls(names, backend.tls.thumbprints),
                tuple((n, rejection(n, backend.tls)) for n in versions),
            )
        )
    return tuple(plans)


def rejection(needed: NeededLeaf, tls: BackendTls) -> str | None:
    """Why a backend whose pins are `tls` would refuse `needed` (None: it accepts it)."""
    if needed.leaf.sha1_thumbprint in {t.upper() for t in tls.thumbprints}:
        return None
    wanted = (leaf_name(needed).lower(), (issuer_thumbprint(needed) or "").upper())
    if wanted in {(name.lower(), (issuer or "").upper()) for name, issuer in tls.x509_names}:
        return None
    return (
        f"neither the leaf's thumbprint nor its name {leaf_name(needed)} with issuer thumbprint "
        f"{issuer_thumbprint(needed) or '(none)'} is pinned"
    )


def _by_host(url: str, leaves: Mapping[str, Sequence[NeededLeaf]]) -> str | None:
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return None
    for certificate, needed in sorted(leaves.items()):
        if any(_matches(host, name) for n in needed for name in _dns_names(n.leaf.parsed)):
            return certificate
    return None


def _matches(host: str, name: str) -> bool:
    name = name.lower()
    if name.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == name[2:]
    return host == name


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(extension.value.get_values_for_type(x509.DNSName))
