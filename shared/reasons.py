"""Why a path is refused, in words: OpenSSL's refusal (its error code, depth and certificate)
said so that it names the certificate concerned and what is wrong with it.

Wording only: the judgement is OpenSSL's (`chain.py`), never a second, hand-written one. The
facts added to OpenSSL's code (which extension refuses a purpose, which entry a gateway lacks)
are read from the certificates themselves, never from a library's error text (`library_errors.py`
holds the little that is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.x509.oid import ExtendedKeyUsageOID

from .certificate import Certificate, may_not_issue

_lib: Any = Binding.lib  # the libcrypto pyOpenSSL runs on

# OpenSSL's verify error codes, from the library that runs: their numbers differ between versions.
V_UNABLE_TO_GET_ISSUER_CERT: int = _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
V_CERT_SIGNATURE_FAILURE: int = _lib.X509_V_ERR_CERT_SIGNATURE_FAILURE
V_CERT_NOT_YET_VALID: int = _lib.X509_V_ERR_CERT_NOT_YET_VALID
V_CERT_HAS_EXPIRED: int = _lib.X509_V_ERR_CERT_HAS_EXPIRED
V_DEPTH_ZERO_SELF_SIGNED_CERT: int = _lib.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
V_SELF_SIGNED_CERT_IN_CHAIN: int = _lib.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: int = _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
V_INVALID_CA: int = _lib.X509_V_ERR_INVALID_CA
V_PATH_LENGTH_EXCEEDED: int = _lib.X509_V_ERR_PATH_LENGTH_EXCEEDED
V_INVALID_PURPOSE: int = _lib.X509_V_ERR_INVALID_PURPOSE
V_UNHANDLED_CRITICAL_EXTENSION: int = _lib.X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION
V_PERMITTED_VIOLATION: int = _lib.X509_V_ERR_PERMITTED_VIOLATION
V_EXCLUDED_VIOLATION: int = _lib.X509_V_ERR_EXCLUDED_VIOLATION


@dataclass(frozen=True)
class Refusal:
    """What X509_verify_cert said: its error code, the depth and certificate it concerns."""

    code: int
    depth: int
    message: str  # OpenSSL's own words for the code: said only for codes worded nowhere here
    certificate: Certificate | None


def secret_reasons(refusal: Refusal, leaf: Certificate, candidates: Sequence[Certificate], at: datetime) -> list[str]:
    """Why the secret's certificates give its leaf no path: the leaf's own defect first."""
    reasons = _leaf_problems(leaf, at)
    cert = refusal.certificate or leaf
    if refusal.code in (V_UNABLE_TO_GET_ISSUER_CERT, V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY):
        namesakes = [c for c in candidates if c != cert and c.subject_key == cert.issuer_key]
        if namesakes:
            reasons.append(f"{cert.subject} names issuer {cert.issuer}, but no certificate of that name signed it")
        else:
            reasons.append(f"missing issuer: the secret holds no {cert.issuer} (issuer of {cert.subject})")
    else:
        reasons.append(_common_reason(refusal, leaf, at))
    return reasons


def gateway_reason(
    refusal: Refusal, leaf: Certificate, trusted: Sequence[Certificate], untrusted: Sequence[Certificate], at: datetime
) -> str:
    """Why the gateway's CA entries do not let it accept the leaf, naming the entry concerned."""
    leaf_problems = _leaf_problems(leaf, at)
    if leaf_problems:
        return leaf_problems[0]
    cert = refusal.certificate or leaf
    if refusal.code in (V_DEPTH_ZERO_SELF_SIGNED_CERT, V_SELF_SIGNED_CERT_IN_CHAIN):
        return f"no trusted anchor: {cert.subject} is {_entry_state(cert, trusted, untrusted)}"
    if refusal.code in (V_UNABLE_TO_GET_ISSUER_CERT, V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY):
        if cert == leaf and cert.is_self_signed:
            return f"no trusted anchor: {cert.subject} is {_entry_state(cert, trusted, untrusted)}"
        namesakes = [c for c in (*trusted, *untrusted) if c != cert and c.subject_key == cert.issuer_key]
        if namesakes:
            return (
                f"{cert.subject} names issuer {cert.issuer}, but no certificate of that name on the gateway signed it"
            )
        if cert == leaf:
            return f"missing intermediate {leaf.issuer} (issuer of {leaf.subject})"
        remark = ""
        if cert in trusted:
            remark = f"; {cert.subject} has isTrusted=true but is not a self-signed root, so it is no anchor"
        return f"root missing: {cert.issuer} (issuer of {cert.subject}) is not on the gateway{remark}"
    return _common_reason(refusal, leaf, at)


