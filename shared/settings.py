"""Configuration: app settings in, a validated and immutable `Settings` out.

Pure: reads a plain mapping (``os.environ`` in production) and imports nothing from ``azure.*``.
Every error names the setting at fault, and every invalid setting is reported at once, because
the first person to read it is an operator looking at the Function App's configuration blade.

Each setting is declared once, in `SETTINGS`: its name, default, description, parser, the
`Settings` field it fills and whether its value may carry a credential. That one table drives
`load_settings`, its messages, the CLI's ``--help`` and the tests that hold the README, the
Bicep templates and local.settings.json.example to the same list.

One deployment binds one vault's certificates to one APIM service's gateways. A platform team
with several APIM instances deploys the app once per instance: each identity then holds roles on
one APIM service only, and one instance's failures or throttling never hold up another's. Several
deployments may share one APIM service: DEPLOYMENT_ID keeps each to the entries it wrote.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from .ncrontab import schedule_problem
from .pacing import HOURLY, TOKEN_BUCKETS, UNMODELLED, Kind, Limit, RateLimits
from .setting_parsers import UNITS, Raw, choice, duration, https_endpoint, is_ip_literal, whole_number
from .setting_parsers import SettingsError as SettingsError  # raised by every parser; importers know it from here
from .setting_parsers import parse_names as parse_names  # the CLI's --certificates reads a list of names too
from .setting_parsers import url_host as url_host  # events compare their vault with KEYVAULT_URL's host

ALL: Final = "*"
MANAGED_GATEWAY: Final = "managed"  # APIM's own gateway; never a self-hosted one
# DEPLOYMENT_ID: at most 10 characters leave an id (80 at most) room for 17 of the CA's name.
MAX_DEPLOYMENT_ID_LENGTH: Final = 10
LOCAL_DEPLOYMENT: Final = "local"  # DEPLOYMENT_ID left empty where Azure sets no WEBSITE_SITE_NAME
SITE_NAME_VARIABLE: Final = "WEBSITE_SITE_NAME"  # set by Azure Functions: the app's name
SKU_VARIABLE: Final = "WEBSITE_SKU"  # set by Azure Functions: the hosting plan's kind
# Not an app setting of the table: the request limits the pacer models, for environments whose limits
# differ from the cloud's documented ones (Azure Stack Hub, the emulator's scaled-down buckets).
RATE_LIMITS_VARIABLE: Final = "TRUSTSYNC_RATE_LIMITS"


# -- what settings become ------------------------------------------------------------------------------------


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
# ARM's limits as each cloud documents them: the token buckets, or (Azure China) the hourly limits.
_CLOUD_LIMITS: Final[Mapping[str, RateLimits]] = {"AzureChinaCloud": HOURLY}


class Remediation(enum.StrEnum):
    """What the drift audit may write."""

    REPORT = "false"  # nothing: report only
    ADDITIONS = "additions"  # add missing trust, never remove
    ALL = "true"  # add and remove


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


# -- how a setting is read -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One app setting, as documented in the README and set by the Bicep templates."""

    name: str
    default: str | None  # None: required
    parse: Callable[[Raw], object]  # raises SettingsError (through `Raw.error`) on a bad value
    field: str | None  # the `Settings` field it fills; None: checked only (the Functions host reads it)
    description: str  # one line: `--help`'s, and the "is required" error's
    redacted: bool = False  # its value may carry a credential, which no error may echo

    @property
    def required(self) -> bool:
        return self.default is None

    def read(self, env: Mapping[str, str]) -> object:
        text = env.get(self.name, "").strip()
        if not text and self.default is None:
            raise SettingsError(f"{self.name} is required ({self.description})")
        return self.parse(Raw(self.name, text or self.default or "", env, self.redacted))


def _selection(pattern: re.Pattern[str]) -> Callable[[Raw], Selection]:
    """``*`` (every name) or a list of names."""

    def parse(raw: Raw) -> Selection:
        if raw.text == ALL:
            return Selection(None)
        return Selection(parse_names(raw.name, raw.text, lambda item: item != ALL and bool(pattern.match(item))))

    return parse


