"""X.509 trust paths: the gateway's path model. Knows X.509 and nothing else: no I/O, nothing from
``azure.*``.

One model of how the self-hosted gateway validates a backend's chain (docs/gateway-model.md), run
by OpenSSL's own X509_verify_cert, never by hand-written signature linking. `verdict` asks it of a
gateway's CA entries, `trust_path` of a secret's certificates (`backing_secret.read_secret` reads
them). Any certificate, no crash: whatever fails while judging one becomes a ChainError.

The wording of refusals is `reasons.py`'s; a `Certificate` and its facts are `certificate.py`'s,
and stay importable from here with `ChainError`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import crypto

from .certificate import Certificate, ChainError, basic_constraints, is_self_issued, may_not_issue
from .library_errors import verify_error_text
from .reasons import (
    V_CERT_HAS_EXPIRED,
    V_CERT_NOT_YET_VALID,
    Refusal,
    gateway_reason,
    secret_reasons,
    timestamp,
    validity_remark,
)

_lib: Any = Binding.lib  # the libcrypto pyOpenSSL runs on, for what pyOpenSSL does not expose


class ChainRejected(ChainError):
    """No valid path: `reasons` each name a certificate and say what is wrong with it."""

    def __init__(self, subject: str, reasons: Sequence[str]) -> None:
        self.reasons: tuple[str, ...] = tuple(dict.fromkeys(reasons))
        super().__init__(f"no valid trust path for {subject}: " + "; ".join(self.reasons))


class Role(enum.Enum):
    ROOT = "root"  # the trust anchor of a path (see TrustPath)
    INTERMEDIATE = "intermediate"


@dataclass(frozen=True)
class Authority:
    """A CA certificate a gateway must know, with the role it plays in a path."""

    certificate: Certificate
    role: Role


@dataclass(frozen=True)
class TrustPath:
    """A validated path from a leaf to its trust anchor, as the CAs a gateway must hold.

    `authorities` runs leaf side first, anchor last; the anchor has Role.ROOT: a self-signed root,
    the leaf itself when it is self-signed, or, when the secret holds no root, the topmost
    certificate of the secret (see `notes`). A leaf that is an issuing CA is itself the first
    authority. The leaf is never an authority otherwise.
    """

    leaf: Certificate
    authorities: tuple[Authority, ...]
    notes: tuple[str, ...] = ()  # root missing, certificates in the secret not on the path, duplicates

    @property
    def anchor(self) -> Certificate:
        return self.authorities[-1].certificate

    @property
    def root_missing(self) -> bool:
        return any(note.startswith("root missing") for note in self.notes)


@dataclass(frozen=True)
class Verdict:
    """Would a TLS client accept a backend presenting `leaf` alone, given a gateway's CAs?"""

    accepted: bool
    reason: str  # "" when accepted
    path: tuple[Certificate, ...]  # the accepted path, leaf first; () when refused


# -- the gateway's path model ----------------------------------------------------------------------------
# One engine for both questions: OpenSSL's own X509_verify_cert (pyOpenSSL's store and context, the
# purpose set through cryptography's binding of the same libcrypto), as the self-hosted gateway's
# .NET-on-Linux TLS client runs it. docs/gateway-model.md gives the model and its sources:
# - anchors are self-signed certificates only, and no partial chains: .NET's custom root trust
#   fails a chain that does not end at a self-signed root of its store;
# - purpose sslserver: extendedKeyUsage is honoured on the leaf, every CA and the root;
# - an anchor is judged as OpenSSL's default verification judges it: validity and CA-ness (a v1
#   self-signed certificate, cA=true, or keyUsage with keyCertSign), never its own signature;
# - no security level (OpenSSL's verify default): key sizes and digests are not judged.
# The wording of a refusal (reasons.py) comes from OpenSSL's error code, depth and certificate,
# never from a second, hand-written judgement of the path.

CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of the worker's clock a CA's notBefore is tolerated
_SKEW_RETRIES = 8  # CAs of one path whose notBefore may move the judged moment: far above any real PKI