def _entry_state(cert: Certificate, trusted: Sequence[Certificate], untrusted: Sequence[Certificate]) -> str:
    if cert in untrusted:
        return "on the gateway with isTrusted=false"
    if cert in trusted:
        return "on the gateway with isTrusted=true but not a usable anchor"
    return "not on the gateway"


def _common_reason(refusal: Refusal, leaf: Certificate, at: datetime) -> str:
    """OpenSSL's refusal in words that name the certificate (the wording both callers share)."""
    cert = refusal.certificate or leaf
    role = "leaf" if cert == leaf else "CA"
    code = refusal.code
    if code == V_CERT_HAS_EXPIRED:
        return f"{role} {cert.subject} expired on {timestamp(cert.not_after)}"
    if code == V_CERT_NOT_YET_VALID:
        return f"{role} {cert.subject} is not valid before {timestamp(cert.not_before)}"
    if code == V_INVALID_CA:
        return f"{cert.subject} may not issue certificates: {may_not_issue(cert.parsed) or refusal.message}"
    if code == V_PATH_LENGTH_EXCEEDED:
        return f"{cert.subject}: path length constraint violated (pathLenConstraint allows fewer CAs below it)"
    if code == V_INVALID_PURPOSE:
        return f"{role} {cert.subject}: {_purpose_problem(cert, is_leaf=cert == leaf)}"
    if code == V_CERT_SIGNATURE_FAILURE:
        return f"{cert.subject} names issuer {cert.issuer}, but no certificate of that name signed it"
    if code in (V_PERMITTED_VIOLATION, V_EXCLUDED_VIOLATION):
        # OpenSSL's words kept in brackets: they say which kind of subtree the name fell foul of.
        return f"{role} {cert.subject}: a name it holds is outside the name constraints of a CA above it ({refusal.message})"
    if code == V_UNHANDLED_CRITICAL_EXTENSION:
        return f"{cert.subject}: unhandled critical extension {', '.join(_unknown_critical(cert)) or ''}".rstrip()
    return f"{cert.subject}: {refusal.message}"


def _purpose_problem(cert: Certificate, *, is_leaf: bool) -> str:
    """Which extension makes OpenSSL's sslserver purpose refuse this certificate."""
    extensions = cert.parsed.extensions
    try:
        usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and ExtendedKeyUsageOID.SERVER_AUTH not in usage:
        why = "extendedKeyUsage allows no serverAuth, which a TLS client requires"
        return why + (
            " (anyExtendedKeyUsage is not enough)" if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usage else ""
        )
    try:
        key_usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if (
        is_leaf
        and key_usage is not None
        and not (key_usage.digital_signature or key_usage.key_encipherment or key_usage.key_agreement)
    ):
        return "keyUsage allows none of digitalSignature, keyEncipherment, keyAgreement: no TLS server key"
    return "unsuitable certificate purpose for a TLS server (OpenSSL's sslserver purpose)"


def _leaf_problems(leaf: Certificate, at: datetime) -> list[str]:
    """The leaf's own validity, judged first: the likeliest cause when it fails."""
    when = max(at, leaf.not_before)
    return [] if leaf.not_after >= when else [f"leaf {leaf.subject} expired on {timestamp(leaf.not_after)}"]


def _unknown_critical(cert: Certificate) -> list[str]:
    try:
        extensions = cert.parsed.extensions
    except Exception:  # wording only
        return []
    return [
        ext.oid.dotted_string
        for ext in extensions
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension)
    ]


def timestamp(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _invalidity(cert: Certificate, at: datetime) -> str:
    if cert.not_after < at:
        return f"expired on {timestamp(cert.not_after)}"
    return f"is not valid before {timestamp(cert.not_before)}"


def validity_remark(cert: Certificate, at: datetime) -> str:
    return "" if cert.is_valid_at(at) else f" ({_invalidity(cert, at)})"


__all__ = [
    "V_CERT_HAS_EXPIRED",
    "V_CERT_NOT_YET_VALID",
    "Refusal",
    "gateway_reason",
    "secret_reasons",
    "timestamp",
    "validity_remark",
]
