"""A report's conflicts, warnings and errors as objects: a code, the certificate and gateway they
concern, and the message. Pure.

The engine says each one as a sentence where it finds it (many places, some in the path
validator); they are classified here, at the edge, by the sentence's form, so that the report's
JSON has a stable `code` to act on while the sentences stay free to improve. A sentence of a form
not listed here still appears, with the generic code of its kind (``conflict``, ``warning``,
``error``): nothing is dropped. The codes are part of the JSON contract (docs/report.schema.json).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class Severity(enum.StrEnum):
    CONFLICT = "conflict"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    message: str
    certificate: str | None = None  # a Key Vault certificate name, when the finding concerns one
    gateway: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "certificate": self.certificate,
            "gateway": self.gateway,
            "message": self.message,
        }


_NAME = r"(?P<certificate>[0-9A-Za-z-]+)"
_VERSIONED = rf"^{_NAME} \([0-9A-Za-z-]+\): "  # a path note, as Desired prefixes it

# (severity, code, pattern): the first match wins; a `certificate` or `gateway` group fills the field.
_RULES: tuple[tuple[Severity, str, re.Pattern[str]], ...] = tuple(
    (severity, code, re.compile(pattern))
    for severity, code, pattern in (
        (Severity.CONFLICT, "foreign-certificate-id", r"^certificate \S+ holds \S+, not .* not uploaded by this app"),
        (Severity.WARNING, "root-missing", _VERSIONED + "root missing"),
        (Severity.WARNING, "not-on-chain", _VERSIONED + r"ignored \d+ certificate\(s\) not on the chain"),
        (Severity.WARNING, "duplicate-certificates", _VERSIONED + r"ignored \d+ duplicate"),
        (Severity.WARNING, "not-yet-valid", _VERSIONED + r".* is not valid before "),
        (Severity.WARNING, "leaf-is-ca", _VERSIONED + r".* is a CA certificate but "),
        (Severity.WARNING, "time-budget", r"^time budget of \S+ ran out"),
        (Severity.WARNING, "no-write-in-budget", r"^no write could start within the time budget"),
        (Severity.WARNING, "removals-held", r"^nothing taken away: "),
        (Severity.WARNING, "retired-expired", rf"^certificate {_NAME} has only expired versions"),
        (Severity.WARNING, "retired-disabled", rf"^certificate {_NAME} has no enabled version"),
        (Severity.WARNING, "retired-deleted", rf"^certificate {_NAME} was deleted from "),
        (Severity.WARNING, "kept-possible-root", r"^kept \S+( on (?P<gateway>\S+))?: it may be the root that " + _NAME),
        (Severity.WARNING, "kept-for-verdict", r"^kept \S+ on (?P<gateway>\S+): without it \S+ would reject " + _NAME),
        (Severity.WARNING, "replacement-pending", r"^\S+ stays on (?P<gateway>\S+) until "),
        (Severity.WARNING, "used-outside-selection", r"^\S+ is not needed but stays: gateway"),
        (Severity.ERROR, "no-gateway-selected", r"^no self-hosted gateway selected in "),
        (Severity.ERROR, "gateway-not-found", r"^gateway\(s\) .* named in APIM_GATEWAYS do not exist"),
        (Severity.ERROR, "certificate-not-in-vault", r"^certificates?: not in Key Vault"),
        (Severity.ERROR, "certificate-name-unknown", rf"^CERTIFICATE_NAMES names certificate {_NAME}, which "),
        (Severity.ERROR, "certificate-vanished", rf"^certificate {_NAME} was (not found in|listed by) "),
        (Severity.ERROR, "invalid-chain", rf"^certificate {_NAME} version \S+: "),
        (Severity.ERROR, "permission-denied", r"HTTP 403 .*(lacks|role)"),
        (Severity.ERROR, "credential-unavailable", r"^no Azure credential: "),
        (Severity.ERROR, "azure-call-failed", r"HTTP \d{3} "),
    )
)


def classify(severity: Severity, message: str, *, gateways: Sequence[str] = ()) -> Finding:
    """One message as a finding; `gateways` are the run's gateway names, found in the text when no
    rule's pattern names one."""
    for rule_severity, code, pattern in _RULES:
        if rule_severity is not severity:
            continue
        match = pattern.search(message)
        if match is None:
            continue
        groups = match.groupdict()
        return Finding(
            severity, code, message, groups.get("certificate"), groups.get("gateway") or _gateway(message, gateways)
        )
    certificate = re.search(rf"\bcertificate {_NAME}\b", message)
    return Finding(
        severity,
        severity.value,
        message,
        certificate.group("certificate") if certificate and severity is not Severity.CONFLICT else None,
        _gateway(message, gateways),
    )


def findings(
    conflicts: Iterable[str], warnings: Iterable[str], errors: Iterable[str], *, gateways: Sequence[str] = ()
) -> list[Finding]:
    """Every conflict, warning and error, in that order."""
    return [
        *(classify(Severity.CONFLICT, message, gateways=gateways) for message in conflicts),
        *(classify(Severity.WARNING, message, gateways=gateways) for message in warnings),
        *(classify(Severity.ERROR, message, gateways=gateways) for message in errors),
    ]


def _gateway(message: str, gateways: Sequence[str]) -> str | None:
    named = [gateway for gateway in gateways if re.search(rf"(?<![\w-]){re.escape(gateway)}(?![\w-])", message)]
    return named[0] if len(named) == 1 else None  # several: the finding is about none of them alone
