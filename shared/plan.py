"""The plan: the fewest writes that make APIM match the desired state. Pure set arithmetic.

Rules that keep trust safe:
- a certificate that APIM already holds (by thumbprint, under any id) is reused, never uploaded twice;
- only entries whose id carries `OWNED_PREFIX` are ever updated, removed or deleted;
- removals happen only when the caller allows them (full-scope runs) and the desired state is
  complete: an unreadable bound certificate could still need what looks unused.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.chain import Certificate
from shared.desired import Desired, DesiredAuthority, merge

OWNED_PREFIX = "trustsync-"
MAX_ID_LENGTH = 80
_SLUG_LENGTH = 40
_FINGERPRINT_LENGTH = 16


def certificate_id_for(certificate: Certificate) -> str:
    """A deterministic, readable APIM certificate id: prefix, CN slug, SHA-256 prefix."""
    slug = "-".join(re.findall(r"[a-z0-9]+", certificate.common_name.lower()))[:_SLUG_LENGTH].strip("-") or "ca"
    return f"{OWNED_PREFIX}{slug}-{certificate.sha256_fingerprint[:_FINGERPRINT_LENGTH]}"


def is_owned(certificate_id: str) -> bool:
    return certificate_id.lower().startswith(OWNED_PREFIX)


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
    replace: bool = False  # the entity exists: the write must carry its ETag
    reason: str = ""
    certificate: Certificate | None = field(default=None, compare=False, repr=False)  # UPLOAD_CERTIFICATE

    @property
    def is_removal(self) -> bool:
        return self.kind in (ActionKind.REMOVE_GATEWAY_CA, ActionKind.DELETE_CERTIFICATE)

    def describe(self) -> str:
        target = f"{self.certificate_id} on {self.gateway}" if self.gateway else self.certificate_id
        trust = f" isTrusted={str(self.trusted).lower()}" if self.trusted is not None else ""
        return f"{self.kind.value} {target}{trust}: {self.reason}"


@dataclass(frozen=True)
class ApimCertificate:
    id: str
    thumbprint: str  # upper-case hex SHA-1
    subject: str = ""
    expires: datetime | None = None


@dataclass(frozen=True)
class Observed:
    """APIM as read: certificates by id, and each gateway's certificate authorities (id → isTrusted).

    `gateway_cas` may hold gateways outside the selection: they are never changed, but what
    they reference is never deleted.
    """

    certificates: Mapping[str, ApimCertificate]
    gateway_cas: Mapping[str, Mapping[str, bool]]


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    notes: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()  # drift the app will not fix because it does not own the entry

    @property
    def is_empty(self) -> bool:
        return not self.actions

    @property
    def has_removals(self) -> bool:
        return any(action.is_removal for action in self.actions)


def make_plan(desired_by_gateway: Mapping[str, Desired], observed: Observed, *, allow_removals: bool) -> Plan:
    """Compare the desired authorities of each selected gateway with what APIM holds."""
    certificates = plan_certificates(desired_by_gateway.values(), observed.certificates)
    actions = list(certificates.uploads)
    notes = list(certificates.notes)
    conflicts: list[str] = []
    for gateway, desired in sorted(desired_by_gateway.items()):
        changes = plan_gateway(gateway, desired, observed.gateway_cas.get(gateway, {}), certificates)
        actions.extend(changes.actions)
        conflicts.extend(changes.conflicts)

    removable = allow_removals and all(desired.complete for desired in desired_by_gateway.values())
    if allow_removals and not removable:
        notes.append("nothing removed: not every bound certificate could be read")
    if removable:
        actions.extend(_removals(desired_by_gateway, observed, certificates.resolved, notes))
    return Plan(actions=tuple(actions), notes=tuple(notes), conflicts=tuple(conflicts))


@dataclass(frozen=True)
class CertificatePlan:
    """The APIM certificate each desired authority is referenced by, and the uploads that make them exist.

    Needs every gateway's desired state and APIM's certificates, but no gateway's CA list: a run can
    start these uploads before the CA lists are in.
    """

    resolved: Mapping[str, str]  # thumbprint → the certificate id gateways should reference
    uploads: tuple[Action, ...]
    notes: tuple[str, ...]
    index: _CertificateIndex = field(repr=False)


def plan_certificates(desired: Iterable[Desired], certificates: Mapping[str, ApimCertificate]) -> CertificatePlan:
    index = _CertificateIndex(certificates.values())
    wanted = merge(list(desired)).authorities
    resolved: dict[str, str] = {}
    uploads: list[Action] = []
    notes: list[str] = []
    for thumbprint, authority in sorted(wanted.items()):
        certificate_id, upload, note = _resolve(authority, index, wanted)
        resolved[thumbprint] = certificate_id
        if upload is not None:
            uploads.append(upload)
        if note:
            notes.append(note)
    return CertificatePlan(resolved=resolved, uploads=tuple(uploads), notes=tuple(notes), index=index)


@dataclass(frozen=True)
class GatewayPlan:
    actions: tuple[Action, ...]
    conflicts: tuple[str, ...]


def plan_gateway(gateway: str, desired: Desired, cas: Mapping[str, bool], certificates: CertificatePlan) -> GatewayPlan:
    """What one gateway's certificate authorities need: needs only that gateway's CA list."""
    present = {_key(cid): (cid, trusted) for cid, trusted in cas.items()}
    actions: list[Action] = []
    conflicts: list[str] = []
    for thumbprint, authority in sorted(desired.authorities.items()):
        certificate_id = certificates.resolved[thumbprint]
        action, conflict = _gateway_change(gateway, certificate_id, authority, present, certificates.index)
        if action is not None:
            actions.append(action)
        if conflict:
            conflicts.append(conflict)
    return GatewayPlan(actions=tuple(actions), conflicts=tuple(conflicts))


class _CertificateIndex:
    def __init__(self, certificates: Iterable[ApimCertificate]) -> None:
        self.by_id = {_key(cert.id): cert for cert in certificates}
        self.by_thumbprint: dict[str, list[ApimCertificate]] = {}
        for cert in sorted(self.by_id.values(), key=lambda cert: cert.id):
            self.by_thumbprint.setdefault(cert.thumbprint.upper(), []).append(cert)

    def thumbprint_of(self, certificate_id: str) -> str | None:
        cert = self.by_id.get(_key(certificate_id))
        return cert.thumbprint.upper() if cert else None


def _resolve(
    authority: DesiredAuthority, certificates: _CertificateIndex, wanted: Mapping[str, DesiredAuthority]
) -> tuple[str, Action | None, str]:
    """Which id the gateways should reference, and the upload that makes it exist if needed."""
    cert = authority.certificate
    own_id = certificate_id_for(cert)
    existing = certificates.by_id.get(_key(own_id))
    if (
        existing is not None
        and existing.thumbprint.upper() != cert.sha1_thumbprint
        and existing.thumbprint.upper() in wanted
    ):
        # Our id holds another certificate that is needed too (someone replaced it by hand): overwriting it
        # would take that certificate's trust away from every gateway using the id. Use a second id instead.
        own_id = f"{own_id}-alt"
        existing = certificates.by_id.get(_key(own_id))
    if existing is not None and existing.thumbprint.upper() == cert.sha1_thumbprint:
        return existing.id, None, ""
    same = certificates.by_thumbprint.get(cert.sha1_thumbprint, [])
    if same and existing is None:
        # Prefer an id of ours (an older naming) over a foreign one; foreign ones are reused, never touched.
        reused = next((c for c in same if is_owned(c.id)), same[0])
        note = "" if is_owned(reused.id) else f"reusing certificate {reused.id} already in APIM for {cert.subject}"
        return reused.id, None, note
    reason = f"{cert.subject} needed by {', '.join(sorted(authority.needed_by))}"
    if existing is not None:
        reason = f"{own_id} holds {existing.thumbprint}, not {cert.sha1_thumbprint}; {reason}"
    upload = Action(
        ActionKind.UPLOAD_CERTIFICATE, own_id, replace=existing is not None, reason=reason, certificate=cert
    )
    return own_id, upload, ""


def _gateway_change(
    gateway: str,
    certificate_id: str,
    authority: DesiredAuthority,
    present: Mapping[str, tuple[str, bool]],
    certificates: _CertificateIndex,
) -> tuple[Action | None, str]:
    subject = authority.certificate.subject
    entry = present.get(_key(certificate_id))
    if entry is None:
        # Another entry for the same certificate (another id, same thumbprint) already does the job, if it is
        # not ours: one of ours under another id is a duplicate that a full run removes, so the id it resolves
        # to must be set first, or removing the duplicate would leave the gateway without the certificate.
        for other_id, other_trusted in present.values():
            if (
                not is_owned(other_id)
                and certificates.thumbprint_of(other_id) == authority.certificate.sha1_thumbprint
                and (other_trusted or not authority.trusted)
            ):
                return None, ""
        return Action(
            ActionKind.SET_GATEWAY_CA,
            certificate_id,
            gateway=gateway,
            trusted=authority.trusted,
            reason=f"{subject} is not a certificate authority of {gateway}",
        ), ""
    entry_id, trusted = entry
    if trusted == authority.trusted:
        return None, ""
    if not is_owned(entry_id):
        if trusted and not authority.trusted:
            return None, ""  # someone trusts it more than we would: theirs to decide
        return None, f"{gateway}: {entry_id} ({subject}) has isTrusted=false and is not ours to change"
    return Action(
        ActionKind.SET_GATEWAY_CA,
        entry_id,
        gateway=gateway,
        trusted=authority.trusted,
        replace=True,
        reason=f"{subject} has isTrusted={str(trusted).lower()} on {gateway}",
    ), ""


def _removals(
    desired_by_gateway: Mapping[str, Desired],
    observed: Observed,
    resolved: Mapping[str, str],
    notes: list[str],
) -> list[Action]:
    needed = {_key(certificate_id) for certificate_id in resolved.values()}
    actions: list[Action] = []
    still_referenced: dict[str, list[str]] = {}
    for gateway, cas in sorted(observed.gateway_cas.items()):
        desired = desired_by_gateway.get(gateway)
        wanted_here = (
            {_key(resolved[thumbprint]) for thumbprint in desired.authorities} if desired is not None else None
        )
        for certificate_id in sorted(cas):
            if wanted_here is not None and is_owned(certificate_id) and _key(certificate_id) not in wanted_here:
                actions.append(
                    Action(
                        ActionKind.REMOVE_GATEWAY_CA,
                        certificate_id,
                        gateway=gateway,
                        reason="no bound Key Vault certificate needs it any more",
                    )
                )
            else:  # kept: desired here, not ours, or on a gateway outside the selection
                still_referenced.setdefault(_key(certificate_id), []).append(gateway)
    for key, cert in sorted(_owned_certificates(observed).items()):
        if key in needed:
            continue
        if key in still_referenced:
            gateways = ", ".join(still_referenced[key])
            notes.append(f"{cert.id} is not needed but stays: gateway(s) {gateways} outside the selection use it")
            continue
        actions.append(
            Action(
                ActionKind.DELETE_CERTIFICATE, cert.id, reason=f"{cert.subject or cert.thumbprint} is no longer needed"
            )
        )
    return actions


def _owned_certificates(observed: Observed) -> dict[str, ApimCertificate]:
    return {_key(cert.id): cert for cert in observed.certificates.values() if is_owned(cert.id)}


def _key(certificate_id: str) -> str:
    """APIM ids compare without regard to case."""
    return certificate_id.lower()
