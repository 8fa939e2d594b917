"""Local Azure emulator for APIM Trust Sync's tests and demos (dev-only, never deployed).

Key Vault data plane and ARM for API Management over HTTPS on 127.0.0.1 (with the emulator's own
CA), plus the App Service managed-identity endpoint over HTTP, faithful enough for the real Azure
SDK clients to run against it unmodified::

    with Emulator(page_size=2) as emu:
        os.environ.update(emu.environ())
        ...
"""

from .apim import ApimService, Gateway, GatewayCertificateAuthority, StoredCertificate
from .certs import PEM, PKCS12
from .core import Emulator
from .eventgrid import to_cloud_event
from .faults import Fault
from .identity import IssuedToken
from .keyvault import CertificateVersion, SecretVersion, Vault
from .records import RequestRecord

__all__ = [
    "PEM",
    "PKCS12",
    "ApimService",
    "CertificateVersion",
    "Emulator",
    "Fault",
    "Gateway",
    "GatewayCertificateAuthority",
    "IssuedToken",
    "RequestRecord",
    "SecretVersion",
    "StoredCertificate",
    "Vault",
    "to_cloud_event",
]
