"""Configuration: app settings in, a validated and immutable `Settings` out.

Pure: reads a plain mapping (``os.environ`` in production) and imports nothing from ``azure.*``.
Every error names the setting at fault, and every invalid setting is reported at once, because
the first person to read it is an operator looking at the Function App's configuration blade.

One deployment binds one vault's certificates to one APIM service's gateways. A platform team
with several APIM instances deploys the app once per instance: each identity then holds roles on
one APIM service only, and one instance's failures or throttling never hold up another's. Several
deployments may share one APIM service: DEPLOYMENT_ID keeps each to the entries it wrote.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .pacing import HOURLY, TOKEN_BUCKETS, UNMODELLED, Kind, Limit, RateLimits

ALL: Final = "*"
MANAGED_GATEWAY: Final = "managed"  # APIM's own gateway; never a self-hosted one
T = TypeVar("T")


class SettingsError(ValueError):
    """One or more settings are missing or invalid; the message names each of them."""


@dataclass(frozen=True)
class Cloud:
    """The endpoints that differ between Azure's clouds."""

    name: str
    arm_endpoint: str
    keyvault_suffix: str

    @property
    def arm_scope(self) -> str:
        return self.arm_endpoint.rstrip("/") + "/.default"


CLOUDS: Final[Mapping[str, Cloud]] = {
    cloud.name: cloud
    for cloud in (
        Cloud("AzureCloud", "https://management.azure.com", "vault.azure.net"),
        Cloud("AzureChinaCloud", "https://management.chinacloudapi.cn", "vault.azure.cn"),
        Cloud("AzureUSGovernment", "https://management.usgovcloudapi.net", "vault.usgovcloudapi.net"),
    )
}


class Remediation(enum.StrEnum):
    """What the drift audit may write."""

    REPORT = "false"  # nothing: report only
    ADDITIONS = "additions"  # add missing trust, never remove
    ALL = "true"  # add and remove


