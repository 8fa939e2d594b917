"""The plan: the fewest writes that make APIM hold and trust what the desired state needs. Pure sets.

Rules that keep trust safe:
- **Provable ownership.** An APIM certificate is ours only if its id has our exact pattern and
  APIM holds, under it, the certificate whose SHA-1 thumbprint the id encodes; a gateway entry is
  ours only if it points at such a certificate. Everything else is foreign: never changed,
  untrusted, removed or deleted.
- **No trust by reference.** Gateway entries we write point only at certificates we uploaded. A
  foreign certificate holding a needed CA is left alone and we upload our own copy, so that its
  owner can retire or replace it without touching our trust.
- **Additions never narrow.** `plan_additions` creates entries and raises `isTrusted`; lowering
  it, removing and deleting are `plan_narrowing`'s, for full-scope runs on a complete desired state.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.chain import Certificate
from shared.desired import Desired, DesiredAuthority
from shared.ports import ApimCertificate, GatewayCas

OWNED_PREFIX = "trustsync-"
MAX_ID_LENGTH = 80  # APIM's limit for a certificate id
_THUMBPRINT_LENGTH = 40
_SLUG_LENGTH = MAX_ID_LENGTH - len(OWNED_PREFIX) - 1 - _THUMBPRINT_LENGTH
_OWNED_ID = re.compile(rf"^{OWNED_PREFIX}[a-z0-9]+(?:-[a-z0-9]+)*-(?P<thumbprint>[0-9a-f]{{{_THUMBPRINT_LENGTH}}})$")


def certificate_id_for(certificate: Certificate) -> str:
    """Our id for a CA certificate: prefix, a slug of its name, its whole SHA-1 thumbprint.

    The thumbprint is what APIM reports of the certificate it holds, so APIM's own list proves
    whether an id is ours.
    """
    words = re.findall(r"[a-z0-9]+", certificate.common_name.lower())
    slug = "-".join(words)[:_SLUG_LENGTH].strip("-") or "ca"
    return f"{OWNED_PREFIX}{slug}-{certificate.sha1_thumbprint.lower()}"


def encoded_thumbprint(certificate_id: str) -> str | None:
    """The SHA-1 thumbprint (upper-case hex) an id of our exact pattern encodes; None for any other id."""
    match = _OWNED_ID.match(certificate_id.lower())
    return match["thumbprint"].upper() if match else None


def is_ours(certificate: ApimCertificate) -> bool:
    return encoded_thumbprint(certificate.id) == certificate.thumbprint.upper()


class ActionKind(enum.StrEnum):
    UPLOAD_CERTIFICATE = "upload-certificate"
    SET_GATEWAY_CA = "set-gateway-ca"
    REMOVE_GATEWAY_CA = "remove-gateway-ca"
    DELETE_CERTIFICATE = "delete-certificate"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    certificate_id: str
    gateway: str | None = None
    trusted: bool | None = None  # SET_GATEWAY_CA: the isTrusted to write
    replace: bool = False  # SET_GATEWAY_CA: the entry exists, the write carries its ETag
    reason: str = ""
    certificate: Certificate | None = field(default=None, compare=False, repr=False)  # UPLOAD_CERTIFICATE

    @property
    def narrows(self) -> bool:
        """Takes trust away: a removal, a deletion, or an existing entry's isTrusted lowered."""
        removes = self.kind in (ActionKind.REMOVE_GATEWAY_CA, ActionKind.DELETE_CERTIFICATE)
        return removes or (self.replace and self.trusted is False)

    def describe(self) -> str:
        target = f"{self.certificate_id} on {self.gateway}" if self.gateway else self.certificate_id
        trust = f" isTrusted={str(self.trusted).lower()}" if self.trusted is not None else ""
        return f"{self.kind.value} {target}{trust}: {self.reason}"


@dataclass(frozen=True)
class Observed:
    """APIM as read: certificates by id, and the certificate authorities of the gateways read.

    `gateway_cas` may hold gateways outside the selection: they are never changed, but what they
    reference is never deleted. `complete` is False when a self-hosted gateway could not be read.
    """

    certificates: Mapping[str, ApimCertificate]
    gateway_cas: Mapping[str, GatewayCas]
    complete: bool = True

    def after(self, applied: Sequence[Action]) -> Observed:
        """APIM once `applied` (our own writes) have been made."""
        certificates = dict(self.certificates)
        cas = {gateway: dict(entries) for gateway, entries in self.gateway_cas.items()}
        for action in applied:
            if action.kind is ActionKind.UPLOAD_CERTIFICATE and action.certificate is not None:
                cert = action.certificate
                certificates[action.certificate_id] = ApimCertificate(
                    action.certificate_id, cert.sha1_thumbprint, cert.subject, cert.not_after
                )
            elif action.kind is ActionKind.SET_GATEWAY_CA and action.gateway is not None:
                cas.setdefault(action.gateway, {})[action.certificate_id] = bool(action.trusted)
            elif action.kind is ActionKind.REMOVE_GATEWAY_CA and action.gateway is not None:
                cas.get(action.gateway, {}).pop(action.certificate_id, None)
            elif action.kind is ActionKind.DELETE_CERTIFICATE:
                certificates.pop(action.certificate_id, None)
        return Observed(certificates, cas, self.complete)


@dataclass(frozen=True)
class Uploads:
    """The id each desired authority is held under in APIM, and the uploads that make them exist.

    Needs the desired state and APIM's certificate list, but no gateway's CA list, so a run can
    start these uploads while the CA lists are still being read.
    """

    ids: Mapping[str, str]  # thumbprint → our certificate id (held, or being uploaded)
    actions: tuple[Action, ...]
    conflicts: tuple[str, ...]


