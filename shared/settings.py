"""Configuration: app settings in, a validated and immutable `Settings` out.

Pure: reads a plain mapping (``os.environ`` in production) and imports nothing from ``azure.*``.
Every error names the setting at fault, because the first person to read it is an operator
looking at the Function App's configuration blade.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

ALL: Final = "*"
MANAGED_GATEWAY: Final = "managed"  # APIM's own gateway; never a self-hosted one


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Cloud:
    """The endpoints that differ between Azure's clouds."""

    name: str
    arm_endpoint: str
    authority_host: str
    keyvault_suffix: str

    @property
    def arm_scope(self) -> str:
        return self.arm_endpoint.rstrip("/") + "/.default"


CLOUDS: Final[Mapping[str, Cloud]] = {
    cloud.name: cloud
    for cloud in (
        Cloud("AzureCloud", "https://management.azure.com", "login.microsoftonline.com", "vault.azure.net"),
        Cloud("AzureChinaCloud", "https://management.chinacloudapi.cn", "login.chinacloudapi.cn", "vault.azure.cn"),
        Cloud(
            "AzureUSGovernment",
            "https://management.usgovcloudapi.net",
            "login.microsoftonline.us",
            "vault.usgovcloudapi.net",
        ),
    )
}


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
        "TRUST_INTERMEDIATES",
        "true",
        "isTrusted for intermediates (roots are always trusted); false = chain-building only",
    ),
    Setting("AZURE_CLOUD", "AzureCloud", "AzureCloud | AzureChinaCloud | AzureUSGovernment"),
    Setting("AZURE_CLIENT_ID", "", "Client id of the user-assigned managed identity; empty = system-assigned"),
    Setting("ARM_ENDPOINT", "", "Overrides the cloud's Resource Manager endpoint (Azure Stack, emulator)"),
    Setting("AUDIT_SCHEDULE", "0 0 */6 * * *", "NCRONTAB schedule of the drift audit (read by the Functions host)"),
    Setting("AUDIT_REMEDIATE", "false", "true = the drift audit also repairs the drift it finds"),
    # 12: an event's writes (a 3-CA chain on the 25 gateways APIM allows: 78) fit ARM's 200-write
    # burst at any concurrency, so the limit only sets how fast a long remediation drains the bucket.
    # 12 in flight at APIM's write latency (about a second) is about 12 writes/s against the 10/s
    # refill: the burst lasts ~100 s (1,200 writes) before a 429, and Retry-After paces the rest.
    # Reads (250 burst, 25/s) are a few dozen ARM calls a run. And more would not be faster: at 12,
    # the worker's CPU per call is already what bounds a run (bench/README.md).
    Setting(
        "MAX_CONCURRENCY",
        "12",
        "Most Azure calls in flight at once; 12 keeps a long remediation near ARM's 10 writes/s refill",
    ),
)
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

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.name}"
        )


@dataclass(frozen=True)
class Binding:
    """One vault's certificates trusted on one APIM service's gateways."""

    keyvault_url: str
    certificates: Selection
    apim: ApimService
    gateways: Selection

    @property
    def vault_host(self) -> str:
        """``host[:port]`` in lower case: what identifies the vault in event ids."""
        return urlsplit(self.keyvault_url).netloc.lower()


@dataclass(frozen=True)
class Settings:
    bindings: tuple[Binding, ...]
    trust_intermediates: bool
    cloud: Cloud
    arm_endpoint: str
    client_id: str | None
    audit_schedule: str
    audit_remediate: bool
    max_concurrency: int


_APIM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[-\w.()]{1,90})"
    r"/providers/Microsoft\.ApiManagement/service/(?P<name>[a-zA-Z][a-zA-Z0-9-]{0,49})/?$",
    re.IGNORECASE,
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_KEYVAULT_OBJECT_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_GATEWAY_ID = re.compile(r"^[^*#&+:<>?/\\%]{1,80}$")
_NCRONTAB = re.compile(r"^\S+( \S+){5}$")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _value(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "").strip()
    if raw:
        return raw
    default = _DEFAULTS[name]
    if default is None:
        raise SettingsError(f"{name} is required ({_describe(name)})")
    return default


def _describe(name: str) -> str:
    return next(s.description for s in SETTINGS if s.name == name)


def parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _parse_https_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        raise SettingsError(f"{name} must be an https:// URL, not {raw!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError(f"{name} must be the endpoint alone, without a path or query: {raw!r}")
    return f"https://{parts.netloc.lower()}"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_keyvault_url(raw: str, cloud: Cloud) -> str:
    url = _parse_https_url("KEYVAULT_URL", raw)
    host = urlsplit(url).hostname or ""
    # The most common sovereign-cloud mistake: a vault of one cloud with the credentials of another.
    for other in CLOUDS.values():
        if other != cloud and host.endswith("." + other.keyvault_suffix):
            raise SettingsError(f"KEYVAULT_URL {raw!r} is a vault in {other.name}, but AZURE_CLOUD is {cloud.name}")
    if not _is_ip_literal(host) and "." not in host:
        raise SettingsError(f"KEYVAULT_URL must name the vault's full host name, not {raw!r}")
    return url


def parse_apim_resource_id(raw: str) -> ApimService:
    match = _APIM_ID.match(raw.strip())
    if not match:
        raise SettingsError(
            "APIM_RESOURCE_ID must look like /subscriptions/<guid>/resourceGroups/<rg>"
            f"/providers/Microsoft.ApiManagement/service/<name>, not {raw!r}"
        )
    return ApimService(match["sub"], match["rg"], match["name"])


def parse_selection(name: str, raw: str, pattern: re.Pattern[str]) -> Selection:
    if raw.strip() == ALL:
        return Selection(None)
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise SettingsError(f"{name} has an empty entry: {raw!r} (use * for all)")
    bad = [item for item in items if item == ALL or not pattern.match(item)]
    if bad:
        raise SettingsError(f"{name} has invalid names: {', '.join(map(repr, bad))}")
    return Selection(frozenset(items))


def parse_gateways(raw: str) -> Selection:
    selection = parse_selection("APIM_GATEWAYS", raw, _GATEWAY_ID)
    if selection.names is not None and MANAGED_GATEWAY in {n.lower() for n in selection.names}:
        raise SettingsError("APIM_GATEWAYS must not name 'managed': it is APIM's own gateway, not a self-hosted one")
    return selection


def is_keyvault_object_name(name: str) -> bool:
    return bool(_KEYVAULT_OBJECT_NAME.match(name))


def parse_certificate_names(raw: str) -> Selection:
    return parse_selection("CERTIFICATE_NAMES", raw, _KEYVAULT_OBJECT_NAME)


def parse_cloud(raw: str) -> Cloud:
    for cloud in CLOUDS.values():
        if cloud.name.lower() == raw.strip().lower():
            return cloud
    raise SettingsError(f"AZURE_CLOUD must be one of {', '.join(CLOUDS)}, not {raw!r}")


def _parse_int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
    return value


def load_settings(env: Mapping[str, str]) -> Settings:
    """Validate the flat app settings (one binding) into `Settings`."""
    cloud = parse_cloud(_value(env, "AZURE_CLOUD"))
    binding = Binding(
        keyvault_url=parse_keyvault_url(_value(env, "KEYVAULT_URL"), cloud),
        certificates=parse_certificate_names(_value(env, "CERTIFICATE_NAMES")),
        apim=parse_apim_resource_id(_value(env, "APIM_RESOURCE_ID")),
        gateways=parse_gateways(_value(env, "APIM_GATEWAYS")),
    )
    arm_override = _value(env, "ARM_ENDPOINT")
    client_id = _value(env, "AZURE_CLIENT_ID") or None
    if client_id is not None and not _GUID.match(client_id):
        raise SettingsError(f"AZURE_CLIENT_ID must be a client id (GUID), not {client_id!r}")
    schedule = _value(env, "AUDIT_SCHEDULE")
    if not _NCRONTAB.match(schedule):
        raise SettingsError(f"AUDIT_SCHEDULE must be a six-field NCRONTAB expression, not {schedule!r}")
    return Settings(
        bindings=(binding,),
        trust_intermediates=parse_bool("TRUST_INTERMEDIATES", _value(env, "TRUST_INTERMEDIATES")),
        cloud=cloud,
        arm_endpoint=_parse_https_url("ARM_ENDPOINT", arm_override) if arm_override else cloud.arm_endpoint,
        client_id=client_id,
        audit_schedule=schedule,
        audit_remediate=parse_bool("AUDIT_REMEDIATE", _value(env, "AUDIT_REMEDIATE")),
        max_concurrency=_parse_int("MAX_CONCURRENCY", _value(env, "MAX_CONCURRENCY"), 1, 64),
    )


def unbound_certificates(settings: Settings, names: Iterable[str]) -> list[str]:
    """The names no binding selects (a request naming them is a mistake)."""
    return sorted(name for name in names if not any(name in b.certificates for b in settings.bindings))


def setting_names() -> Iterable[str]:
    return (s.name for s in SETTINGS)
