"""Would each gateway accept each backend? A verdict per selected gateway and per needed leaf. Pure.

A gateway's TLS client sees the leaf a backend presents, and its certificate authorities: those
with ``isTrusted: true`` are anchors, the others only help build a chain. The verdict asks
exactly that question of the same RFC 5280 validator that chose the paths (`shared.chain`). APIM
lists certificates by thumbprint, never their content: a gateway entry whose certificate the app
has not read in a bound secret cannot take part, and a rejection says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .chain import Certificate, Verdict, verdict
from .desired import Desired, NeededLeaf
from .plan import Action, ActionKind, Observed
from .ports import ApimCertificate


@dataclass(frozen=True)
class LeafVerdict:
    gateway: str
    needed: NeededLeaf
    verdict: Verdict

    @property
    def accepted(self) -> bool:
        return self.verdict.accepted

    def to_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "certificate": self.needed.certificate_name,
            "version": self.needed.version,
            "leaf": self.needed.leaf.subject,
            "verdict": "accepted" if self.accepted else "rejected",
            **({} if self.accepted else {"reason": self.verdict.reason}),
        }


def judge(desired: Desired, observed: Observed, gateways: Sequence[str], *, at: datetime) -> tuple[LeafVerdict, ...]:
    """The verdict of every needed leaf on every gateway, as APIM is `observed`."""
    known = desired.known
    found: list[LeafVerdict] = []
    by_trust: dict[tuple[frozenset[str], frozenset[str], tuple[str, ...]], list[Verdict]] = {}
    for gateway in sorted(gateways):
        trusted, untrusted, unknown = _gateway_trust(observed, gateway, known)
        key = (
            frozenset(c.sha1_thumbprint for c in trusted),
            frozenset(c.sha1_thumbprint for c in untrusted),
            tuple(sorted(held.id for held in unknown)),
        )
        if key not in by_trust:  # gateways that hold the same CAs give the same verdicts: judge once
            by_trust[key] = [_judge(needed, trusted, untrusted, unknown, at) for needed in desired.leaves]
        found.extend(LeafVerdict(gateway, needed, v) for needed, v in zip(desired.leaves, by_trust[key], strict=True))
    return tuple(found)


def unread_roots(desired: Desired, observed: Observed, *, at: datetime) -> dict[str, tuple[NeededLeaf, ...]]:
    """APIM certificates that may be the root a needed leaf's secret lacks, by id.

    APIM lists a certificate's subject and thumbprint, never its bytes: a certificate the app has
    not read in any bound secret this run (say, the root of a certificate retired since) cannot be
    checked as an issuer. When its subject names the issuer at which a needed leaf's secret stops,
    the app cannot tell whether that leaf depends on it, so it keeps it.
    """
    wanted: dict[tuple[str, ...], list[NeededLeaf]] = {}
    for needed in desired.leaves:
        if needed.path.root_missing:
            wanted.setdefault(_name_words(needed.path.anchor.parsed.issuer.rfc4514_string()), []).append(needed)
    if not wanted:
        return {}
    found: dict[str, tuple[NeededLeaf, ...]] = {}
    for certificate_id, held in observed.certificates.items():
        if held.thumbprint.upper() in desired.known or (held.expires is not None and held.expires < at):
            continue
        leaves = wanted.get(_name_words(held.subject))
        if leaves:
            found[certificate_id] = tuple(leaves)
    return found


def keep_accepted(
    narrowing: Sequence[Action], desired: Desired, observed: Observed, gateways: Sequence[str], *, at: datetime
) -> tuple[tuple[Action, ...], tuple[str, ...]]:
    """The narrowing actions that turn no accepted verdict into a rejected one, and why the others stay.

    A deletion goes with the removals of its certificate: if one of them is held back, so is it.
    """
    narrowing, kept_roots = _keep_unread_roots(narrowing, unread_roots(desired, observed, at=at))
    if not any(action.kind is not ActionKind.DELETE_CERTIFICATE for action in narrowing):
        return tuple(narrowing), kept_roots  # a deletion of what no gateway uses changes no verdict
    before = {(v.gateway, v.needed.leaf.sha1_thumbprint): v.accepted for v in judge(desired, observed, gateways, at=at)}

    def breaks(state: Observed) -> list[LeafVerdict]:
        return [
            v
            for v in judge(desired, state, gateways, at=at)
            if before.get((v.gateway, v.needed.leaf.sha1_thumbprint)) and not v.accepted
        ]

    if not breaks(observed.after(narrowing)):
        return tuple(narrowing), kept_roots
    kept: list[Action] = []
    notes: list[str] = []
    held_back: set[str] = set()
    for action in (a for a in narrowing if a.kind is not ActionKind.DELETE_CERTIFICATE):
        broken = breaks(observed.after([*kept, action]))
        if broken:
            held_back.add(action.certificate_id)
            first = broken[0]
            notes.append(
                f"kept {action.certificate_id} on {action.gateway}: without it {first.gateway} would reject "
                f"{first.needed.certificate_name} ({first.needed.version}): {first.verdict.reason}"
            )
        else:
            kept.append(action)
    kept.extend(a for a in narrowing if a.kind is ActionKind.DELETE_CERTIFICATE and a.certificate_id not in held_back)
    return tuple(kept), (*kept_roots, *notes)


def _keep_unread_roots(
    narrowing: Sequence[Action], roots: Mapping[str, Sequence[NeededLeaf]]
) -> tuple[list[Action], tuple[str, ...]]:
    """The narrowing without the actions that would take away a possible missing root, and why."""
    kept: list[Action] = []
    notes: list[str] = []
    for action in narrowing:
        leaves = roots.get(action.certificate_id)
        if leaves is None:
            kept.append(action)
            continue
        where = f" on {action.gateway}" if action.gateway else ""
        names = ", ".join(f"{leaf.certificate_name} ({leaf.version})" for leaf in leaves)
        notes.append(
            f"kept {action.certificate_id}{where}: it may be the root that {names} lacks (its secret stops at "
            f"{leaves[0].path.anchor.subject}); no bound secret holds it, so the app cannot check it: put the root "
            "in that certificate's secret or in a trust bundle (TRUST_BUNDLES)"
        )
    return kept, tuple(notes)


def _gateway_trust(
    observed: Observed, gateway: str, known: Mapping[str, Certificate]
) -> tuple[list[Certificate], list[Certificate], list[ApimCertificate]]:
    """A gateway's entries as certificates the app has read (trusted, untrusted), and the others."""
    trusted: list[Certificate] = []
    untrusted: list[Certificate] = []
    unknown: list[ApimCertificate] = []
    for certificate_id, is_trusted in observed.gateway_cas.get(gateway, {}).items():
        held = observed.certificates.get(certificate_id)
        cert = known.get(held.thumbprint.upper()) if held is not None else None
        if cert is not None:
            (trusted if is_trusted else untrusted).append(cert)
        else:
            unknown.append(held or ApimCertificate(certificate_id, ""))
    return trusted, untrusted, unknown


