"""ARM for API Management, driven by the real azure-mgmt-apimanagement client."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, cast

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.mgmt.apimanagement import ApiManagementClient
from azure.mgmt.apimanagement.models import (
    CertificateContract,
    CertificateCreateOrUpdateParameters,
    GatewayCertificateAuthorityContract,
    KeyVaultContractCreateProperties,
)

from emulator import Emulator
from tests.emulator.helpers import FAST_RETRY, Chain, der, keyless_pfx, raw, token_for


def upload(data: bytes, password: str = "") -> CertificateCreateOrUpdateParameters:
    return CertificateCreateOrUpdateParameters(data=base64.b64encode(data).decode(), password=password)


def with_status(response: Any, deserialized: Any, headers: dict[str, str]) -> tuple[int, str, Any]:
    """``cls`` hook: the SDK hides the status and ETag, tests want them."""
    return response.http_response.status_code, headers["ETag"], deserialized


def put_certificate(
    arm: ApiManagementClient, emu: Emulator, certificate_id: str, data: bytes, **kwargs: Any
) -> tuple[int, str, CertificateContract]:
    """PUT returning (status, ETag header, contract)."""
    result: Any = arm.certificate.create_or_update(
        emu.apim.resource_group, emu.apim.name, certificate_id, upload(data), cls=with_status, **kwargs
    )
    return cast(tuple[int, str, CertificateContract], result)


def arm_token(emu: Emulator) -> str:
    return token_for(emu, "https://management.azure.com/")


def test_put_creates_then_updates_with_a_new_etag_each_time(
    emu: Emulator, arm: ApiManagementClient, chain: Chain
) -> None:
    pfx = keyless_pfx(chain.root)

    created = put_certificate(arm, emu, "root", pfx)
    updated = put_certificate(arm, emu, "root", pfx)

    assert (created[0], updated[0]) == (201, 200)
    assert created[1] != updated[1]
    assert created[1].startswith('"')
    assert created[1].endswith('="')
    contract = updated[2]
    assert contract.thumbprint == hashlib.sha1(der(chain.root), usedforsecurity=False).hexdigest().upper()
    assert contract.subject is not None
    assert contract.subject.startswith("OU=Testing CA #")  # most specific RDN first, like .NET
    assert contract.subject.endswith(", O=trustme v1.2.1")
    assert contract.expiration_date == chain.root.not_valid_after_utc
    stored = emu.apim.certificates["root"]
    assert stored.uploaded_pfx == pfx
    assert stored.had_private_key is False
    assert f'"{stored.etag}"' == updated[1]


def test_uploads_with_a_private_key_are_flagged(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    arm.certificate.create_or_update(emu.apim.resource_group, emu.apim.name, "leaf", upload(chain.pfx(b"pw"), "pw"))

    stored = emu.apim.certificates["leaf"]
    assert stored.had_private_key is True
    assert stored.thumbprint == hashlib.sha1(der(chain.leaf), usedforsecurity=False).hexdigest().upper()
    assert stored.subject.startswith("CN=svc.example, ")  # the leaf, the certificate of the key


def test_get_head_and_list_return_what_was_put(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    rg, name = emu.apim.resource_group, emu.apim.name
    _, etag, _ = put_certificate(arm, emu, "root", der(chain.root))

    got: Any = arm.certificate.get(rg, name, "root", cls=with_status)
    head_etag: Any = arm.certificate.get_entity_tag(rg, name, "root", cls=lambda _r, _d, headers: headers["ETag"])

    assert got[1] == head_etag == etag
    assert got[2].id == f"{emu.apim.resource_id}/certificates/root"
    assert [c.name for c in arm.certificate.list_by_service(rg, name)] == ["root"]
    assert arm.certificate.get_entity_tag(rg, name, "root") is True
    with pytest.raises(ResourceNotFoundError):
        arm.certificate.get_entity_tag(rg, name, "missing")


def test_certificate_list_is_paged_with_skip_and_top(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    for index in range(5):
        emu.apim.add_certificate(f"c{index}", der(chain.root))
    rg, name = emu.apim.resource_group, emu.apim.name

    assert [c.name for c in arm.certificate.list_by_service(rg, name)] == [f"c{i}" for i in range(5)]
    assert emu.count("arm.list_certificates") == 3  # page size 2
    emu.clear_requests()
    assert len(list(arm.certificate.list_by_service(rg, name, top=1))) == 5
    assert emu.count("arm.list_certificates") == 5
    first_page = raw(
        emu, "GET", f"{emu.apim.resource_id}/certificates?api-version=2024-05-01", token=arm_token(emu)
    ).json()
    assert first_page["count"] == 5
    assert first_page["nextLink"] == f"{emu.url}{emu.apim.resource_id}/certificates?api-version=2024-05-01&$skip=2"


def test_stale_if_match_is_412_and_changes_nothing(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    rg, name = emu.apim.resource_group, emu.apim.name
    _, stale, _ = put_certificate(arm, emu, "root", der(chain.root))
    _, current, _ = put_certificate(arm, emu, "root", der(chain.root))

    with pytest.raises(HttpResponseError) as raised:
        arm.certificate.create_or_update(rg, name, "root", upload(der(chain.intermediate)), if_match=stale)

    assert raised.value.status_code == 412
    assert raised.value.error is not None
    assert raised.value.error.code == "PreconditionFailed"
    assert f'"{emu.apim.certificates["root"].etag}"' == current
    assert emu.apim.certificates["root"].uploaded_pfx == der(chain.root)
    assert arm.certificate.create_or_update(rg, name, "root", upload(der(chain.intermediate)), if_match=current)
    assert arm.certificate.create_or_update(rg, name, "root", upload(der(chain.root)), if_match="*")


def test_if_match_star_does_not_create(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    with pytest.raises(HttpResponseError) as raised:
        arm.certificate.create_or_update(
            emu.apim.resource_group, emu.apim.name, "root", upload(der(chain.root)), if_match="*"
        )

    assert raised.value.status_code == 412
    assert emu.apim.certificates == {}


def test_delete_needs_if_match_and_answers_200_then_204(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    rg, name = emu.apim.resource_group, emu.apim.name
    stale = f'"{emu.apim.add_certificate("root", der(chain.root)).etag}"'
    emu.apim.add_certificate("root", der(chain.root))
    path = f"{emu.apim.resource_id}/certificates/root?api-version=2024-05-01"

    unconditional = raw(emu, "DELETE", path, token=arm_token(emu))
    with pytest.raises(HttpResponseError) as stale_delete:
        arm.certificate.delete(rg, name, "root", if_match=stale)
    arm.certificate.delete(rg, name, "root", if_match="*")
    arm.certificate.delete(rg, name, "root", if_match="*")

    assert unconditional.status == 400
    assert unconditional.json()["error"]["code"] == "ValidationError"
    assert stale_delete.value.status_code == 412
    assert [r.status for r in emu.requests if r.operation == "arm.delete_certificate"] == [400, 412, 200, 204]
    assert emu.apim.certificates == {}


@pytest.mark.parametrize("certificate_id", ["bad:id", "a" * 81, "star*"])
def test_invalid_certificate_ids_are_400(emu: Emulator, certificate_id: str, chain: Chain) -> None:
    body = json.dumps({"properties": {"data": base64.b64encode(der(chain.root)).decode()}}).encode()
    path = f"{emu.apim.resource_id}/certificates/{certificate_id.replace('*', '%2A')}?api-version=2024-05-01"

    response = raw(emu, "PUT", path, token=arm_token(emu), body=body)

    assert response.status == 400
    assert response.json()["error"]["code"] == "ValidationError"
    assert emu.apim.certificates == {}


def test_wrong_password_and_garbage_are_400_with_a_clear_message(
    emu: Emulator, arm: ApiManagementClient, chain: Chain
) -> None:
    rg, name = emu.apim.resource_group, emu.apim.name

    with pytest.raises(HttpResponseError) as wrong_password:
        arm.certificate.create_or_update(rg, name, "leaf", upload(chain.pfx(b"right"), "wrong"))
    with pytest.raises(HttpResponseError) as garbage:
        arm.certificate.create_or_update(rg, name, "leaf", upload(b"garbage"))

    assert wrong_password.value.status_code == garbage.value.status_code == 400
    assert "password" in str(wrong_password.value)
    assert garbage.value.error is not None
    assert garbage.value.error.code == "ValidationError"
    assert emu.apim.certificates == {}


def test_key_vault_referenced_certificate(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    version = emu.vault.import_certificate("tls", chain.pfx())
    parameters = CertificateCreateOrUpdateParameters(
        key_vault=KeyVaultContractCreateProperties(secret_identifier=f"{emu.url}/secrets/tls/{version}")
    )

    contract = arm.certificate.create_or_update(emu.apim.resource_group, emu.apim.name, "kv", parameters)

    assert contract.thumbprint == hashlib.sha1(der(chain.leaf), usedforsecurity=False).hexdigest().upper()
    assert contract.key_vault is not None
    assert contract.key_vault.last_status is not None
    assert contract.key_vault.last_status.code == "Success"


def test_gateway_certificate_authorities_lifecycle(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    rg, name = emu.apim.resource_group, emu.apim.name
    emu.apim.add_gateway("gw1")
    for certificate_id, certificate in (("root", chain.root), ("inter", chain.intermediate), ("other", chain.leaf)):
        emu.apim.add_certificate(certificate_id, der(certificate))

    created: Any = arm.gateway_certificate_authority.create_or_update(
        rg, name, "gw1", "root", GatewayCertificateAuthorityContract(is_trusted=True), cls=with_status
    )
    arm.gateway_certificate_authority.create_or_update(
        rg, name, "gw1", "inter", GatewayCertificateAuthorityContract(is_trusted=False)
    )
    arm.gateway_certificate_authority.create_or_update(rg, name, "gw1", "other", GatewayCertificateAuthorityContract())
    updated: Any = arm.gateway_certificate_authority.create_or_update(
        rg, name, "gw1", "inter", GatewayCertificateAuthorityContract(is_trusted=True), cls=with_status
    )
    listed = {ca.name: ca.is_trusted for ca in arm.gateway_certificate_authority.list_by_service(rg, name, "gw1")}
    got = arm.gateway_certificate_authority.get(rg, name, "gw1", "root")
    arm.gateway_certificate_authority.delete(rg, name, "gw1", "other", if_match="*")

    assert (created[0], updated[0]) == (201, 200)
    assert listed == {"root": True, "inter": True, "other": False}
    assert emu.count("arm.list_gateway_cas") == 2  # paged
    assert got.id == f"{emu.apim.resource_id}/gateways/gw1/certificateAuthorities/root"
    assert emu.apim.gateway_cas("gw1") == {"root": True, "inter": True}
    assert arm.gateway_certificate_authority.get_entity_tag(rg, name, "gw1", "root") is True


def test_gateway_ca_needs_an_existing_gateway_and_certificate(
    emu: Emulator, arm: ApiManagementClient, chain: Chain
) -> None:
    rg, name = emu.apim.resource_group, emu.apim.name
    emu.apim.add_gateway("gw1")
    emu.apim.add_certificate("root", der(chain.root))
    trusted = GatewayCertificateAuthorityContract(is_trusted=True)

    with pytest.raises(ResourceNotFoundError) as no_gateway:
        arm.gateway_certificate_authority.create_or_update(rg, name, "nope", "root", trusted)
    with pytest.raises(ResourceNotFoundError) as no_certificate:
        arm.gateway_certificate_authority.create_or_update(rg, name, "gw1", "nope", trusted)

    assert "Gateway not found" in str(no_gateway.value)
    assert "Certificate not found" in str(no_certificate.value)
    assert emu.apim.gateway_cas("gw1") == {}


def test_a_certificate_used_by_a_gateway_cannot_be_deleted(
    emu: Emulator, arm: ApiManagementClient, chain: Chain
) -> None:
    rg, name = emu.apim.resource_group, emu.apim.name
    emu.apim.add_gateway("gw1")
    emu.apim.add_certificate("root", der(chain.root))
    emu.apim.set_gateway_ca("gw1", "root", trusted=True)

    with pytest.raises(HttpResponseError) as raised:
        arm.certificate.delete(rg, name, "root", if_match="*")
    arm.gateway_certificate_authority.delete(rg, name, "gw1", "root", if_match="*")
    arm.certificate.delete(rg, name, "root", if_match="*")

    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "ValidationError"
    assert "gw1" in str(raised.value)
    assert emu.apim.certificates == {}


def test_gateways_list_only_self_hosted_unless_asked(emu: Emulator, arm: ApiManagementClient) -> None:
    rg, name = emu.apim.resource_group, emu.apim.name
    for gateway in ("gw-c", "gw-a", "gw-b"):
        emu.apim.add_gateway(gateway, description=f"{gateway} desc")

    default = [g.name for g in arm.gateway.list_by_service(rg, name)]
    emu.apim.include_managed_gateway = True
    with_managed = [g.name for g in arm.gateway.list_by_service(rg, name)]

    assert default == ["gw-a", "gw-b", "gw-c"]
    assert with_managed == ["gw-a", "gw-b", "gw-c", "managed"]
    assert arm.gateway.get(rg, name, "gw-b").description == "gw-b desc"
    with pytest.raises(ResourceNotFoundError):
        arm.gateway.get(rg, name, "gw-z")


def test_service_and_several_services(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    other = emu.add_apim_service(emu.apim.subscription_id, "rg-other", "apim-other")
    other.add_certificate("only-here", der(chain.root))

    service = arm.api_management_service.get(emu.apim.resource_group, emu.apim.name)

    assert service.id == emu.apim.resource_id
    assert [c.name for c in arm.certificate.list_by_service("rg-other", "apim-other")] == ["only-here"]
    assert list(arm.certificate.list_by_service(emu.apim.resource_group, emu.apim.name)) == []
    with pytest.raises(ResourceNotFoundError) as missing:
        arm.certificate.list_by_service("rg-other", "apim-missing").next()
    assert missing.value.error is not None
    assert missing.value.error.code == "ResourceNotFound"


@pytest.mark.parametrize(
    ("version", "code"),
    [("2022-08-01", "NoRegisteredProviderFound"), ("2022-8", "InvalidApiVersionParameter")],
)
def test_only_the_offered_api_versions_are_served(emu: Emulator, env: object, version: str, code: str) -> None:
    client = ApiManagementClient(
        ManagedIdentityCredential(**FAST_RETRY),
        emu.apim.subscription_id,
        base_url=emu.arm_endpoint,
        api_version=version,
        **FAST_RETRY,
    )

    with pytest.raises(HttpResponseError) as raised:
        client.gateway.get(emu.apim.resource_group, emu.apim.name, "gw1")

    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == code
    assert "2024-05-01" in str(raised.value.error.message)  # ARM names what it offers


def test_token_audience_must_be_the_configured_arm_audience(monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(arm_audience="https://management.chinacloudapi.cn/") as emu:
        for setting, value in emu.environ().items():
            monkeypatch.setenv(setting, value)
        emu.apim.add_gateway("gw1")
        credential = ManagedIdentityCredential(**FAST_RETRY)
        public_cloud = ApiManagementClient(credential, emu.apim.subscription_id, base_url=emu.url, **FAST_RETRY)
        china = ApiManagementClient(
            credential,
            emu.apim.subscription_id,
            base_url=emu.url,
            credential_scopes=["https://management.chinacloudapi.cn/.default"],
            **FAST_RETRY,
        )

        with pytest.raises(ClientAuthenticationError) as raised:
            public_cloud.gateway.get(emu.apim.resource_group, emu.apim.name, "gw1")
        gateway = china.gateway.get(emu.apim.resource_group, emu.apim.name, "gw1")

        assert "InvalidAuthenticationTokenAudience" in str(raised.value)
        assert gateway.name == "gw1"
        assert emu.requests[-1].audience == "https://management.chinacloudapi.cn"
        assert emu.environ()["AZURE_CLOUD"] == "AzureChinaCloud"


def test_missing_token_is_401_with_arm_envelope(emu: Emulator) -> None:
    response = raw(emu, "GET", f"{emu.apim.resource_id}?api-version=2024-05-01")

    assert response.status == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert "www-authenticate" in response.headers