def _openssl_verify(
    leaf: Certificate,
    anchors: Sequence[Certificate],
    intermediates: Sequence[Certificate],
    when: datetime,
    *,
    server: bool,
    partial: bool,
) -> list[Certificate] | Refusal:
    """The path OpenSSL builds leaf → anchor at `when`, leaf first, or its refusal."""
    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(anchor.openssl)
    store.set_time(when)  # before the purpose: it replaces the store's parameters
    if server:
        _require(_lib.X509_STORE_set_purpose(store._store, _lib.X509_PURPOSE_SSL_SERVER))  # no pyOpenSSL API
    if partial:
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    context = crypto.X509StoreContext(store, leaf.openssl, [cert.openssl for cert in intermediates])
    by_der = {cert.der: cert for cert in (leaf, *anchors, *intermediates)}
    try:
        built = context.get_verified_chain()
    except crypto.X509StoreContextError as error:
        code, depth, message = int(error.errors[0]), int(error.errors[1]), str(error.errors[2])
        return Refusal(code, depth, message, by_der.get(_der_of(error.certificate)))
    return [by_der[_der_of(cert)] for cert in built]


def _der_of(cert: crypto.X509) -> bytes:
    return crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)  # OpenSSL's own encoding, no conversion


def _require(result: int) -> None:
    if result != 1:
        raise ChainError("OpenSSL refused the verification parameters")


def _verify(
    leaf: Certificate,
    anchors: Sequence[Certificate],
    intermediates: Sequence[Certificate],
    at: datetime,
    *,
    server: bool,
    partial: bool = False,
) -> list[Certificate] | Refusal:
    """`_openssl_verify` as of the moment the leaf is judged, with the two clock rules.

    A leaf Key Vault holds before its notBefore is judged as of then, so that its CAs can be
    trusted ahead of the rotation; its CAs must be valid now as well. A CA whose notBefore is at
    most CLOCK_SKEW ahead of the worker's clock is judged as of its notBefore (its issuer's clock
    runs ahead of ours), never past the leaf's notAfter.
    """
    when = max(at, leaf.not_before)
    for _ in range(_SKEW_RETRIES):
        outcome = _openssl_verify(leaf, anchors, intermediates, when, server=server, partial=partial)
        if not isinstance(outcome, Refusal) or outcome.code != V_CERT_NOT_YET_VALID:
            break
        early = outcome.certificate
        if early is None or outcome.depth == 0 or not when < early.not_before <= at + CLOCK_SKEW:
            break
        if early.not_before > leaf.not_after:
            break
        when = early.not_before
    if isinstance(outcome, Refusal):
        return outcome
    for depth, cert in enumerate(outcome[1:], start=1):
        if cert.not_after < at:
            return Refusal(V_CERT_HAS_EXPIRED, depth, verify_error_text(V_CERT_HAS_EXPIRED), cert)
        if cert.not_before > at + CLOCK_SKEW:
            return Refusal(V_CERT_NOT_YET_VALID, depth, verify_error_text(V_CERT_NOT_YET_VALID), cert)
    return outcome


# -- trust paths ---------------------------------------------------------------------------------------


def trust_path(certificates: Sequence[Certificate], *, leaf_thumbprint: str | None, at: datetime) -> TrustPath:
    """The validated path of a secret's leaf, as the CAs to upload and trust.

    `leaf_thumbprint` (SHA-1 hex, Key Vault's x5t) names the leaf; None: the one certificate that
    issues no other in the bag. The anchors are the self-signed certificates of the secret that
    the leaf reaches by issuer names; only when the names reach none is the path validated up to
    the topmost certificate reached (root missing). Raises ChainError if the leaf cannot be told
    or a certificate cannot be judged, ChainRejected if no path is valid.
    """
    try:
        return _trust_path(certificates, leaf_thumbprint=leaf_thumbprint, at=at)
    except ChainError:
        raise
    except Exception as error:  # any certificate, no crash: this version is unusable, said so
        raise ChainError(f"the secret's certificates cannot be validated: {type(error).__name__}: {error}") from None


