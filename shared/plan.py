"""The plan: the fewest writes that make APIM hold and trust what the desired state needs. Pure sets.

Rules that keep trust safe:
- **Provable ownership.** An APIM certificate is ours only if its id has our exact pattern with
  this deployment's id in it (or, for the deployment that adopts them, the legacy pattern without
  one) and APIM holds, under it, the certificate whose SHA-1 thumbprint the id encodes; a gateway
  entry is ours only if it points at such a certificate. Everything else, another deployment's
  entries included, is foreign: never changed, untrusted, removed or deleted.
- **No trust by reference.** Gateway entries we write point only at certificates we uploaded. A
  foreign certificate holding a needed CA is left alone and we upload our own copy, so that its
  owner can retire or replace it without touching our trust.
- **Additions never narrow.** `plan_additions` creates entries and raises `isTrusted`; lowering
  it, removing and deleting are `plan_narrowing`'s, for full-scope runs on a complete desired state.

Each action carries its `Precedence` (which writes go first under ARM's limits), decided here from
the plan's own inputs, so the same state always gets the same order.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .chain import Certificate
from .desired import Desired, DesiredAuthority
from .ports import ApimCertificate, GatewayCas
from .settings import LOCAL_DEPLOYMENT, MAX_DEPLOYMENT_ID_LENGTH

OWNED_PREFIX = "trustsync-"
MAX_ID_LENGTH = 80  # APIM's limit for a certificate id
_THUMBPRINT_LENGTH = 40
# Between the deployment and the name. A name is words joined by single hyphens, so an id of one
# form never parses as the other: a legacy id cannot pass for a deployment's, nor the reverse.
_SEPARATOR = "--"
_NAME = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_APP_ID = re.compile(
    rf"^{OWNED_PREFIX}(?:(?P<deployment>[a-z0-9]{{1,{MAX_DEPLOYMENT_ID_LENGTH}}}){_SEPARATOR})?"
    rf"{_NAME}-(?P<thumbprint>[0-9a-f]{{{_THUMBPRINT_LENGTH}}})$"
)
_DEPLOYMENT = re.compile(rf"^[a-z0-9]{{1,{MAX_DEPLOYMENT_ID_LENGTH}}}$")


@dataclass(frozen=True)
class AppId:
    """What an id of the app's form says: the deployment that wrote it (None: a legacy id, written
    before ids carried one) and the SHA-1 thumbprint (upper-case hex) of the certificate it names."""

    deployment: str | None
    thumbprint: str


@functools.lru_cache(maxsize=8192)  # an audit asks it of every entry of every gateway, several times
def parse_app_id(certificate_id: str) -> AppId | None:
    """The deployment and thumbprint an id (normalised, as the ports return it) of the app's form
    carries; None for any other id."""
    match = _APP_ID.match(certificate_id)
    return AppId(match["deployment"], match["thumbprint"].upper()) if match else None


def encoded_thumbprint(certificate_id: str) -> str | None:
    """The SHA-1 thumbprint (upper-case hex) an id of the app's form (any deployment's, or legacy) encodes."""
    parsed = parse_app_id(certificate_id)
    return parsed.thumbprint if parsed else None


@dataclass(frozen=True)
class Ownership:
    """Which APIM certificates one deployment may change: those under its own ids, and (when it
    `adopts_legacy`) those under the ids of versions before ids carried a deployment.

    Several deployments may share one APIM service: each writes ids that carry its own
    `deployment`, so the others' entries are foreign to it. An adopted legacy entry is only taken
    away once the deployment's own entry for the same CA is in (see `plan_narrowing`).
    """

    deployment: str
    adopts_legacy: bool = False

    def __post_init__(self) -> None:
        if not _DEPLOYMENT.match(self.deployment):
            raise ValueError(
                f"a deployment id is 1 to {MAX_DEPLOYMENT_ID_LENGTH} of a-z and 0-9, not {self.deployment!r}"
            )

    def certificate_id(self, certificate: Certificate) -> str:
        """This deployment's id for a CA: prefix, deployment, a slug of its name, its whole SHA-1 thumbprint.

        The thumbprint is what APIM reports of the certificate it holds, so APIM's own list proves
        whether an id is ours; the slug gets what the 80 characters leave. Every part is lower case,
        so the id is already in the form the ports list ids in (`ports.normalised_id`).
        """
        room = MAX_ID_LENGTH - len(OWNED_PREFIX) - len(self.deployment) - len(_SEPARATOR) - 1 - _THUMBPRINT_LENGTH
        words = re.findall(r"[a-z0-9]+", certificate.common_name.lower())
        slug = "-".join(words)[:room].strip("-") or "ca"
        return f"{OWNED_PREFIX}{self.deployment}{_SEPARATOR}{slug}-{certificate.sha1_thumbprint.lower()}"

    def is_ours(self, certificate: ApimCertificate) -> bool:
        """Our id form with this deployment (or, adopted, none) and APIM holds the thumbprint it encodes."""
        parsed = parse_app_id(certificate.id)
        if parsed is None or parsed.thumbprint != certificate.thumbprint.upper():
            return False
        return parsed.deployment == self.deployment if parsed.deployment is not None else self.adopts_legacy

    def is_legacy(self, certificate_id: str) -> bool:
        parsed = parse_app_id(certificate_id)
        return parsed is not None and parsed.deployment is None


# A deployment whose settings name none (the emulator, a laptop): it also adopts legacy ids.
LOCAL = Ownership(LOCAL_DEPLOYMENT, adopts_legacy=True)


def certificate_id_for(certificate: Certificate, owner: Ownership = LOCAL) -> str:
    """`owner`'s id for a CA (the default: a deployment whose settings leave DEPLOYMENT_ID unset, locally)."""
    return owner.certificate_id(certificate)


