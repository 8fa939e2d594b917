"""Would each gateway accept each backend? A verdict per selected gateway and per needed leaf. Pure.

A gateway's TLS client sees the leaf a backend presents, and its certificate authorities: those
with ``isTrusted: true`` are anchors, the others only help build a chain. The verdict asks
exactly that question of the same RFC 5280 validator that chose the paths (`shared.chain`). APIM
lists certificates by thumbprint, never their content: a gateway entry whose certificate the app
has not read in a bound secret cannot take part, and a rejection says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.chain import Certificate, Verdict, verdict
from shared.desired import Desired, NeededLeaf
from shared.plan import Action, ActionKind, Observed


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
    by_trust: dict[tuple[frozenset[str], frozenset[str], int], list[Verdict]] = {}
    for gateway in sorted(gateways):
        trusted, untrusted, unknown = _gateway_trust(observed, gateway, known)
        key = (frozenset(c.sha1_thumbprint for c in trusted), frozenset(c.sha1_thumbprint for c in untrusted), unknown)
        if key not in by_trust:  # gateways that hold the same CAs give the same verdicts: judge once
            by_trust[key] = [_judge(needed, trusted, untrusted, unknown, at) for needed in desired.leaves]
        found.extend(LeafVerdict(gateway, needed, v) for needed, v in zip(desired.leaves, by_trust[key], strict=True))
    return tuple(found)


def keep_accepted(
    narrowing: Sequence[Action], desired: Desired, observed: Observed, gateways: Sequence[str], *, at: datetime
) -> tuple[tuple[Action, ...], tuple[str, ...]]:
    """The narrowing actions that turn no accepted verdict into a rejected one, and why the others stay.

    A deletion goes with the removals of its certificate: if one of them is held back, so is it.
    """
    if not any(action.kind is not ActionKind.DELETE_CERTIFICATE for action in narrowing):
        return tuple(narrowing), ()  # a deletion of what no gateway uses changes no verdict
    before = {(v.gateway, v.needed.leaf.sha1_thumbprint): v.accepted for v in judge(desired, observed, gateways, at=at)}

    def breaks(state: Observed) -> list[LeafVerdict]:
        return [
            v
            for v in judge(desired, state, gateways, at=at)
            if before.get((v.gateway, v.needed.leaf.sha1_thumbprint)) and not v.accepted
        ]

    if not breaks(observed.after(narrowing)):
        return tuple(narrowing), ()
    kept: list[Action] = []
    notes: list[str] = []
    held_back: set[str] = set()
    for action in (a for a in narrowing if a.kind is not ActionKind.DELETE_CERTIFICATE):
        broken = breaks(observed.after([*kept, action]))
        if broken:
            held_back.add(action.certificate_id.lower())
            first = broken[0]
            notes.append(
                f"kept {action.certificate_id} on {action.gateway}: without it {first.gateway} would reject "
                f"{first.needed.certificate_name} ({first.needed.version}): {first.verdict.reason}"
            )
        else:
            kept.append(action)
    kept.extend(
        a for a in narrowing if a.kind is ActionKind.DELETE_CERTIFICATE and a.certificate_id.lower() not in held_back
    )
    return tuple(kept), tuple(notes)


def _gateway_trust(
    observed: Observed, gateway: str, known: Mapping[str, Certificate]
) -> tuple[list[Certificate], list[Certificate], int]:
    trusted: list[Certificate] = []
    untrusted: list[Certificate] = []
    unknown = 0
    by_id = {certificate_id.lower(): held for certificate_id, held in observed.certificates.items()}
    for certificate_id, is_trusted in observed.gateway_cas.get(gateway, {}).items():
        held = by_id.get(certificate_id.lower())
        cert = known.get(held.thumbprint.upper()) if held is not None else None
        if cert is None:
            unknown += 1
        else:
            (trusted if is_trusted else untrusted).append(cert)
    return trusted, untrusted, unknown


def _judge(
    needed: NeededLeaf, trusted: Iterable[Certificate], untrusted: Iterable[Certificate], unknown: int, at: datetime
) -> Verdict:
    found = verdict(needed.leaf, trusted=trusted, untrusted=untrusted, at=at)
    if found.accepted or not unknown:
        return found
    return Verdict(
        False,
        f"{found.reason} (the gateway also holds {unknown} certificate(s) the app has not read in any bound secret)",
        found.path,
    )
