"""The classic managed gateway's CA store: its verdicts and the one write that would bring it in step. Pure.

The store (``properties.certificates[]`` of the service) differs from a gateway's certificate
authorities in every way that matters to a writer (docs/gateway-kinds.md):

- entries have no ids, only a thumbprint and a store (``Root``: an anchor; ``CertificateAuthority``:
  an intermediate), and a GET never returns their bytes, so every write sends the whole list again:
  an entry the app cannot reproduce (it holds no bytes of it) would be dropped by any write, so the
  app refuses to write while one is there and says which;
- at most 10 entries;
- a write is a service update of 15 minutes or more that blocks other updates (ARM answers 409).

So the plan is the whole list the store should hold, or why it cannot be written.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from .chain import Certificate, verdict
from .desired import Desired
from .plan import Action, ActionKind
from .ports import ApimCertificate, StoreEntry, StoreWrite
from .verdicts import LeafVerdict

ROOT: Final = "Root"
INTERMEDIATE: Final = "CertificateAuthority"
MAX_ENTRIES: Final = 10  # ARM refuses more (the service's CA store limit)
MANAGED_GATEWAY: Final = "managed"


def store_of(certificate: Certificate) -> str:
    """Self-signed CAs go to Root (the anchors), every other CA, a key-rollover link included, to
    CertificateAuthority: the gateway model's one notion of a root."""
    return ROOT if certificate.is_self_signed else INTERMEDIATE


class StoreStatus(enum.StrEnum):
    IN_STEP = "in-step"  # holds every CA the bound certificates need, and nothing the app must drop
    PLANNED = "planned"  # a write is needed and was not made (CA_STORE=off, a dry run, an additions-only run)
    STARTED = "started"  # the update was started; the service applies it over the next minutes
    BUSY = "busy"  # the service is updating: the app waits for it
    REFUSED = "refused"  # a write would drop what the app cannot put back, or break the 10-entry limit
    FAILED = "failed"


@dataclass(frozen=True)
class StorePlan:
    entries: tuple[StoreWrite, ...]  # what the store should hold after the write
    adds: tuple[str, ...]  # subjects of what the write adds (or moves to the right store)
    drops: tuple[str, ...]  # subjects of the app's own entries nothing needs any more
    refusal: str | None = None  # why the write must not be made

    @property
    def changes(self) -> bool:
        return bool(self.adds or self.drops)


@dataclass(frozen=True)
class StoreOutcome:
    status: StoreStatus
    detail: str = ""
    plan: StorePlan | None = None

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"status": self.status.value}
        if self.detail:
            found["detail"] = self.detail
        if self.plan is not None:
            found["adds"] = list(self.plan.adds)
            found["drops"] = list(self.plan.drops)
        return found


def plan_store(desired: Desired, store: Sequence[StoreEntry], *, owned: Collection[str], removals: bool) -> StorePlan:
    """The store's whole list as the bound certificates need it, or why it cannot be written.

    `owned` are the thumbprints of CAs the deployment holds under its own ids in APIM Certificates:
    an entry among them that nothing needs is the app's to drop, in a run that may take away
    (`removals`). Any other entry nothing needs is one the app cannot reproduce."""
    wanted = {
        thumbprint: (authority.certificate, store_of(authority.certificate))
        for thumbprint, authority in desired.authorities.items()
    }
    held = {(entry.thumbprint.upper(), entry.store) for entry in store}
    adds = tuple(
        sorted(cert.subject for thumbprint, (cert, where) in wanted.items() if (thumbprint, where) not in held)
    )
    pairs = {(thumbprint, where) for thumbprint, (_, where) in wanted.items()}
    unneeded = [entry for entry in store if entry.thumbprint.upper() not in wanted]
    ours = [entry for entry in unneeded if entry.thumbprint.upper() in owned]
    foreign = [entry for entry in unneeded if entry.thumbprint.upper() not in owned]
    moved = any((e.thumbprint.upper(), e.store) not in pairs for e in store if e.thumbprint.upper() in wanted)
    drops = tuple(sorted(entry.subject or entry.thumbprint for entry in ours)) if removals else ()
    entries = tuple(
        StoreWrite(cert.der, where)
        for _, (cert, where) in sorted(wanted.items(), key=lambda item: (item[1][1] != ROOT, item[1][0].subject))
    )
    plan = StorePlan(entries, adds, drops)
    if not plan.changes and not moved:
        return plan
    if foreign:
        listed = "; ".join(f"{entry.store} {entry.subject or '?'} ({entry.thumbprint})" for entry in foreign)
        return StorePlan(
            entries,
            adds,
            drops,
            refusal=(
                f"the CA store holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} the app cannot reproduce "
                f"(not its own; ARM never returns an entry's bytes, and every write replaces the whole list): {listed}. "
                "Nothing is written: add the certificate to a bound Key Vault certificate's chain, or remove the entry"
            ),
        )
    if ours and not removals:
        listed = "; ".join(entry.subject or entry.thumbprint for entry in ours)
        return StorePlan(
            entries,
            adds,
            drops,
            refusal=(
                f"the CA store holds the app's own entries nothing needs any more ({listed}) and this run may not take "
                "them away, while any write would: a full-scope run writes the store"
            ),
        )
    if len(entries) > MAX_ENTRIES:
        return StorePlan(
            entries,
            adds,
            drops,
            refusal=(
                f"the bound certificates need {len(entries)} CAs in the CA store, more than its {MAX_ENTRIES} entries: "
                "nothing is written"
            ),
        )
    return plan


def judge_store(desired: Desired, store: Sequence[StoreEntry], *, at: datetime) -> tuple[LeafVerdict, ...]:
    """Would the managed gateway accept each needed leaf? Root entries are its anchors, every other
    entry it holds only helps build a chain; an entry the app has not read in a bound secret cannot
    take part (ARM gives its thumbprint, not the certificate)."""
    trusted: list[Certificate] = []
    untrusted: list[Certificate] = []
    for entry in store:
        cert = desired.known.get(entry.thumbprint.upper())
        if cert is None:
            continue
        (trusted if entry.store == ROOT else untrusted).append(cert)
    return tuple(
        LeafVerdict(MANAGED_GATEWAY, needed, verdict(needed.leaf, trusted=trusted, untrusted=untrusted, at=at))
        for needed in desired.leaves
    )


def keep_store_copies(
    actions: Sequence[Action], certificates: Mapping[str, ApimCertificate], in_store: Collection[str]
) -> tuple[Action, ...]:
    """`actions` less the deletions of the app's copies of CAs the CA store holds (thumbprints in
    `in_store`): the copy in APIM Certificates is what marks a store entry as the app's own (the store
    has no ids), so it goes only once the store no longer holds the CA."""
    return tuple(
        action
        for action in actions
        if action.kind is not ActionKind.DELETE_CERTIFICATE
        or (held := certificates.get(action.certificate_id)) is None
        or held.thumbprint.upper() not in in_store
    )