def _trust_path(certificates: Sequence[Certificate], *, leaf_thumbprint: str | None, at: datetime) -> TrustPath:
    if not certificates:
        raise ChainError("the secret holds no certificates")
    unique = list(dict.fromkeys(certificates))
    leaf = _pick_leaf(unique, leaf_thumbprint)
    others = [cert for cert in unique if cert != leaf]
    notes: list[str] = []
    partial = False
    if leaf.is_self_signed:
        anchors, intermediates = [leaf], []
    else:
        reached = _reached_by_names(leaf, others)
        roots = [cert for cert in reached if cert.is_self_signed]
        subjects = {cert.subject_key for cert in unique}
        tops = [cert for cert in reached if not is_self_issued(cert) and cert.issuer_key not in subjects]
        if not reached:
            raise ChainRejected(
                leaf.subject, [f"missing issuer: the secret holds no {leaf.issuer} (issuer of {leaf.subject})"]
            )
        if not roots and not tops:
            raise ChainRejected(leaf.subject, [f"the issuers of {leaf.subject} in the secret lead to no root"])
        # A root the names reach is the anchor, and failing against it is failing: a lower CA is
        # never promoted to anchor past its own issuer's constraints.
        # Of several roots, only the valid ones are anchors when there are some: an expired root is
        # never uploaded, and OpenSSL would stop at it rather than take a cross-signed way round.
        valid_roots = [cert for cert in roots if cert.is_valid_at(at)]
        anchors, partial = (valid_roots or roots, False) if roots else (tops, True)
        intermediates = [cert for cert in reached if cert not in anchors and cert not in roots]
    # An issuing CA held in Key Vault is the end of its own path: it serves no TLS, so no purpose.
    outcome = _verify(leaf, anchors, intermediates, at, server=not leaf.is_ca, partial=partial)
    if isinstance(outcome, Refusal):
        raise ChainRejected(leaf.subject, secret_reasons(outcome, leaf, [*intermediates, *anchors], at))
    path = outcome

    authorities: list[Authority] = []
    if len(path) > 1 and leaf.is_ca:
        refusal = _ca_leaf_refusal(path)
        if refusal is None:
            authorities.append(Authority(leaf, Role.INTERMEDIATE))
        else:
            notes.append(f"{leaf.subject} is a CA certificate but {refusal}: it is not trusted as a CA")
    authorities.extend(Authority(cert, Role.INTERMEDIATE) for cert in path[1:-1])
    authorities.append(Authority(path[-1], Role.ROOT))

    top = path[-1]
    if top != leaf and not top.is_self_signed:
        notes.append(f"root missing: the secret stops at {top.subject}, issued by {top.issuer}")
    if leaf.not_before > at:
        notes.append(f"{leaf.subject} is not valid before {timestamp(leaf.not_before)}: validated as of then")
    unused = [cert for cert in others if cert not in path]
    if unused:
        names = "; ".join(cert.subject + validity_remark(cert, at) for cert in unused)
        notes.append(f"ignored {len(unused)} certificate(s) not on the chain: {names}")
    if len(certificates) > len(unique):
        notes.append(f"ignored {len(certificates) - len(unique)} duplicate certificate(s)")
    return TrustPath(leaf=leaf, authorities=tuple(authorities), notes=tuple(notes))