_KEYVAULT_OBJECT_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_GATEWAY_ID = re.compile(r"^[^*#&+:<>?/\\%]{1,80}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_APIM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/resourceGroups/(?P<rg>[-\w.()]{1,90})"
    r"/providers/Microsoft\.ApiManagement/service/(?P<name>[a-zA-Z][a-zA-Z0-9-]{0,49})/?$",
    re.IGNORECASE,
)


def is_keyvault_object_name(name: str) -> bool:
    return bool(_KEYVAULT_OBJECT_NAME.match(name))


def _vault_url(raw: Raw) -> str:
    url = https_endpoint(raw)
    host = urlsplit(url).hostname or ""
    if not is_ip_literal(host) and "." not in host:
        raise raw.error(f"must name the vault's full host name, not {url!r}")
    return url


def _apim_service(raw: Raw) -> ApimService:
    match = _APIM_ID.match(raw.text)
    if not match:
        raise raw.error(
            "must look like /subscriptions/<guid>/resourceGroups/<rg>"
            f"/providers/Microsoft.ApiManagement/service/<name>, not {raw.shown}"
        )
    return ApimService(match["sub"], match["rg"], match["name"])


def _gateways(raw: Raw) -> Selection:
    selection = _selection(_GATEWAY_ID)(raw)
    if selection.names is not None and MANAGED_GATEWAY in {n.lower() for n in selection.names}:
        raise raw.error("must not name 'managed': it is APIM's own gateway, not a self-hosted one")
    return selection


def _trust_bundles(raw: Raw) -> frozenset[str]:
    """No ``*``: the app reads exactly the secrets named (a role on each), never every secret of the vault."""
    return parse_names(raw.name, raw.text, is_keyvault_object_name) if raw.text else frozenset()


def _client_id(raw: Raw) -> str | None:
    if not raw.text:
        return None
    if not _GUID.match(raw.text):
        raise raw.error(f"must be a client id (GUID), not {raw.shown}")
    return raw.text.lower()


def _schedule(raw: Raw) -> str:
    # Read by the Functions host, not by the app: checked here so that a typo gets a message naming it.
    problem = schedule_problem(raw.text, raw.env.get(SKU_VARIABLE, ""))
    if problem:
        raise raw.error(problem)
    return raw.text


def _deployment(raw: Raw) -> Deployment:
    """As set; empty: derived from the app's name (the first 10 hex digits of the SHA-256 of
    WEBSITE_SITE_NAME in lower case), or `local` without one, and then legacy ids are adopted."""
    if raw.text:
        if not re.fullmatch(rf"[a-z0-9]{{1,{MAX_DEPLOYMENT_ID_LENGTH}}}", raw.text):
            raise raw.error(
                f"must be 1 to {MAX_DEPLOYMENT_ID_LENGTH} lower-case letters and digits (a-z, 0-9), not {raw.shown}"
            )
        return Deployment(raw.text, adopts_legacy=False)
    site = raw.env.get(SITE_NAME_VARIABLE, "").strip().lower()
    if not site:
        return Deployment(LOCAL_DEPLOYMENT, adopts_legacy=True)
    return Deployment(hashlib.sha256(site.encode()).hexdigest()[:MAX_DEPLOYMENT_ID_LENGTH], adopts_legacy=True)


def _backend_certificates(raw: Raw) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for item in (part.strip() for part in raw.text.split(",")) if raw.text else ():
        backend, _, certificate = item.partition("=")
        if not backend.strip() or not is_keyvault_object_name(certificate.strip()):
            raise raw.error(f"entry {item!r} is not backend-id=certificate-name")
        found[backend.strip()] = certificate.strip()
    return tuple(sorted(found.items()))  # settings are hashable: the clients are cached by them


def _arm_endpoint(raw: Raw) -> str:
    return https_endpoint(raw) if raw.text else ""  # empty: the cloud's, filled in once AZURE_CLOUD is known


