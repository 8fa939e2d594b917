"""Trust bundles: CA certificates no leaf's secret carries, read from plain Key Vault secrets.

A bundle (a secret named in TRUST_BUNDLES) is PEM: one or more CERTIFICATE blocks of CA
certificates and nothing else. Its CAs go onto the selected gateways whether or not a leaf uses
them yet (a root staged before the first leaf under it is served), and path building sees them
(a leaf whose secret stops below its root is accepted once a bundle holds that root).

Pure: text in, certificates and notes out. Nothing from ``azure.*``. A bundle's value is handled
as any secret value: no error message repeats any of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .backing_secret import MAX_SECRET_CHARS, certificate_block, load_certificate_blocks
from .chain import CLOCK_SKEW, Certificate, ChainError, TrustPath, trust_path
from .reasons import timestamp

_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,64})-----")
_END = "-----END {label}-----"


class BundleError(ChainError):
    """A bundle secret is not PEM CA certificates alone: it is refused whole, and nothing of it is used."""


@dataclass(frozen=True)
class Bundle:
    """One bundle as read: its name, the CAs to hold and trust, and what was left out and why."""

    name: str
    authorities: tuple[Certificate, ...]  # valid now, in file order, duplicates dropped
    notes: tuple[str, ...] = ()  # expired or not-yet-valid CAs: reported, not trusted


def parse_bundle(name: str, value: str) -> tuple[Certificate, ...]:
    """Every certificate of bundle `name`, in file order; `BundleError` for anything but PEM CA
    certificates (a private key, a certificate that is not a CA, other text, no certificate).

    The first offence refuses the whole bundle: half a bundle would silently trust less than meant.
    """
    what = f"trust bundle secret {name}"
    if len(value) > MAX_SECRET_CHARS:
        raise BundleError(f"{what} is {len(value)} characters: too large to be a bundle of CA certificates")
    blocks: list[str] = []
    position = 0
    while True:
        match = _BLOCK.search(value, position)
        stray = value[position : match.start() if match else len(value)]
        if stray.strip():
            line = value.count("\n", 0, position + len(stray) - len(stray.lstrip())) + 1
            # Never echoed: what is not a certificate may be a secret pasted by mistake.
            raise BundleError(f"{what} holds text outside PEM CERTIFICATE blocks (line {line}): it must be PEM alone")
        if match is None:
            break
        label = match[1]
        if "PRIVATE KEY" in label:
            raise BundleError(
                f"{what} holds a private key ({label} block): a bundle holds CA certificates only; "
                "remove the key from the secret (and consider it exposed)"
            )
        if label != "CERTIFICATE":
            raise BundleError(f"{what} holds a {label} block: a bundle holds CERTIFICATE blocks only")
        end = value.find(_END.format(label=label), match.end())
        if end < 0:
            raise BundleError(f"{what}: PEM certificate #{len(blocks) + 1} has no END CERTIFICATE line")
        try:
            blocks.append(certificate_block(len(blocks) + 1, value[match.end() : end]))
        except ChainError as error:
            raise BundleError(f"{what}: {error}") from None
        position = end + len(_END.format(label=label))
    if not blocks:
        raise BundleError(f"{what} holds no PEM certificate")
    try:
        certificates = load_certificate_blocks(blocks)  # the loader a certificate's PEM secret goes through
    except ChainError as error:
        raise BundleError(f"{what}: {error}") from None
    for number, cert in enumerate(certificates, start=1):
        if not cert.is_ca:
            raise BundleError(
                f"{what}: certificate #{number} ({cert.subject}) is not a CA (no basicConstraints cA=true): "
                "a bundle holds root and intermediate CAs only"
            )
    return certificates


def read_bundle(name: str, value: str, *, at: datetime) -> Bundle:
    """Bundle `name`'s CAs valid at `at` (a notBefore up to CLOCK_SKEW ahead tolerated, as for paths);
    the others are reported, not trusted."""
    notes: list[str] = []
    valid: dict[Certificate, None] = {}
    for cert in parse_bundle(name, value):
        if cert.not_after < at:
            notes.append(f"trust bundle {name}: {cert.subject} expired on {timestamp(cert.not_after)}: not trusted")
        elif cert.not_before > at + CLOCK_SKEW:
            notes.append(
                f"trust bundle {name}: {cert.subject} is not valid before {timestamp(cert.not_before)}: not trusted"
            )
        else:
            valid[cert] = None
    return Bundle(name, tuple(valid), tuple(notes))


def reached(certificates: Sequence[Certificate], pool: Iterable[Certificate]) -> list[Certificate]:
    """The certificates of `pool` that `certificates` reach by following issuer names upwards (as
    OpenSSL matches names), nearest first, without those already among `certificates`."""
    have = set(certificates)
    by_subject: dict[int, list[Certificate]] = {}
    for cert in pool:
        if cert not in have:
            by_subject.setdefault(cert.subject_key, []).append(cert)
    found: dict[Certificate, None] = {}
    frontier = list(certificates)
    while frontier:
        following: list[Certificate] = []
        for cert in frontier:
            if cert.subject_key == cert.issuer_key:
                continue  # self-issued: its issuer is itself
            for issuer in by_subject.get(cert.issuer_key, ()):
                if issuer not in found:
                    found[issuer] = None
                    following.append(issuer)
        frontier = following
    return list(found)


def path_with_bundles(
    certificates: Sequence[Certificate], *, leaf_thumbprint: str | None, at: datetime, bundles: Sequence[Certificate]
) -> TrustPath:
    """A secret's path, completed from the bundles where the secret alone stops short of a root.

    A secret that reaches its root keeps the path it has alone. One that does not (root missing,
    or no issuer at all) is validated again with the bundle CAs its names reach; that path is taken
    when it ends at a root. Otherwise the secret's own result stands, error or root-missing path.
    """
    own: TrustPath | None = None
    own_error: ChainError | None = None
    try:
        own = trust_path(certificates, leaf_thumbprint=leaf_thumbprint, at=at)
    except ChainError as error:
        own_error = error
    if own is not None and not own.root_missing:
        return own
    extra = reached(certificates, bundles)
    if extra:
        try:
            joined = trust_path([*certificates, *extra], leaf_thumbprint=leaf_thumbprint, at=at)
        except ChainError:
            joined = None
        if joined is not None and not joined.root_missing:
            return joined
    if own is not None:
        return own
    assert own_error is not None
    raise own_error


def bundle_certificates(bundles: Mapping[str, Bundle]) -> tuple[Certificate, ...]:
    """Every bundle's valid CAs, once each."""
    return tuple(dict.fromkeys(cert for bundle in bundles.values() for cert in bundle.authorities))
