"""Key Vault adapter: translates the SDK's certificate and secret reads into domain values.

Reads only. A secret value is returned to the caller and never logged, kept or repeated in errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import TokenCredential
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.secrets import SecretClient

from shared.desired import VersionInfo
from shared.errors import AzureCallError, NotFoundError, translated


@dataclass(frozen=True)
class SecretValue:
    value: str = field(repr=False)  # the PFX or PEM, private key included: never log it
    content_type: str | None


class KeyVault:
    def __init__(self, vault_url: str, credential: TokenCredential, **client_options: Any) -> None:
        self.vault_url = vault_url
        self._certificates = CertificateClient(vault_url, credential, **client_options)
        self._secrets = SecretClient(vault_url, credential, **client_options)

    def certificate_names(self) -> list[str]:
        with translated(f"list certificates of {self.vault_url}"):
            return [
                props.name for props in self._certificates.list_properties_of_certificates() if props.name is not None
            ]

    def versions(self, name: str) -> list[VersionInfo]:
        try:
            with translated(f"list versions of certificate {name}"):
                listed = list(self._certificates.list_properties_of_certificate_versions(name))
        except NotFoundError:
            listed = []
        found = [
            VersionInfo(
                version=props.version,
                enabled=bool(props.enabled),
                created=props.created_on,
                expires=props.expires_on,
                leaf_thumbprint=props.x509_thumbprint.hex().upper() if props.x509_thumbprint else None,
                not_before=props.not_before,
            )
            for props in listed
            if props.version is not None
        ]
        if not found:
            raise NotFoundError(f"certificate {name} does not exist in {self.vault_url}", status=404)
        return found

    def secret(self, name: str, version: str) -> SecretValue:
        with translated(f"read the secret of certificate {name} version {version}"):
            secret = self._secrets.get_secret(name, version)
        if secret.value is None:
            raise AzureCallError(f"the secret of certificate {name} version {version} has no value")
        return SecretValue(secret.value, secret.properties.content_type)