def plan_uploads(desired: Desired, certificates: Mapping[str, ApimCertificate]) -> Uploads:
    by_id = {certificate_id.lower(): cert for certificate_id, cert in certificates.items()}
    ids: dict[str, str] = {}
    actions: list[Action] = []
    conflicts: list[str] = []
    for thumbprint, authority in sorted(desired.authorities.items()):
        cert = authority.certificate
        certificate_id = certificate_id_for(cert)
        held = by_id.get(certificate_id)
        if held is None:
            actions.append(
                Action(
                    ActionKind.UPLOAD_CERTIFICATE,
                    certificate_id,
                    reason=f"{cert.subject} needed by {', '.join(sorted(authority.needed_by))}",
                    certificate=cert,
                )
            )
        elif not is_ours(held):
            conflicts.append(
                f"certificate {held.id} holds {held.thumbprint}, not {cert.subject} [{thumbprint}]: it was not "
                f"uploaded by this app and is left alone, so {cert.subject} cannot be trusted until it is removed"
            )
            continue
        ids[thumbprint] = certificate_id
    return Uploads(ids=ids, actions=tuple(actions), conflicts=tuple(conflicts))


@dataclass(frozen=True)
class GatewayPlan:
    actions: tuple[Action, ...]
    conflicts: tuple[str, ...]


def plan_additions(
    gateway: str, desired: Desired, cas: GatewayCas, uploads: Uploads, certificates: Mapping[str, ApimCertificate]
) -> GatewayPlan:
    """What one gateway needs added: our entry for each desired authority, trusted as desired or more."""
    entries = {certificate_id.lower(): trusted for certificate_id, trusted in cas.items()}
    actions: list[Action] = []
    for thumbprint, authority in sorted(desired.authorities.items()):
        certificate_id = uploads.ids.get(thumbprint)
        if certificate_id is None:
            continue  # its id is taken by a foreign certificate: reported by plan_uploads
        subject = authority.certificate.subject
        trusted = entries.get(certificate_id)
        if trusted is None:
            reason = f"{subject} is not a certificate authority of {gateway}"
            actions.append(Action(ActionKind.SET_GATEWAY_CA, certificate_id, gateway, authority.trusted, reason=reason))
        elif authority.trusted and not trusted:
            reason = f"{subject} has isTrusted=false on {gateway}"
            actions.append(
                Action(ActionKind.SET_GATEWAY_CA, certificate_id, gateway, True, replace=True, reason=reason)
            )
    return GatewayPlan(tuple(actions), _foreign_conflicts(gateway, desired, cas, certificates))


def _foreign_conflicts(
    gateway: str, desired: Desired, cas: GatewayCas, certificates: Mapping[str, ApimCertificate]
) -> tuple[str, ...]:
    """Foreign entries on this gateway that hold a desired authority but do not trust it while we do.

    The gateway then has both entries, ours trusted and theirs not; APIM does not say which one
    wins, so it is reported until the entry's owner removes it or trusts it, whichever existed first.
    """
    by_id = {certificate_id.lower(): cert for certificate_id, cert in certificates.items()}
    found = []
    for certificate_id, trusted in sorted(cas.items()):
        held = by_id.get(certificate_id.lower())
        if held is None or trusted or is_ours(held):
            continue
        authority = desired.authorities.get(held.thumbprint.upper())
        if authority is not None and authority.trusted:
            found.append(
                f"{gateway}: {certificate_id} ({authority.certificate.subject}) has isTrusted=false and is not "
                f"ours to change; the app's own entry trusts it"
            )
    return tuple(found)


@dataclass(frozen=True)
class Narrowing:
    actions: tuple[Action, ...]
    notes: tuple[str, ...]  # what is not needed but stays, and why


def plan_narrowing(desired: Desired, observed: Observed, selected: Sequence[str]) -> Narrowing:
    """What a full-scope run takes away once every addition is in: our entries no bound certificate
    needs (or needs less trusted) on the selected gateways, then our certificates no entry uses.

    Only for a complete desired state and a complete observed state: an unread certificate or
    gateway could still need or use what looks unused.
    """
    ours = {cid.lower(): cert for cid, cert in observed.certificates.items() if is_ours(cert)}
    wanted: dict[str, DesiredAuthority] = {
        certificate_id_for(authority.certificate): authority for authority in desired.authorities.values()
    }
    actions: list[Action] = []
    still_used: dict[str, list[str]] = {}
    for gateway, cas in sorted(observed.gateway_cas.items()):
        for certificate_id, trusted in sorted(cas.items()):
            key = certificate_id.lower()
            authority = wanted.get(key)
            if gateway not in selected or key not in ours:
                still_used.setdefault(key, []).append(gateway)  # not ours to change here
            elif authority is None:
                actions.append(
                    Action(
                        ActionKind.REMOVE_GATEWAY_CA,
                        certificate_id,
                        gateway,
                        reason="no bound Key Vault certificate needs it any more",
                    )
                )
            else:
                still_used.setdefault(key, []).append(gateway)
                if trusted and not authority.trusted:
                    reason = f"{authority.certificate.subject} is needed for chain building only on {gateway}"
                    actions.append(
                        Action(ActionKind.SET_GATEWAY_CA, certificate_id, gateway, False, replace=True, reason=reason)
                    )
    notes: list[str] = []
    for key, cert in sorted(ours.items()):
        if key in wanted:
            continue
        if key in still_used:
            users = ", ".join(still_used[key])
            notes.append(f"{cert.id} is not needed but stays: gateway(s) {users} outside the selection use it")
        else:
            what = cert.subject or cert.thumbprint
            actions.append(Action(ActionKind.DELETE_CERTIFICATE, cert.id, reason=f"{what} is no longer needed"))
    return Narrowing(tuple(actions), tuple(notes))