def _expiry_warning(raw: Raw) -> timedelta:
    return timedelta(days=whole_number(0, 365)(raw))


_BOOLEAN = choice({"true": True, "false": False})
_MANAGE = choice({"off": False, "manage": True})
_REMEDIATION = choice({remediation.value: remediation for remediation in Remediation})
_RUN_TIME_BUDGET = duration(at_most=timedelta(days=1), at_least=timedelta(seconds=1))

# The app settings, in the README's order. Parsed in this order; problems between two settings (a vault
# of another cloud, a bundle that is also a certificate) are checked once both are valid alone.
# fmt: off
SETTINGS: Final[tuple[Setting, ...]] = (
    #       name                    default             parser                                  Settings field
    Setting("KEYVAULT_URL",         None,               _vault_url,                             "keyvault_url",
            "Vault to watch, e.g. https://my-vault.vault.azure.net", redacted=True),
    Setting("APIM_RESOURCE_ID",     None,               _apim_service,                          "apim",
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"),
    Setting("APIM_GATEWAYS",        ALL,                _gateways,                              "gateways",
            "Self-hosted gateway ids, comma-separated; * = every gateway except 'managed'"),
    Setting("CERTIFICATE_NAMES",    ALL,                _selection(_KEYVAULT_OBJECT_NAME),      "certificates",
            "Key Vault certificate names whose CA chain to trust, comma-separated; * = all"),
    Setting("TRUST_BUNDLES",        "",                 _trust_bundles,                         "trust_bundles",
            "Key Vault secret names (plain secrets) whose PEM CA certificates every selected gateway holds, "
            "comma-separated; empty = none (docs/trust-bundles.md)"),
    Setting("TRUST_INTERMEDIATES",  "false",            _BOOLEAN,                               "trust_intermediates",
            "isTrusted for intermediates (roots are always trusted); false = chain-building only"),
    Setting("AZURE_CLOUD",          "AzureCloud",       choice(CLOUDS, one_of=True),            "cloud",
            " | ".join(CLOUDS)),
    Setting("AZURE_CLIENT_ID",      "",                 _client_id,                             "client_id",
            "Client id of the user-assigned managed identity; empty = system-assigned"),
    Setting("ARM_ENDPOINT",         "",                 _arm_endpoint,                          "arm_endpoint",
            "Overrides the cloud's Resource Manager endpoint (Azure Stack, emulator)", redacted=True),
    Setting("AUDIT_SCHEDULE",       "0 0 */6 * * *",    _schedule,                              None,
            "NCRONTAB schedule of the drift audit (read by the Functions host)"),
    Setting("AUDIT_REMEDIATE",      "additions",        _REMEDIATION,                           "audit_remediate",
            "What the drift audit repairs: false = nothing, additions = missing trust, true = also removals"),
    Setting("ROTATION_GRACE",       "24h",              duration(at_most=timedelta(days=366)),  "rotation_grace",
            "How long a version that stopped being the latest stays trusted (e.g. 36h, 7d); "
            "at least the previous one does"),
    Setting("EXPIRY_WARNING_DAYS",  "30",               _expiry_warning,                        "expiry_warning",
            "A leaf or CA that expires within this many days makes the audit's status 'expiring'"),
    Setting("DEPLOYMENT_ID",        "",                 _deployment,                            "deployment",
            "This deployment's mark in the ids it writes to APIM (1-10 of a-z, 0-9); empty = derived from "
            "WEBSITE_SITE_NAME (local without it), and the ids of earlier versions are adopted"),
    Setting("MAX_CONCURRENCY",      "12",               whole_number(1, 64),                    "max_concurrency",
            "Most Azure calls in flight at once in a run, to each service (Key Vault and ARM)"),
    Setting("CA_STORE",             "off",              _MANAGE,                                "ca_store",
            "off | manage: whether the app writes a classic tier's CA store (the managed gateway's trust); off = "
            "verdicts only (docs/gateway-kinds.md: the write needs Microsoft.ApiManagement/service/write)"),
    Setting("BACKEND_TLS",          "off",              _MANAGE,                                "backend_tls",
            "off | manage: whether the app writes the TLS pins (serverX509Names) of a v2 tier's backends that "
            "serve a bound certificate (a preview API, 2025-03-01-preview; docs/gateway-kinds.md)"),
    Setting("BACKEND_CERTIFICATES", "",                 _backend_certificates,                  "backend_certificates",
            "backend-id=certificate-name,...: backends whose certificate the URL's host does not tell "
            "(BACKEND_TLS=manage)"),
    Setting("RUN_TIME_BUDGET",      "540s",             _RUN_TIME_BUDGET,                       "run_time_budget",
            "How long a run may go on starting writes (e.g. 540s, 9m): the function timeout less a margin; "
            "what does not fit is left to the next run and the run reports partial"),
)
# fmt: on


def _conflicts(values: Mapping[str, Any]) -> Iterator[str]:
    """Problems between settings each valid alone."""
    url, cloud = values.get("keyvault_url"), values.get("cloud")
    if url is not None and cloud is not None:
        # The most common sovereign-cloud mistake: a vault of one cloud with the credentials of another.
        host = urlsplit(url).hostname or ""
        for other in CLOUDS.values():
            if other != cloud and host.endswith("." + other.keyvault_suffix):
                yield f"KEYVAULT_URL {url!r} is a vault in {other.name}, but AZURE_CLOUD is {cloud.name}"
    bundles, certificates = values.get("trust_bundles"), values.get("certificates")
    if bundles is not None and certificates is not None and certificates.names is not None:
        # A certificate's backing secret holds its key and chain, not a bundle: one name cannot be both.
        both = sorted(name for name in bundles if name in certificates)
        if both:
            yield (
                f"TRUST_BUNDLES names {', '.join(both)}, also in CERTIFICATE_NAMES: a bundle is a plain secret, "
                "a certificate's secret is read through CERTIFICATE_NAMES"
            )


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate the app settings; `SettingsError` lists every invalid one."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        try:
            value = setting.read(env)
        except SettingsError as error:
            problems.append(str(error))
            continue
        if setting.field is not None:
            values[setting.field] = value
    problems.extend(_conflicts(values))
    try:
        values["rate_limits"] = parse_rate_limits(env.get(RATE_LIMITS_VARIABLE, ""), values.get("cloud"))
    except SettingsError as error:
        problems.append(str(error))
    if problems:
        raise SettingsError("; ".join(problems))
    values["arm_endpoint"] = values["arm_endpoint"] or values["cloud"].arm_endpoint
    return Settings(**values)


def unbound_certificates(settings: Settings, names: Iterable[str]) -> list[str]:
    """The names CERTIFICATE_NAMES does not select (a request naming them is a mistake)."""
    return sorted(name for name in names if name not in settings.certificates)


# -- TRUSTSYNC_RATE_LIMITS -----------------------------------------------------------------------------------

# A limit: "250+25/s" (a bucket of 250 refilled at 25 a second) or "1200/h" (1,200 an hour: a bucket
# of 1,200 refilled over the hour); the period is a duration whose amount may be left out ("/s" = "/1s")
# or a fraction (a window scaled down for a test: "50/0.5s").
_LIMIT = re.compile(
    r"^(?P<capacity>\d{1,7}(?:\.\d+)?)(?:\+(?P<refill>\d{1,7}(?:\.\d+)?))?/(?P<period>(?:\d{1,6}(?:\.\d+)?)?[smhd])$",
    re.IGNORECASE | re.ASCII,
)


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
    seconds = float(period[:-1] or "1") * UNITS[period[-1].lower()].total_seconds()
    capacity = float(match["capacity"])
    refill = float(match["refill"] or match["capacity"])
    if capacity < 1 or refill <= 0 or seconds <= 0:
        raise SettingsError(f"{name}: a limit needs at least 1 token and a refill, not {spec!r}")
    return Limit(capacity, refill / seconds)
