"""Key Vault data plane, driven by the real azure-keyvault-certificates / -secrets clients."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.certificates import CertificateClient, CertificateContentType, CertificatePolicy
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from emulator import PEM, Emulator
from tests.emulator.helpers import FAST_RETRY, Chain, der, make_chain, raw, token_for


def test_first_request_is_challenged_with_a_resource_the_sdk_accepts(emu: Emulator) -> None:
    response = raw(emu, "GET", "/secrets/anything/?api-version=7.5")

    assert response.status == 401
    port = emu.url.rsplit(":", 1)[1]
    assert response.headers["www-authenticate"] == (
        f'Bearer authorization="https://login.windows.net/{emu.tenant_id}", resource="https://0.0.1:{port}"'
    )
    assert response.json() == {
        "error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}
    }
    assert emu.requests[-1].operation == "kv.challenge"


def test_sdk_follows_the_challenge_and_asks_for_the_challenge_audience(
    emu: Emulator, certificates: CertificateClient, chain: Chain
) -> None:
    emu.vault.import_certificate("tls", chain.pfx())

    certificates.get_certificate("tls")

    assert [r.operation for r in emu.requests] == ["kv.challenge", "identity.token", "kv.get_certificate"]
    assert emu.requests[1].audience == emu.keyvault_challenge_resource == emu.url.replace("127.0.0.1", "0.0.1")
    assert emu.requests[2].audience == emu.keyvault_challenge_resource
    assert emu.requests[2].path == "/certificates/tls/"  # "latest" reads carry a trailing slash


class _WrongScope:
    """A real credential asked for the wrong scope, whatever the client wants."""

    def __init__(self, scope: str) -> None:
        self._inner = ManagedIdentityCredential(**FAST_RETRY)
        self._scope = scope

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token: AccessToken = self._inner.get_token(self._scope)
        return token


def test_token_for_another_audience_is_refused(emu: Emulator, env: object, chain: Chain) -> None:
    emu.vault.import_certificate("tls", chain.pfx())
    client = CertificateClient(emu.keyvault_url, _WrongScope("https://management.azure.com/.default"), **FAST_RETRY)

    with pytest.raises(ClientAuthenticationError) as raised:
        client.get_certificate("tls")

    assert "AKV10022: Invalid audience" in str(raised.value)
    assert emu.count("kv.get_certificate", status=401) >= 1
    assert emu.count("kv.get_certificate", status=200) == 0


def test_tokens_the_emulator_did_not_issue_are_refused(emu: Emulator) -> None:
    kv = raw(emu, "GET", "/certificates?api-version=7.5", token="forged")
    arm = raw(emu, "GET", f"{emu.apim.resource_id}?api-version=2024-05-01", token="forged")

    assert (kv.status, arm.status) == (401, 401)
    assert "resource=" in kv.headers["www-authenticate"]  # Key Vault always re-challenges
    assert arm.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert [r.operation for r in emu.requests] == ["kv.list_certificates", "arm.get_service"]


def test_any_api_version_is_accepted_and_recorded(emu: Emulator, env: object, chain: Chain) -> None:
    emu.vault.import_certificate("tls", chain.pfx())
    client = CertificateClient(emu.keyvault_url, ManagedIdentityCredential(**FAST_RETRY), api_version="7.5")

    client.get_certificate("tls")

    assert {r.api_version for r in emu.requests if r.operation.startswith("kv.")} == {"7.5"}


def test_imported_pfx_exposes_the_leaf_only_as_cer(
    emu: Emulator, certificates: CertificateClient, chain: Chain
) -> None:
    imported = certificates.import_certificate("tls", chain.pfx())

    properties = imported.properties
    assert properties is not None
    assert bytes(imported.cer or b"") == der(chain.leaf)
    assert properties.x509_thumbprint == hashlib.sha1(der(chain.leaf), usedforsecurity=False).digest()
    assert imported.policy is not None
    assert imported.policy.content_type == CertificateContentType.pkcs12
    assert properties.expires_on == chain.leaf.not_valid_after_utc
    assert properties.not_before == chain.leaf.not_valid_before_utc
    assert imported.id == f"{emu.url}/certificates/tls/{properties.version}"
    assert imported.secret_id == f"{emu.url}/secrets/tls/{properties.version}"
    assert emu.vault.versions("tls") == [properties.version]


def test_bundle_fields_on_the_wire(emu: Emulator, chain: Chain) -> None:
    version = emu.vault.import_certificate("tls", chain.pfx())
    token = token_for(emu, emu.keyvault_challenge_resource)

    latest = raw(emu, "GET", "/certificates/tls/?api-version=7.5", token=token).json()
    pinned = raw(emu, "GET", f"/certificates/tls/{version}?api-version=7.5", token=token).json()

    x5t = base64.urlsafe_b64encode(hashlib.sha1(der(chain.leaf), usedforsecurity=False).digest()).rstrip(b"=").decode()
    assert latest["x5t"] == x5t
    assert base64.b64decode(latest["cer"]) == der(chain.leaf)
    assert latest["kid"] == f"{emu.url}/keys/tls/{version}"
    assert set(latest["attributes"]) >= {"enabled", "nbf", "exp", "created", "updated", "recoveryLevel"}
    assert latest["policy"]["secret_props"] == {"contentType": "application/x-pkcs12"}
    assert "policy" not in pinned  # only "latest" reads carry the policy


def test_pfx_secret_holds_key_and_full_chain_with_an_empty_password(
    emu: Emulator, certificates: CertificateClient, secrets: SecretClient, chain: Chain
) -> None:
    certificates.import_certificate("tls", chain.pfx(password=b"import-secret"), password="import-secret")

    secret = secrets.get_secret("tls")

    assert secret.properties.content_type == "application/x-pkcs12"
    assert secret.properties.managed is True
    assert secret.properties.key_id == f"{emu.url}/keys/tls/{secret.properties.version}"
    assert secret.value is not None
    for password in (None, b""):
        key, leaf, others = pkcs12.load_key_and_certificates(base64.b64decode(secret.value), password)
        assert key is not None
        assert leaf == chain.leaf
        assert set(others) == {chain.intermediate, chain.root}


def test_pem_secret_has_the_unencrypted_key_first_then_the_certificates(
    certificates: CertificateClient, secrets: SecretClient, chain: Chain
) -> None:
    policy = CertificatePolicy(issuer_name="Unknown", content_type=CertificateContentType.pem)
    imported = certificates.import_certificate("tls-pem", chain.pem(), policy=policy)

    assert imported.properties is not None
    secret = secrets.get_secret("tls-pem", imported.properties.version)

    assert secret.properties.content_type == "application/x-pem-file"
    assert secret.value is not None
    assert secret.value.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert x509.load_pem_x509_certificates(secret.value.encode()) == chain.certificates
    assert bytes(imported.cer or b"") == der(chain.leaf)


def test_the_leaf_is_the_certificate_of_the_key_whatever_the_order(emu: Emulator, chain: Chain) -> None:
    key = chain.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    shuffled = key + b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (chain.root, chain.leaf, chain.intermediate)
    )

    version = emu.vault.import_certificate("tls", shuffled, PEM)

    assert emu.vault.certificate("tls", version).cer == base64.b64encode(der(chain.leaf)).decode()


def test_versions_are_paged(emu: Emulator, certificates: CertificateClient, chain: Chain) -> None:
    imported = {emu.vault.import_certificate("tls", chain.pfx()) for _ in range(5)}

    listed = {v.version for v in certificates.list_properties_of_certificate_versions("tls")}

    assert listed == imported
    assert emu.count("kv.list_certificate_versions") == 3  # page size 2: 2 + 2 + 1


def test_next_link_carries_skiptoken_and_maxresults_and_is_null_on_the_last_page(emu: Emulator, chain: Chain) -> None:
    for _ in range(3):
        emu.vault.import_certificate("tls", chain.pfx())
    token = token_for(emu, emu.keyvault_challenge_resource)

    first = raw(emu, "GET", "/certificates/tls/versions?api-version=7.5", token=token).json()
    next_link: str = first["nextLink"]
    second = raw(emu, "GET", next_link.removeprefix(emu.url), token=token).json()

    assert next_link.startswith(f"{emu.url}/certificates/tls/versions?api-version=7.5&$skiptoken=")
    assert next_link.endswith("&maxresults=2")
    assert len(first["value"]) == 2
    assert len(second["value"]) == 1
    assert second["nextLink"] is None


def test_certificates_and_secret_versions_are_paged(
    emu: Emulator, certificates: CertificateClient, secrets: SecretClient, chain: Chain
) -> None:
    for name in ("a", "b", "c"):
        emu.vault.import_certificate(name, chain.pfx())
    emu.vault.import_certificate("a", chain.pfx())
    emu.vault.import_certificate("a", chain.pfx())

    names = [c.name for c in certificates.list_properties_of_certificates()]
    secret_versions = list(secrets.list_properties_of_secret_versions("a"))

    assert names == ["a", "b", "c"]
    assert emu.count("kv.list_certificates") == 2
    assert len(secret_versions) == 3
    assert all(v.managed for v in secret_versions)
    assert emu.count("kv.list_secret_versions") == 2


def test_smaller_maxresults_makes_smaller_pages(emu: Emulator, certificates: CertificateClient, chain: Chain) -> None:
    for name in ("a", "b", "c"):
        emu.vault.import_certificate(name, chain.pfx())

    assert len(list(certificates.list_properties_of_certificates(max_page_size=1))) == 3
    assert emu.count("kv.list_certificates") == 3


def test_disabled_version_secret_read_is_forbidden(
    emu: Emulator, certificates: CertificateClient, secrets: SecretClient, chain: Chain
) -> None:
    old = emu.vault.import_certificate("tls", chain.pfx())
    emu.vault.import_certificate("tls", chain.pfx())
    emu.vault.set_enabled("tls", old, False)

    with pytest.raises(HttpResponseError) as raised:
        secrets.get_secret("tls", old)

    assert raised.value.status_code == 403
    assert raised.value.response is not None
    assert json.loads(raised.value.response.text()) == {
        "error": {
            "code": "Forbidden",
            "message": "Operation get is not allowed on a disabled secret.",
            "innererror": {"code": "SecretDisabled"},
        }
    }
    old_certificate = certificates.get_certificate_version("tls", old)  # the certificate still reads
    assert old_certificate.properties is not None
    assert old_certificate.properties.enabled is False
    assert secrets.get_secret("tls").value  # the latest is enabled


def test_disabled_latest_version_is_forbidden_too(emu: Emulator, secrets: SecretClient, chain: Chain) -> None:
    latest = emu.vault.import_certificate("tls", chain.pfx(), enabled=False)

    with pytest.raises(HttpResponseError) as raised:
        secrets.get_secret("tls")

    assert raised.value.status_code == 403
    assert emu.vault.certificate("tls").version == latest


def test_missing_objects_answer_keyvault_404s(certificates: CertificateClient, secrets: SecretClient) -> None:
    with pytest.raises(ResourceNotFoundError) as certificate_missing:
        certificates.get_certificate("nope")
    with pytest.raises(ResourceNotFoundError) as secret_missing:
        secrets.get_secret("nope")

    assert certificate_missing.value.error is not None
    assert certificate_missing.value.error.code == "CertificateNotFound"
    assert secret_missing.value.error is not None
    assert secret_missing.value.error.code == "SecretNotFound"


def test_plain_secrets_are_not_managed(emu: Emulator, secrets: SecretClient) -> None:
    emu.vault.set_secret("api-key", "s3cret", content_type="text/plain")

    secret = secrets.get_secret("api-key")

    assert secret.value == "s3cret"
    assert secret.properties.content_type == "text/plain"
    assert not secret.properties.managed


def test_import_of_garbage_is_a_400(emu: Emulator, certificates: CertificateClient) -> None:
    with pytest.raises(HttpResponseError) as raised:
        certificates.import_certificate("tls", b"not a certificate")

    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "BadParameter"
    assert emu.vault.certificate_names() == []


def test_names_are_case_insensitive(emu: Emulator, certificates: CertificateClient, chain: Chain) -> None:
    emu.vault.import_certificate("My-Cert", chain.pfx())

    assert certificates.get_certificate("my-cert").name == "My-Cert"


def test_python_api_refuses_what_key_vault_refuses(emu: Emulator, chain: Chain) -> None:
    leaf_only = chain.leaf.public_bytes(serialization.Encoding.PEM)

    with pytest.raises(ValueError, match="private key"):
        emu.vault.import_certificate("tls", leaf_only, PEM)
    with pytest.raises(ValueError, match="names"):
        emu.vault.import_certificate("bad_name", chain.pfx())
    with pytest.raises(ValueError, match="password"):
        emu.vault.import_certificate("tls", chain.pfx(password=b"right"), password="wrong")


def test_rsa_chains_work_too(emu: Emulator, secrets: SecretClient) -> None:
    rsa_chain = make_chain("rsa.example", rsa_keys=True)
    emu.vault.import_certificate("rsa", rsa_chain.pem(), PEM)

    value = secrets.get_secret("rsa").value

    assert value is not None
    assert isinstance(serialization.load_pem_private_key(value.encode(), None), rsa.RSAPrivateKey)
    assert emu.vault.policy("rsa")["key_props"] == {
        "exportable": True,
        "kty": "RSA",
        "reuse_key": False,
        "key_size": 2048,
    }


def test_a_deleted_certificate_leaves_the_list_and_is_found_among_the_deleted(
    emu: Emulator, certificates: CertificateClient, secrets: SecretClient, chain: Chain
) -> None:
    version = emu.vault.import_certificate("tls", chain.pfx())
    emu.vault.import_certificate("other", chain.pfx())
    emu.vault.delete_certificate("TLS")  # names are case-insensitive

    deleted = certificates.get_deleted_certificate("tls")

    assert [c.name for c in certificates.list_properties_of_certificates()] == ["other"]
    assert deleted.name == "tls"
    assert deleted.properties is not None
    assert deleted.properties.version == version
    assert deleted.recovery_id == f"{emu.vault.url}/deletedcertificates/tls"
    assert deleted.deleted_on is not None
    assert deleted.scheduled_purge_date is not None
    assert (deleted.scheduled_purge_date - deleted.deleted_on).days == 90
    with pytest.raises(ResourceNotFoundError):
        list(certificates.list_properties_of_certificate_versions("tls"))
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret("tls", version)
    with pytest.raises(HttpResponseError) as reused:  # the name is taken until purged
        certificates.import_certificate("tls", chain.pfx())
    assert reused.value.status_code == 409
    assert reused.value.response is not None
    body = json.loads(reused.value.response.text())
    assert body["error"]["code"] == "Conflict"
    assert body["error"]["innererror"] == {"code": "ObjectIsDeletedButRecoverable"}
    assert "tls is currently in a deleted but recoverable state" in body["error"]["message"]

    emu.vault.purge_deleted_certificate("tls")
    with pytest.raises(ResourceNotFoundError) as purged:
        certificates.get_deleted_certificate("tls")
    assert purged.value.response is not None
    assert json.loads(purged.value.response.text()) == {
        "error": {"code": "CertificateNotFound", "message": "Deleted Certificate not found: tls"}
    }
    certificates.import_certificate("tls", chain.pfx())  # a purged name may be used again


def test_roles_on_named_certificates_only_answer_403_by_rbac_elsewhere(
    emu: Emulator, certificates: CertificateClient, secrets: SecretClient, chain: Chain
) -> None:
    emu.vault.import_certificate("tls", chain.pfx())
    emu.vault.import_certificate("other", chain.pfx())
    emu.vault.allow_only(["TLS"])

    assert len(list(certificates.list_properties_of_certificate_versions("tls"))) == 1
    assert secrets.get_secret("tls").value
    refused: dict[str, Any] = {}
    calls: dict[str, Callable[[], object]] = {
        "versions": lambda: list(certificates.list_properties_of_certificate_versions("other")),
        "misspelt": lambda: list(certificates.list_properties_of_certificate_versions("tsl")),
        "secret": lambda: secrets.get_secret("other"),
        "list": lambda: list(certificates.list_properties_of_certificates()),
        "deleted": lambda: certificates.get_deleted_certificate("tls"),
    }
    for what, call in calls.items():
        with pytest.raises(HttpResponseError) as raised:
            call()
        assert raised.value.status_code == 403, what
        assert raised.value.response is not None
        refused[what] = json.loads(raised.value.response.text())["error"]

    assert {error["code"] for error in refused.values()} == {"Forbidden"}
    assert {error["innererror"]["code"] for error in refused.values()} == {"ForbiddenByRbac"}
    assert "Action: 'Microsoft.KeyVault/vaults/certificates/read'" in refused["versions"]["message"]
    assert f"Resource: '{emu.vault.topic.lower()}/certificates/tsl'" in refused["misspelt"]["message"]
    assert "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'" in refused["secret"]["message"]
    assert "Action: 'Microsoft.KeyVault/vaults/deletedcertificates/read'" in refused["deleted"]["message"]
    emu.vault.allow_only(None)
    assert len(list(certificates.list_properties_of_certificates())) == 2


def test_updated_is_when_a_version_s_attributes_last_changed(
    emu: Emulator, certificates: CertificateClient, chain: Chain
) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    version = emu.vault.import_certificate("tls", chain.pfx(), enabled=False, created=created)
    (listed,) = certificates.list_properties_of_certificate_versions("tls")
    assert (listed.created_on, listed.updated_on) == (created, created)  # as Key Vault sets both at creation

    enabled_at = created + timedelta(days=2)
    emu.vault.set_enabled("tls", version, True, at=enabled_at)
    (listed,) = certificates.list_properties_of_certificate_versions("tls")
    assert (listed.enabled, listed.created_on, listed.updated_on) == (True, created, enabled_at)