@dataclass(frozen=True)
class Setting:
    """One app setting, as documented in the README and set by the Bicep templates."""

    name: str
    default: str | None  # None: required
    description: str


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("KEYVAULT_URL", None, "Vault to watch, e.g. https://my-vault.vault.azure.net"),
    Setting(
        "APIM_RESOURCE_ID",
        None,
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}",
    ),
    Setting("APIM_GATEWAYS", ALL, "Self-hosted gateway ids, comma-separated; * = every gateway except 'managed'"),
    Setting("CERTIFICATE_NAMES", ALL, "Key Vault certificate names whose CA chain to trust, comma-separated; * = all"),
    Setting(
        "TRUST_BUNDLES",
        "",
        "Key Vault secret names (plain secrets) whose PEM CA certificates every selected gateway holds, "
        "comma-separated; empty = none (docs/trust-bundles.md)",
    ),
    Setting(
        "TRUST_INTERMEDIATES",
        "false",
        "isTrusted for intermediates (roots are always trusted); false = chain-building only",
    ),
    Setting("AZURE_CLOUD", "AzureCloud", "AzureCloud | AzureChinaCloud | AzureUSGovernment"),
    Setting("AZURE_CLIENT_ID", "", "Client id of the user-assigned managed identity; empty = system-assigned"),
    Setting("ARM_ENDPOINT", "", "Overrides the cloud's Resource Manager endpoint (Azure Stack, emulator)"),
    Setting("AUDIT_SCHEDULE", "0 0 */6 * * *", "NCRONTAB schedule of the drift audit (read by the Functions host)"),
    Setting(
        "AUDIT_REMEDIATE",
        Remediation.ADDITIONS.value,
        "What the drift audit repairs: false = nothing, additions = missing trust, true = also removals",
    ),
    Setting(
        "ROTATION_GRACE",
        "24h",
        "How long a version that stopped being the latest stays trusted (e.g. 36h, 7d); at least the previous one does",
    ),
    Setting(
        "EXPIRY_WARNING_DAYS",
        "30",
        "A leaf or CA that expires within this many days makes the audit's status 'expiring'",
    ),
    Setting(
        "MAX_CONCURRENCY", "12", "Most Azure calls in flight at once in a run, to each service (Key Vault and ARM)"
    ),
    Setting(
        "DEPLOYMENT_ID",
        "",
        "This deployment's mark in the ids it writes to APIM (1-10 of a-z, 0-9); empty = derived from "
        "WEBSITE_SITE_NAME (local without it), and the ids of earlier versions are adopted",
    ),
    Setting(
        "CA_STORE",
        "off",
        "off | manage: whether the app writes a classic tier's CA store (the managed gateway's trust); off = "
        "verdicts only (docs/gateway-kinds.md: the write needs Microsoft.ApiManagement/service/write)",
    ),
    Setting(
        "BACKEND_TLS",
        "off",
        "off | manage: whether the app writes the TLS pins (serverX509Names) of a v2 tier's backends that serve "
        "a bound certificate (a preview API, 2025-03-01-preview; docs/gateway-kinds.md)",
    ),
    Setting(
        "BACKEND_CERTIFICATES",
        "",
        "backend-id=certificate-name,...: backends whose certificate the URL's host does not tell (BACKEND_TLS=manage)",
    ),
    Setting(
        "RUN_TIME_BUDGET",
        "540s",
        "How long a run may go on starting writes (e.g. 540s, 9m): the function timeout less a margin; "
        "what does not fit is left to the next run and the run reports partial",
    ),
)
# DEPLOYMENT_ID: at most 10 characters leave an id (80 at most) room for 17 of the CA's name.
MAX_DEPLOYMENT_ID_LENGTH: Final = 10
LOCAL_DEPLOYMENT: Final = "local"  # DEPLOYMENT_ID left empty where Azure sets no WEBSITE_SITE_NAME
SITE_NAME_VARIABLE: Final = "WEBSITE_SITE_NAME"  # set by Azure Functions: the app's name
# Not an app setting of the table: the request limits the pacer models, for environments whose limits
# differ from the cloud's documented ones (Azure Stack Hub, the emulator's scaled-down buckets).
RATE_LIMITS_VARIABLE: Final = "TRUSTSYNC_RATE_LIMITS"
_DEFAULTS: Final = {s.name: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Selection:
    """A set of names chosen by a comma-separated setting; ``None`` means every name."""

    names: frozenset[str] | None

    @property
    def is_all(self) -> bool:
        return self.names is None

    def __contains__(self, name: object) -> bool:
        # Key Vault object names and APIM ids are case-insensitive.
        if self.names is None:
            return True
        return isinstance(name, str) and name.lower() in {known.lower() for known in self.names}

    def __str__(self) -> str:
        return ALL if self.names is None else ",".join(sorted(self.names))


@dataclass(frozen=True)
class ApimService:
    subscription_id: str
    resource_group: str
    name: str


@dataclass(frozen=True)
class Deployment:
    """Which deployment a run acts as: `id` goes into every APIM id it writes; `adopts_legacy`
    (DEPLOYMENT_ID left empty) makes the ids written before ids carried a deployment its own too."""

    id: str
    adopts_legacy: bool


@dataclass(frozen=True)
class Settings:
    keyvault_url: str  # https://host[:port], normalized (lower case, no default port)
    certificates: Selection
    apim: ApimService
    gateways: Selection
    trust_intermediates: bool
    cloud: Cloud
    arm_endpoint: str
    client_id: str | None
    audit_remediate: Remediation
    rotation_grace: timedelta
    expiry_warning: timedelta
    max_concurrency: int
    run_time_budget: timedelta = timedelta(seconds=540)
    rate_limits: RateLimits = TOKEN_BUCKETS
    deployment: Deployment = field(default_factory=lambda: Deployment(LOCAL_DEPLOYMENT, adopts_legacy=True))
    trust_bundles: frozenset[str] = frozenset()  # TRUST_BUNDLES: plain secrets of PEM CA certificates
    ca_store: bool = False  # CA_STORE=manage: write the classic managed gateway's CA store
    backend_tls: bool = False  # BACKEND_TLS=manage: write the v2 tiers' backend TLS pins
    backend_certificates: tuple[tuple[str, str], ...] = ()  # BACKEND_CERTIFICATES: (backend id, certificate)

    @property
    def vault_host(self) -> str:
        """``host[:port]``: what identifies the vault in event ids."""
        return urlsplit(self.keyvault_url).netloc


_APIM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/resourceGroups/(?P<rg>[-\w.()]{1,90})"
    r"/providers/Microsoft\.ApiManagement/service/(?P<name>[a-zA-Z][a-zA-Z0-9-]{0,49})/?$",
    re.IGNORECASE,
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$", re.ASCII
)
_KEYVAULT_OBJECT_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_GATEWAY_ID = re.compile(r"^[^*#&+:<>?/\\%]{1,80}$")
_DURATION = re.compile(r"^(?P<amount>\d{1,6})\s*(?P<unit>s|m|h|d)$", re.IGNORECASE | re.ASCII)
_UNITS = {"s": timedelta(seconds=1), "m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_MAX_GRACE = timedelta(days=366)
_MAX_RUN_TIME_BUDGET = timedelta(days=1)
# A limit: "250+25/s" (a bucket of 250 refilled at 25 a second) or "1200/h" (1,200 an hour: a bucket
# of 1,200 refilled over the hour); the period is a duration whose amount may be left out ("/s" = "/1s")
# or a fraction (a window scaled down for a test: "50/0.5s").
_LIMIT = re.compile(
    r"^(?P<capacity>\d{1,7}(?:\.\d+)?)(?:\+(?P<refill>\d{1,7}(?:\.\d+)?))?/(?P<period>(?:\d{1,6}(?:\.\d+)?)?[smhd])$",
    re.IGNORECASE | re.ASCII,
)
# ARM's limits as each cloud documents them: the token buckets, or (Azure China) the hourly limits.
_CLOUD_LIMITS: Final[Mapping[str, RateLimits]] = {"AzureChinaCloud": HOURLY}
_WHOLE_NUMBER = re.compile(r"^[+-]?[0-9]+$")  # ASCII digits only: int() also takes full-width ones


def is_keyvault_object_name(name: str) -> bool:
    return bool(_KEYVAULT_OBJECT_NAME.match(name))


def url_host(netloc: str) -> str:
    """``host[:port]`` in lower case, without the default HTTPS port: the one form both a setting
    and an event's object URL are compared in."""
    return netloc.lower().removesuffix(":443")


def parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _parse_https_url(name: str, raw: str) -> str:
    shown = repr(redact_url(raw))  # a user-info or query may carry a credential: never echoed
    try:
        parts = urlsplit(raw.strip())
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        raise SettingsError(f"{name} must be an https:// URL, not {shown}") from None
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise SettingsError(f"{name} must be an https:// URL, not {shown}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise SettingsError(f"{name} must be the endpoint alone, without a path, query or user: {shown}")
    written_port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    if port == 0 or (written_port and not written_port.isascii()):
        raise SettingsError(f"{name} has an invalid port: {shown}")
    if not _HOST_NAME.match(parts.hostname) and not _is_ip_literal(parts.hostname):
        # A trailing dot or a space would never equal the host an event names: every event ignored.
        raise SettingsError(
            f"{name} has an invalid host name (letters, digits, hyphens and dots; no trailing dot): {shown}"
        )
    host = parts.hostname if port in (None, 443) else f"{parts.hostname}:{port}"
    return f"https://{url_host(host)}"


def redact_url(raw: str) -> str:
    """A URL without its user-info, query and fragment, which may carry credentials (user:pass@, ?sig=)."""
    try:
        parts = urlsplit(raw.strip())
    except ValueError:
        return "<not a URL>"
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_keyvault_url(raw: str, cloud: Cloud | None) -> str:
    url = _parse_https_url("KEYVAULT_URL", raw)
    host = urlsplit(url).hostname or ""
    # The most common sovereign-cloud mistake: a vault of one cloud with the credentials of another.
    for other in CLOUDS.values():
        if cloud is not None and other != cloud and host.endswith("." + other.keyvault_suffix):
            raise SettingsError(f"KEYVAULT_URL {url!r} is a vault in {other.name}, but AZURE_CLOUD is {cloud.name}")
    if not _is_ip_literal(host) and "." not in host:
        raise SettingsError(f"KEYVAULT_URL must name the vault's full host name, not {url!r}")
    return url


def parse_apim_resource_id(raw: str) -> ApimService:
    match = _APIM_ID.match(raw.strip())
    if not match:
        raise SettingsError(
            "APIM_RESOURCE_ID must look like /subscriptions/<guid>/resourceGroups/<rg>"
            f"/providers/Microsoft.ApiManagement/service/<name>, not {raw!r}"
        )
    return ApimService(match["sub"], match["rg"], match["name"])


def parse_names(name: str, raw: str, is_valid: Callable[[str], bool]) -> frozenset[str]:
    """A comma-separated list of names: no empty entry, each valid."""
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise SettingsError(f"{name} has an empty entry: {raw!r}")
    bad = [item for item in items if not is_valid(item)]
    if bad:
        raise SettingsError(f"{name} has invalid names: {', '.join(map(repr, bad))}")
    return frozenset(items)


def _parse_selection(name: str, raw: str, pattern: re.Pattern[str]) -> Selection:
    if raw.strip() == ALL:
        return Selection(None)
    return Selection(parse_names(name, raw, lambda item: item != ALL and bool(pattern.match(item))))


def parse_gateways(raw: str) -> Selection:
    selection = _parse_selection("APIM_GATEWAYS", raw, _GATEWAY_ID)
    if selection.names is not None and MANAGED_GATEWAY in {n.lower() for n in selection.names}:
        raise SettingsError("APIM_GATEWAYS must not name 'managed': it is APIM's own gateway, not a self-hosted one")
    return selection


def parse_ca_store(raw: str) -> bool:
    """CA_STORE: ``manage`` writes the classic managed gateway's CA store, ``off`` only judges it."""
    value = raw.strip().lower()
    if value not in ("off", "manage"):
        raise SettingsError(f"CA_STORE must be off or manage, not {raw!r}")
    return value == "manage"


def parse_backend_tls(raw: str) -> bool:
    """BACKEND_TLS: ``manage`` writes v2 backends' TLS pins, ``off`` leaves them alone."""
    value = raw.strip().lower()
    if value not in ("off", "manage"):
        raise SettingsError(f"BACKEND_TLS must be off or manage, not {raw!r}")
    return value == "manage"


def parse_backend_certificate_map(raw: str) -> tuple[tuple[str, str], ...]:
    """BACKEND_CERTIFICATES: ``backend-id=certificate-name,...`` (empty: none)."""
    found: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")) if raw.strip() else ():
        backend, _, certificate = item.partition("=")
        if not backend.strip() or not is_keyvault_object_name(certificate.strip()):
            raise SettingsError(f"BACKEND_CERTIFICATES entry {item!r} is not backend-id=certificate-name")
        found[backend.strip()] = certificate.strip()
    return tuple(sorted(found.items()))  # settings are hashable: the clients are cached by them


def parse_certificate_names(raw: str) -> Selection:
    return _parse_selection("CERTIFICATE_NAMES", raw, _KEYVAULT_OBJECT_NAME)


def parse_trust_bundles(raw: str) -> frozenset[str]:
    """TRUST_BUNDLES: secret names, comma-separated; empty: none. No ``*``: the app reads exactly the
    secrets named (a role on each), never every secret of the vault."""
    if not raw.strip():
        return frozenset()
    return parse_names("TRUST_BUNDLES", raw, lambda item: bool(_KEYVAULT_OBJECT_NAME.match(item)))


def _check_bundles_apart(bundles: frozenset[str], certificates: Selection) -> None:
    """A certificate's backing secret holds its key and chain, not a bundle: one name cannot be both."""
    both = sorted(name for name in bundles if certificates.names is not None and name in certificates)
    if both:
        raise SettingsError(
            f"TRUST_BUNDLES names {', '.join(both)}, also in CERTIFICATE_NAMES: a bundle is a plain secret, "
            "a certificate's secret is read through CERTIFICATE_NAMES"
        )


def parse_cloud(raw: str) -> Cloud:
    for cloud in CLOUDS.values():
        if cloud.name.lower() == raw.strip().lower():
            return cloud
    raise SettingsError(f"AZURE_CLOUD must be one of {', '.join(CLOUDS)}, not {raw!r}")


def parse_remediation(raw: str) -> Remediation:
    lowered = raw.strip().lower()
    if lowered == "true":
        return Remediation.ALL
    if lowered == "false":
        return Remediation.REPORT
    if lowered == Remediation.ADDITIONS.value:
        return Remediation.ADDITIONS
    raise SettingsError(f"AUDIT_REMEDIATE must be false, additions or true, not {raw!r}")


def parse_duration(name: str, raw: str, *, at_most: timedelta, at_least: timedelta = timedelta(0)) -> timedelta:
    match = _DURATION.match(raw.strip())
    if not match:
        raise SettingsError(f"{name} must be a duration like 540s, 90m, 24h or 7d, not {raw!r}")
    duration = int(match["amount"]) * _UNITS[match["unit"].lower()]
    if duration > at_most:
        raise SettingsError(f"{name} must be at most {at_most.days}d, not {raw!r}")
    if duration < at_least:
        raise SettingsError(f"{name} must be at least {at_least.total_seconds():g}s, not {raw!r}")
    return duration


def cloud_rate_limits(cloud: Cloud) -> RateLimits:
    """The limits `cloud` documents for ARM (per subscription and principal) and Key Vault (per vault)."""
    return _CLOUD_LIMITS.get(cloud.name, TOKEN_BUCKETS)


def parse_rate_limits(raw: str, cloud: Cloud | None) -> RateLimits:
    """``TRUSTSYNC_RATE_LIMITS``: empty or ``cloud`` = the cloud's documented limits; ``none`` = no
    model (pace by the services' 429s alone); or ``kind=limit`` items, comma-separated, for the kinds
    to change (``arm-reads``, ``arm-writes``, ``arm-deletes``, ``keyvault``; a limit like ``200+10/s``,
    ``1200/h`` or ``none``), the others keeping the cloud's."""
    name, text = RATE_LIMITS_VARIABLE, raw.strip().lower()
    documented = cloud_rate_limits(cloud) if cloud is not None else TOKEN_BUCKETS
    if text in ("", "cloud"):
        return documented
    if text == "none":
        return UNMODELLED
    limits = {kind: documented[kind] for kind in Kind}
    for item in (part.strip() for part in text.split(",")):
        kind_name, equals, spec = item.partition("=")
        kind = next((kind for kind in Kind if kind.value == kind_name.strip()), None)
        if kind is None or not equals:
            known = ", ".join(kind.value for kind in Kind)
            raise SettingsError(f"{name} items look like arm-writes=200+10/s (kinds: {known}), not {item!r}")
        limits[kind] = _parse_limit(name, spec.strip())
    return RateLimits(*(limits[kind] for kind in Kind))


def _parse_limit(name: str, spec: str) -> Limit | None:
    if spec == "none":
        return None
    match = _LIMIT.match(spec)
    if not match:
        raise SettingsError(f"{name}: a limit looks like 200+10/s, 1200/h or none, not {spec!r}")
    period = match["period"]
    seconds = float(period[:-1] or "1") * _UNITS[period[-1].lower()].total_seconds()
    capacity = float(match["capacity"])
    refill = float(match["refill"] or match["capacity"])
    if capacity < 1 or refill <= 0 or seconds <= 0:
        raise SettingsError(f"{name}: a limit needs at least 1 token and a refill, not {spec!r}")
    return Limit(capacity, refill / seconds)


def _parse_int(name: str, raw: str, low: int, high: int) -> int:
    if not _WHOLE_NUMBER.match(raw.strip()):
        raise SettingsError(f"{name} must be a whole number, not {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _parse_client_id(raw: str) -> str | None:
    if not raw:
        return None
    if not _GUID.match(raw):
        raise SettingsError(f"AZURE_CLIENT_ID must be a client id (GUID), not {raw!r}")
    return raw.lower()


def parse_deployment_id(raw: str, site_name: str) -> Deployment:
    """DEPLOYMENT_ID as set; empty: derived from the app's name (the first 10 hex digits of the SHA-256
    of WEBSITE_SITE_NAME in lower case), or `local` without one, and then legacy ids are adopted."""
    if raw:
        if not re.fullmatch(rf"[a-z0-9]{{1,{MAX_DEPLOYMENT_ID_LENGTH}}}", raw):
            raise SettingsError(
                f"DEPLOYMENT_ID must be 1 to {MAX_DEPLOYMENT_ID_LENGTH} lower-case letters and digits (a-z, 0-9), "
                f"not {raw!r}"
            )
        return Deployment(raw, adopts_legacy=False)
    site = site_name.strip().lower()
    if not site:
        return Deployment(LOCAL_DEPLOYMENT, adopts_legacy=True)
    return Deployment(hashlib.sha256(site.encode()).hexdigest()[:MAX_DEPLOYMENT_ID_LENGTH], adopts_legacy=True)


def _parse_schedule(raw: str, *, hosting_sku: str) -> str:
    # Read by the Functions host, not by the app: checked here so that a typo gets a message naming it.
    if _TIMESPAN.match(raw):
        if hosting_sku.lower() in _TIMESPAN_SKUS_REFUSED or not hosting_sku:
            raise SettingsError(
                f"AUDIT_SCHEDULE {raw!r} is a TimeSpan, which the timer trigger takes only on an App Service plan "
                f"(this app's plan: {hosting_sku or 'unknown'}); write a six-field NCRONTAB expression like 0 0 */6 * * *"
            )
        return raw
    problem = ncrontab_problem(raw)
    if problem:
        raise SettingsError(f"AUDIT_SCHEDULE must be a six-field NCRONTAB expression (like 0 0 */6 * * *): {problem}")
    return raw


# NCRONTAB with seconds, as the Functions host reads a timer schedule: second minute hour day month day-of-week.
_CRON_FIELDS: Final[tuple[tuple[str, int, int, Mapping[str, int]], ...]] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    (
        "month",
        1,
        12,
        {
            m: i
            for i, m in enumerate(
                ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
            )
        },
    ),
    ("day-of-week", 0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
)
_CRON_ITEM = re.compile(r"^(?P<range>\*|(?P<low>[0-9a-z]+)(?:-(?P<high>[0-9a-z]+))?)(?:/(?P<step>[0-9]+))?$", re.ASCII)
_TIMESPAN = re.compile(r"^(?:\d+\.)?\d{1,2}:\d{2}:\d{2}$", re.ASCII)
_TIMESPAN_SKUS_REFUSED: Final = frozenset({"dynamic", "flexconsumption", "elasticpremium"})


def ncrontab_problem(expression: str) -> str:
    """Why `expression` is not a six-field NCRONTAB schedule ("" when it is one)."""
    fields = expression.split()
    if len(fields) != len(_CRON_FIELDS):
        return f"{len(fields)} field(s) in {expression!r}, not 6"
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.lower().split(","):
            match = _CRON_ITEM.match(item)
            if not match:
                return f"the {what} field {text!r} is not *, a number, a range or a step"
            bounds = [match[part] for part in ("low", "high") if match[part] is not None]
            unknown = [value for value in bounds if not value.isdigit() and value not in names]
            if unknown:
                return f"the {what} field {text!r} holds {unknown[0]!r}, which is neither a number nor a {what} name"
            values = [names[value] if value in names else int(value) for value in bounds]  # sun is 0
            if any(not low <= value <= high for value in values):
                return f"the {what} field {text!r} is outside {low}-{high}"
            if len(values) == 2 and values[0] > values[1]:
                return f"the {what} field {text!r} is a range that runs backwards"
            if match["step"] is not None and not 1 <= int(match["step"]) <= high - low + 1:
                return f"the {what} field {text!r} has a step outside 1-{high - low + 1}"
    return ""


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate the app settings; `SettingsError` lists every invalid one."""
    problems: list[str] = []

    def read(name: str, parse: Callable[[str], T]) -> T | None:
        raw = env.get(name, "").strip()
        default = _DEFAULTS[name]
        if not raw and default is None:
            problems.append(f"{name} is required ({next(s.description for s in SETTINGS if s.name == name)})")
            return None
        try:
            return parse(raw or default or "")
        except SettingsError as error:
            problems.append(str(error))
            return None

    cloud = read("AZURE_CLOUD", parse_cloud)
    keyvault_url = read("KEYVAULT_URL", lambda raw: parse_keyvault_url(raw, cloud))
    apim = read("APIM_RESOURCE_ID", parse_apim_resource_id)
    certificates = read("CERTIFICATE_NAMES", parse_certificate_names)
    gateways = read("APIM_GATEWAYS", parse_gateways)
    bundles = read("TRUST_BUNDLES", parse_trust_bundles)
    if bundles is not None and certificates is not None:
        try:
            _check_bundles_apart(bundles, certificates)
        except SettingsError as error:
            problems.append(str(error))
    trust_intermediates = read("TRUST_INTERMEDIATES", lambda raw: parse_bool("TRUST_INTERMEDIATES", raw))
    arm_override = read("ARM_ENDPOINT", lambda raw: _parse_https_url("ARM_ENDPOINT", raw) if raw else "")
    client_id = read("AZURE_CLIENT_ID", _parse_client_id)
    read("AUDIT_SCHEDULE", lambda raw: _parse_schedule(raw, hosting_sku=env.get("WEBSITE_SKU", "")))
    remediation = read("AUDIT_REMEDIATE", parse_remediation)
    grace = read("ROTATION_GRACE", lambda raw: parse_duration("ROTATION_GRACE", raw, at_most=_MAX_GRACE))
    warning_days = read("EXPIRY_WARNING_DAYS", lambda raw: _parse_int("EXPIRY_WARNING_DAYS", raw, 0, 365))
    concurrency = read("MAX_CONCURRENCY", lambda raw: _parse_int("MAX_CONCURRENCY", raw, 1, 64))
    budget = read(
        "RUN_TIME_BUDGET",
        lambda raw: parse_duration("RUN_TIME_BUDGET", raw, at_most=_MAX_RUN_TIME_BUDGET, at_least=timedelta(seconds=1)),
    )
    deployment = read("DEPLOYMENT_ID", lambda raw: parse_deployment_id(raw, env.get(SITE_NAME_VARIABLE, "")))
    ca_store = read("CA_STORE", parse_ca_store)
    backend_tls = read("BACKEND_TLS", parse_backend_tls)
    backend_certificates = read("BACKEND_CERTIFICATES", parse_backend_certificate_map)
    rate_limits = TOKEN_BUCKETS
    try:
        rate_limits = parse_rate_limits(env.get(RATE_LIMITS_VARIABLE, ""), cloud)
    except SettingsError as error:
        problems.append(str(error))
    if problems:
        raise SettingsError("; ".join(problems))
    cloud = _parsed(cloud)
    return Settings(
        keyvault_url=_parsed(keyvault_url),
        certificates=_parsed(certificates),
        apim=_parsed(apim),
        gateways=_parsed(gateways),
        trust_intermediates=_parsed(trust_intermediates),
        cloud=cloud,
        arm_endpoint=arm_override or cloud.arm_endpoint,
        client_id=client_id,
        audit_remediate=_parsed(remediation),
        rotation_grace=_parsed(grace),
        expiry_warning=timedelta(days=_parsed(warning_days)),
        max_concurrency=_parsed(concurrency),
        run_time_budget=_parsed(budget),
        rate_limits=rate_limits,
        deployment=_parsed(deployment),
        trust_bundles=_parsed(bundles),
        ca_store=_parsed(ca_store),
        backend_tls=_parsed(backend_tls),
        backend_certificates=_parsed(backend_certificates),
    )


def _parsed(value: T | None) -> T:
    """A setting `load_settings` parsed: it would have listed a problem instead of leaving it None."""
    assert value is not None
    return value


def unbound_certificates(settings: Settings, names: Iterable[str]) -> list[str]:
    """The names CERTIFICATE_NAMES does not select (a request naming them is a mistake)."""
    return sorted(name for name in names if name not in settings.certificates)