def is_ours(certificate: ApimCertificate, owner: Ownership) -> bool:
    return owner.is_ours(certificate)


class ActionKind(enum.StrEnum):
    UPLOAD_CERTIFICATE = "upload-certificate"
    SET_GATEWAY_CA = "set-gateway-ca"
    REMOVE_GATEWAY_CA = "remove-gateway-ca"
    DELETE_CERTIFICATE = "delete-certificate"


class Precedence(enum.IntEnum):
    """Which of a run's writes go first when ARM's limits make them wait (`shared.executor`).

    Stamped by the plan from what the plan itself knows, never from the order in which the gateways'
    lists arrive: every run plans the same precedence for the same state.
    """

    FIRST = 1  # a CA this run uploads (APIM holds no copy of it) and every put of it on a gateway
    NEXT = 2  # a CA APIM holds already, put on one more gateway or its isTrusted raised
    LAST = 3  # what takes trust away (removals, deletions, an isTrusted lowered): after every addition


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    certificate_id: str
    precedence: Precedence
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
    `owner` says which of the certificates are the running deployment's.
    """

    certificates: Mapping[str, ApimCertificate]  # by normalised id, as the ports list them
    gateway_cas: Mapping[str, GatewayCas]
    complete: bool = True
    owner: Ownership = LOCAL

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
        return Observed(certificates, cas, self.complete, self.owner)


@dataclass(frozen=True)
class Uploads:
    """The id each desired authority is held under in APIM, and the uploads that make them exist.

    Needs the desired state and APIM's certificate list, but no gateway's CA list, so a run can
    start these uploads while the CA lists are still being read.
    """

    ids: Mapping[str, str]  # thumbprint → our certificate id (held, or being uploaded)
    actions: tuple[Action, ...]
    conflicts: tuple[str, ...]
    owner: Ownership


def plan_uploads(desired: Desired, certificates: Mapping[str, ApimCertificate], owner: Ownership) -> Uploads:
    ids: dict[str, str] = {}
    actions: list[Action] = []
    conflicts: list[str] = []
    for thumbprint, authority in sorted(desired.authorities.items()):
        cert = authority.certificate
        certificate_id = owner.certificate_id(cert)
        held = certificates.get(certificate_id)
        if held is None:
            actions.append(
                Action(
                    ActionKind.UPLOAD_CERTIFICATE,
                    certificate_id,
                    Precedence.FIRST,
                    reason=f"{cert.subject} needed by {', '.join(sorted(authority.needed_by))}",
                    certificate=cert,
                )
            )
        elif not owner.is_ours(held):
            conflicts.append(
                f"certificate {held.id} holds {held.thumbprint}, not {cert.subject} [{thumbprint}]: it was not "
                f"uploaded by this app and is left alone, so {cert.subject} cannot be trusted until it is removed"
            )
            continue
        ids[thumbprint] = certificate_id
    return Uploads(ids=ids, actions=tuple(actions), conflicts=tuple(conflicts), owner=owner)


@dataclass(frozen=True)
class GatewayPlan:
    actions: tuple[Action, ...]
    conflicts: tuple[str, ...]


def plan_additions(
    gateway: str, desired: Desired, cas: GatewayCas, uploads: Uploads, certificates: Mapping[str, ApimCertificate]
) -> GatewayPlan:
    """What one gateway needs added: our entry for each desired authority, trusted as desired or more."""
    uploading = {action.certificate_id for action in uploads.actions}
    actions: list[Action] = []
    for thumbprint, authority in sorted(desired.authorities.items()):
        certificate_id = uploads.ids.get(thumbprint)
        if certificate_id is None:
            continue  # its id is taken by a foreign certificate: reported by plan_uploads
        subject = authority.certificate.subject
        trusted = cas.get(certificate_id)
        precedence = Precedence.FIRST if certificate_id in uploading else Precedence.NEXT
        if trusted is None:
            reason = f"{subject} is not a certificate authority of {gateway}"
            actions.append(
                Action(ActionKind.SET_GATEWAY_CA, certificate_id, precedence, gateway, authority.trusted, reason=reason)
            )
        elif authority.trusted and not trusted:
            reason = f"{subject} has isTrusted=false on {gateway}"
            actions.append(
                Action(
                    ActionKind.SET_GATEWAY_CA, certificate_id, precedence, gateway, True, replace=True, reason=reason
                )
            )
    return GatewayPlan(tuple(actions), _foreign_conflicts(gateway, desired, cas, certificates, uploads.owner))


def _foreign_conflicts(
    gateway: str, desired: Desired, cas: GatewayCas, certificates: Mapping[str, ApimCertificate], owner: Ownership
) -> tuple[str, ...]:
    """Foreign entries on this gateway that hold a desired authority but do not trust it while we do.

    The gateway then has both entries, ours trusted and theirs not; APIM does not say which one
    wins, so it is reported until the entry's owner removes it or trusts it, whichever existed first.
    """
    found = []
    for certificate_id, trusted in sorted(cas.items()):
        held = certificates.get(certificate_id)
        if held is None or trusted or owner.is_ours(held):
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


def _chain_building_only(certificate_id: str, gateway: str, authority: DesiredAuthority) -> Action:
    """isTrusted lowered on an entry of ours that the gateway needs for chain building, not as an anchor."""
    reason = f"{authority.certificate.subject} is needed for chain building only on {gateway}"
    return Action(
        ActionKind.SET_GATEWAY_CA, certificate_id, Precedence.LAST, gateway, False, replace=True, reason=reason
    )


def plan_narrowing(desired: Desired, observed: Observed, selected: Sequence[str]) -> Narrowing:
    """What a full-scope run takes away once every addition is in: our entries no bound certificate
    needs (or needs less trusted) on the selected gateways, then our certificates no entry uses.

    An adopted legacy entry of a CA still needed goes only from a gateway that holds this
    deployment's own entry of it, as trusted as needed: until then it stays, so moving to the
    deployment's ids never leaves a gap in trust.

    Only for a complete desired state and a complete observed state: an unread certificate or
    gateway could still need or use what looks unused.
    """
    owner = observed.owner
    ours = {cid: cert for cid, cert in observed.certificates.items() if owner.is_ours(cert)}
    wanted: dict[str, DesiredAuthority] = {
        owner.certificate_id(authority.certificate): authority for authority in desired.authorities.values()
    }
    actions: list[Action] = []
    still_used: dict[str, list[str]] = {}
    awaiting: set[str] = set()  # legacy entries kept until this deployment's own entry replaces them
    notes: list[str] = []
    for gateway, cas in sorted(observed.gateway_cas.items()):
        for certificate_id, trusted in sorted(cas.items()):
            authority = wanted.get(certificate_id)
            if gateway not in selected or certificate_id not in ours:
                still_used.setdefault(certificate_id, []).append(gateway)  # not ours to change here
            elif authority is None:
                held = ours[certificate_id]
                replaced = desired.authorities.get(held.thumbprint.upper()) if owner.is_legacy(certificate_id) else None
                if replaced is None:
                    reason = "no bound Key Vault certificate needs it any more"
                else:
                    replacement = owner.certificate_id(replaced.certificate)
                    if replacement not in cas or (replaced.trusted and not cas[replacement]):
                        awaiting.add(certificate_id)
                        notes.append(f"{certificate_id} stays on {gateway} until {replacement} replaces it there")
                        if trusted and not replaced.trusted:  # meanwhile, as trusted as needed and no more
                            actions.append(_chain_building_only(certificate_id, gateway, replaced))
                        continue
                    reason = f"an id of an earlier version, replaced by {replacement}"
                actions.append(
                    Action(ActionKind.REMOVE_GATEWAY_CA, certificate_id, Precedence.LAST, gateway, reason=reason)
                )
            else:
                still_used.setdefault(certificate_id, []).append(gateway)
                if trusted and not authority.trusted:
                    actions.append(_chain_building_only(certificate_id, gateway, authority))
    for certificate_id, cert in sorted(ours.items()):
        if certificate_id in wanted or certificate_id in awaiting:
            continue
        if certificate_id in still_used:
            users = ", ".join(still_used[certificate_id])
            notes.append(f"{cert.id} is not needed but stays: gateway(s) {users} outside the selection use it")
        else:
            what = cert.subject or cert.thumbprint
            actions.append(
                Action(ActionKind.DELETE_CERTIFICATE, cert.id, Precedence.LAST, reason=f"{what} is no longer needed")
            )
    return Narrowing(tuple(actions), tuple(notes))
