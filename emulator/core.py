"""`Emulator`: Key Vault + ARM (one HTTPS server, routed by path) and the managed-identity endpoint.

Both servers bind 127.0.0.1 on ephemeral ports when the Emulator is constructed, so URLs and the
Python API are usable before `start()`; `start()` begins serving, `stop()` releases everything.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Final
from urllib.parse import urlsplit

from .apim import ApimService
from .apim_http import API_VERSION as ARM_API_VERSION
from .apim_http import BACKEND_API_VERSION, ArmApi
from .certs import CertificateMaterial
from .eventgrid import vault_topic
from .faults import Faults
from .identity import TOKEN_PATH, IdentityEndpoint, IssuedToken, TokenIssuer
from .keyvault import CertificateVersion, Vault
from .keyvault_http import KeyVaultApi
from .records import Recorder, RequestRecord
from .server import Call, Dispatcher, LoopbackServer
from .throttling import ARM_KINDS, ArmLimits, KeyVaultLimits
from .tls import TlsMaterial
from .wire import Request

DEFAULT_SUBSCRIPTION_ID: Final = "00000000-0000-0000-0000-000000000000"
DEFAULT_RESOURCE_GROUP: Final = "rg-emulated"
DEFAULT_SERVICE_NAME: Final = "apim-emulated"
DEFAULT_VAULT_NAME: Final = "emulated-vault"
DEFAULT_TENANT_ID: Final = "72f988bf-0000-4000-8000-00000000e417"
AZURE_ARM_AUDIENCE: Final = "https://management.azure.com/"
_CLOUD_BY_ARM_HOST: Final = {
    "management.azure.com": "AzureCloud",
    "management.chinacloudapi.cn": "AzureChinaCloud",
    "management.usgovcloudapi.net": "AzureUSGovernment",
}


class Emulator:
    def __init__(
        self,
        *,
        page_size: int = 25,
        arm_audience: str = AZURE_ARM_AUDIENCE,
        vault_name: str = DEFAULT_VAULT_NAME,
        tenant_id: str = DEFAULT_TENANT_ID,
        subscription_id: str = DEFAULT_SUBSCRIPTION_ID,
        resource_group: str = DEFAULT_RESOURCE_GROUP,
        service_name: str = DEFAULT_SERVICE_NAME,
        identity_header: str | None = None,
        token_lifetime: int = 24 * 3600,
        user_assigned_client_ids: Iterable[str] | None = None,
        latency: float = 0.0,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        if token_lifetime < 3600:
            raise ValueError("token_lifetime must be at least an hour, like real managed-identity tokens")
        self.page_size = page_size
        self.arm_audience = arm_audience
        self.tenant_id = tenant_id
        self.latency = latency  # seconds added to every Key Vault / ARM request (Key Vault's challenge too)
        self.identity_latency = 0.0  # seconds added to every managed-identity token request
        # The Microsoft.ApiManagement api-versions this cloud's Resource Manager offers (a sovereign
        # cloud may lag behind the public one).
        # A cloud without the backends' preview: set (ARM_API_VERSION,) alone.
        self.arm_api_versions: tuple[str, ...] = (ARM_API_VERSION, BACKEND_API_VERSION)
        self.arm_limits: ArmLimits | None = None  # ARM's request limits (emulator.throttling); off by default
        self.keyvault_limits: KeyVaultLimits | None = None  # Key Vault's; off by default
        self.recorder = Recorder()
        self.faults = Faults()
        self.tokens = TokenIssuer(token_lifetime, user_assigned_client_ids)
        self.identity_header = identity_header or secrets.token_urlsafe(24)
        self._services_lock = threading.Lock()
        self._services: dict[tuple[str, str, str], ApimService] = {}
        self.vault = Vault(name=vault_name, topic=vault_topic(subscription_id, resource_group, vault_name))
        self.apim = self.add_apim_service(subscription_id, resource_group, service_name)

        self._tls = TlsMaterial()
        try:
            keyvault = KeyVaultApi(
                self.vault,
                self.tokens,
                tenant_id=tenant_id,
                page_size=lambda: self.page_size,
                limits=lambda: self.keyvault_limits,
            )
            arm = ArmApi(
                self.apim_service,
                self.tokens,
                audience=lambda: self.arm_audience,
                tenant_id=tenant_id,
                page_size=lambda: self.page_size,
                base_url=lambda: self.url,
                offered_versions=lambda: self.arm_api_versions,
                limits=lambda: self.arm_limits,
            )

            def resolve_https(request: Request) -> Call:
                # One host serves both: ARM paths start with /subscriptions, the rest is the vault.
                if request.path.lower().startswith("/subscriptions/"):
                    return arm.resolve(request)
                return keyvault.resolve(request)

            self._https = LoopbackServer(
                Dispatcher(resolve_https, self.recorder, self.faults, lambda: self.latency), self._tls.server_context()
            )
            identity = IdentityEndpoint(self.tokens, self.identity_header)
            self._identity = LoopbackServer(
                Dispatcher(identity.resolve, self.recorder, self.faults, lambda: self.identity_latency)
            )
        except BaseException:
            self._tls.remove_bundle()
            raise
        self.vault.url = self.url
        self._keyvault = keyvault

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Emulator:
        self._https.start()
        self._identity.start()
        return self

    def stop(self) -> None:
        self._https.stop()
        self._identity.stop()
        self._tls.remove_bundle()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Empties the vault and every APIM service and forgets faults and request records, keeping the
        servers, their ports and the issued tokens: many tests can share one running emulator (and the
        product's warm clients) without seeing each other's state."""
        self.faults.clear()
        self.vault.clear()
        with self._services_lock:
            services = list(self._services.values())
        for service in services:
            service.clear()
        self.latency = self.identity_latency = 0.0
        self.arm_limits = self.keyvault_limits = None
        self.recorder.clear()

    # -- where things are ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``: Key Vault and ARM share it."""
        return self._https.url

    @property
    def keyvault_url(self) -> str:
        return self.url

    @property
    def arm_endpoint(self) -> str:
        return self.url

    @property
    def keyvault_challenge_resource(self) -> str:
        """The audience Key Vault tokens must have: ``https://0.0.1:PORT``."""
        return self._keyvault.challenge_resource

    @property
    def ca_bundle_path(self) -> str:
        return self._tls.ca_bundle_path

    @property
    def ca_pem(self) -> bytes:
        return self._tls.ca_pem

    @property
    def listening_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket: always 127.0.0.1."""
        return [self._https.address, self._identity.address]

    @property
    def identity_endpoint(self) -> str:
        return self._identity.url + TOKEN_PATH

    def environ(self, **overrides: str) -> dict[str, str]:
        """App settings and SDK environment that point the product at this emulator."""
        cloud = _CLOUD_BY_ARM_HOST.get(urlsplit(self.arm_audience).hostname or "", "AzureCloud")
        environment = {
            "KEYVAULT_URL": self.keyvault_url,
            "APIM_RESOURCE_ID": self.apim.resource_id,
            "ARM_ENDPOINT": self.arm_endpoint,
            "AZURE_CLOUD": cloud,
            "APIM_GATEWAYS": "*",
            "CERTIFICATE_NAMES": "*",
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "REQUESTS_CA_BUNDLE": self.ca_bundle_path,
            "NO_PROXY": "127.0.0.1,localhost",
            # The limits the product's pacer models: the ones emulated (none while they are off).
            "TRUSTSYNC_RATE_LIMITS": self.rate_limits,
        }
        environment.update(overrides)
        return environment

    @property
    def rate_limits(self) -> str:
        """The emulated limits, written as the product's ``TRUSTSYNC_RATE_LIMITS`` reads them."""
        limits = self.arm_limits.settings() if self.arm_limits else {f"arm-{kind}": "none" for kind in ARM_KINDS}
        limits["keyvault"] = self.keyvault_limits.setting() if self.keyvault_limits else "none"
        return ",".join(f"{kind}={limit}" for kind, limit in limits.items())

    # -- APIM services ---------------------------------------------------------------------------

    def add_apim_service(self, subscription_id: str, resource_group: str, name: str) -> ApimService:
        service = ApimService(subscription_id, resource_group, name)
        service.key_vault_resolver = self._resolve_key_vault_secret
        key = (subscription_id.lower(), resource_group.lower(), name.lower())
        with self._services_lock:
            if key in self._services:
                raise ValueError(f"APIM service {service.resource_id} exists")
            self._services[key] = service
        return service

    def apim_service(self, subscription_id: str, resource_group: str, name: str) -> ApimService | None:
        with self._services_lock:
            return self._services.get((subscription_id.lower(), resource_group.lower(), name.lower()))

    def _resolve_key_vault_secret(self, identifier: str) -> CertificateMaterial | None:
        parts = urlsplit(identifier)
        segments = parts.path.strip("/").split("/")
        if (
            f"{parts.scheme}://{parts.netloc}".lower() != self.url
            or len(segments) not in (2, 3)
            or segments[0] != "secrets"
        ):
            return None
        stored = self.vault.secret(segments[1], segments[2] if len(segments) == 3 else None)
        return stored.material if isinstance(stored, CertificateVersion) and stored.enabled else None

    # -- what happened ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request served so far, in completion order."""
        return self.recorder.records

    def clear_requests(self) -> None:
        self.recorder.clear()

    def count(self, operation: str | None = None, *, writes: bool | None = None, status: int | None = None) -> int:
        return self.recorder.count(operation, writes=writes, status=status)

    @property
    def max_in_flight(self) -> int:
        """Peak number of requests being served at once (all servers) since start or clear_requests()."""
        return self.recorder.max_in_flight

    @property
    def issued_tokens(self) -> list[IssuedToken]:
        return self.tokens.issued