def _judge(
    needed: NeededLeaf,
    trusted: Iterable[Certificate],
    untrusted: Iterable[Certificate],
    unknown: Sequence[ApimCertificate],
    at: datetime,
) -> Verdict:
    found = verdict(needed.leaf, trusted=trusted, untrusted=untrusted, at=at)
    if found.accepted or not unknown:
        return found
    issuer = _name_words(needed.path.anchor.parsed.issuer.rfc4514_string()) if needed.path.root_missing else None
    namesakes = [held.id for held in unknown if issuer is not None and _name_words(held.subject) == issuer]
    if namesakes:
        detail = (
            f"the gateway holds {', '.join(namesakes)}, named like the root the secret lacks, but no bound secret "
            "holds it, so the app cannot check it: put the root in the certificate's secret or in a trust bundle "
            "(TRUST_BUNDLES)"
        )
    else:
        detail = f"the gateway also holds {len(unknown)} certificate(s) the app has not read in any bound secret"
    return Verdict(False, f"{found.reason} ({detail})", found.path)


def _name_words(name: str) -> tuple[str, ...]:
    """A distinguished name as its words, sorted: APIM writes names as .NET does ("CN=a, O=b"), the
    app as RFC 4514 ("CN=a,O=b"); comparing words ignores separators, quoting and RDN order, so two
    spellings of one name match (and a near-namesake may too, which only keeps more)."""
    return tuple(sorted(word for word in re.findall(r"[a-z0-9]+", name.lower()) if word != "oid"))