def verdict(
    leaf: Certificate, *, trusted: Iterable[Certificate], untrusted: Iterable[Certificate], at: datetime
) -> Verdict:
    """Would the gateway accept a backend presenting `leaf` alone, with `trusted` (its CA entries
    with isTrusted=true) and `untrusted` (those with isTrusted=false)?

    The path must end at a self-signed entry with isTrusted=true; every entry, trusted or not, is
    available as an intermediate (docs/gateway-model.md). A self-signed leaf is accepted iff its
    own entry is trusted and it is valid. A leaf not yet valid is judged as of its notBefore.

    OpenSSL takes the first fitting issuer among the intermediates, and the order in which the
    gateway hands over its entries is not known: when two entries share a name (cross-signing, a
    rollover), the leaf is judged with the entries in both orders and accepted only if both accept.
    """
    trusted_set = list(dict.fromkeys(trusted))
    is_trusted = set(trusted_set)  # membership by hash: a gateway holds hundreds of entries
    untrusted_set = [cert for cert in dict.fromkeys(untrusted) if cert not in is_trusted]
    try:
        # OpenSSL looks issuers up by name: an entry the leaf's issuer names never reach cannot be on a
        # path, and handing OpenSSL only the reachable ones (in the gateway's order) spares building a
        # store of every entry for every leaf, the cost of an audit of many certificates.
        reached = set(_reached_by_names(leaf, [*trusted_set, *untrusted_set])) | {leaf}
        anchors = [cert for cert in trusted_set if cert in reached and cert.is_self_signed]
        entries = [cert for cert in (*trusted_set, *untrusted_set) if cert != leaf and cert in reached]
        orders = [entries]
        if len({cert.subject_key for cert in entries}) < len(entries):
            orders.append(entries[::-1])
        outcomes = [_verify(leaf, anchors, order, at, server=True) for order in orders]
        refusals = [outcome for outcome in outcomes if isinstance(outcome, Refusal)]
        if refusals:
            reason = gateway_reason(refusals[0], leaf, trusted_set, untrusted_set, at)
            if len(refusals) < len(outcomes):
                reason += " (with the gateway's entries in another order, a path is found: the order decides)"
            return Verdict(False, reason, ())
    except Exception as error:  # any certificate, no crash: a refusal that says why
        return Verdict(False, f"{leaf.subject} cannot be validated: {type(error).__name__}: {error}", ())
    path = outcomes[0]
    assert not isinstance(path, Refusal)
    return Verdict(True, "", tuple(path))


def _ca_leaf_refusal(path: Sequence[Certificate]) -> str | None:
    """Why the leaf CA of a valid path may not issue certificates itself, or None if it may.

    OpenSSL judged it as the end of the path; issuing puts it one level lower, so each CA above it
    must allow one more CA below, counted as OpenSSL counts (self-issued CAs do not count).
    """
    leaf = path[0]
    issue = may_not_issue(leaf.parsed)
    if issue:
        return f"may not issue certificates: {issue}"
    below = 1  # the leaf CA itself, once it issues
    for cert in path[1:]:
        constraints = basic_constraints(cert.parsed)
        if constraints is not None and constraints.path_length is not None and constraints.path_length < below:
            return (
                f"may not issue certificates: {cert.subject} has pathLenConstraint {constraints.path_length}, "
                f"which allows no {below} CA(s) below it"
            )
        if not is_self_issued(cert):
            below += 1
    return None


# -- names -----------------------------------------------------------------------------------------------


def _pick_leaf(unique: Sequence[Certificate], leaf_thumbprint: str | None) -> Certificate:
    if leaf_thumbprint is not None:
        wanted = leaf_thumbprint.upper()
        leaf = next((cert for cert in unique if cert.sha1_thumbprint == wanted), None)
        if leaf is None:
            raise ChainError(f"the certificate's leaf {wanted} is not in its secret")
        return leaf
    if len(unique) == 1:
        return unique[0]
    issuers = {
        cert.issuer_key for cert in unique if not is_self_issued(cert)
    }  # names that issue some other certificate
    leaves = [cert for cert in unique if cert.subject_key not in issuers]
    if len(leaves) != 1:
        names = "; ".join(cert.subject for cert in leaves) or "none"
        raise ChainError(f"cannot tell the leaf: {len(leaves)} certificates issue no other ({names})")
    return leaves[0]


def _reached_by_names(leaf: Certificate, others: Sequence[Certificate]) -> list[Certificate]:
    """Every certificate the leaf reaches by following issuer names upwards, nearest first."""
    by_subject: dict[int, list[Certificate]] = {}
    for cert in others:
        by_subject.setdefault(cert.subject_key, []).append(cert)
    reached: dict[Certificate, None] = {}
    frontier = [leaf]
    while frontier:
        following: list[Certificate] = []
        for cert in frontier:
            if cert is not leaf and is_self_issued(cert):
                continue  # a root: its issuer is itself
            for issuer in by_subject.get(cert.issuer_key, ()):
                if issuer != leaf and issuer not in reached:
                    reached[issuer] = None
                    following.append(issuer)
        frontier = following
    return list(reached)


__all__ = [
    "CLOCK_SKEW",
    "Authority",
    "Certificate",
    "ChainError",
    "ChainRejected",
    "Role",
    "TrustPath",
    "Verdict",
    "trust_path",
    "verdict",
]
