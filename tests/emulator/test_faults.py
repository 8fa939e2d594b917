"""Fault injection: throttling, server errors, dropped connections, lost responses, delays."""

from __future__ import annotations

import base64

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.apimanagement import ApiManagementClient
from azure.mgmt.apimanagement.models import CertificateCreateOrUpdateParameters

from emulator import Emulator
from emulator.faults import Faults
from tests.emulator.helpers import FAST_RETRY, Chain, der, raw, token_for


def no_retry_arm(emu: Emulator, credential: ManagedIdentityCredential) -> ApiManagementClient:
    return ApiManagementClient(credential, emu.apim.subscription_id, base_url=emu.arm_endpoint, retry_total=0)


def put_root(client: ApiManagementClient, emu: Emulator, chain: Chain) -> None:
    data = CertificateCreateOrUpdateParameters(data=base64.b64encode(der(chain.root)).decode())
    client.certificate.create_or_update(emu.apim.resource_group, emu.apim.name, "root", data)


def test_429_with_retry_after_is_absorbed_by_the_sdk(emu: Emulator, arm: ApiManagementClient) -> None:
    emu.apim.add_gateway("gw1")
    emu.faults.add("arm.get_gateway", status=429, retry_after=0.2)

    gateway = arm.gateway.get(emu.apim.resource_group, emu.apim.name, "gw1")

    throttled, served = [r for r in emu.requests if r.operation == "arm.get_gateway"]
    assert gateway.name == "gw1"
    assert (throttled.status, throttled.faulted, served.status) == (429, True, 200)
    assert served.started - throttled.finished >= 0.15  # the SDK waited for Retry-After (no backoff configured)


def test_fault_envelopes_follow_the_service(emu: Emulator, chain: Chain) -> None:
    emu.faults.add("arm.get_service", status=429, retry_after=7)
    emu.faults.add("kv.get_certificate", status=404)
    emu.faults.add("kv.get_secret", status=503, retry_after=1)
    emu.vault.import_certificate("tls", chain.pfx())
    arm_token = token_for(emu, "https://management.azure.com")
    kv_token = token_for(emu, emu.keyvault_challenge_resource)

    throttled = raw(emu, "GET", f"{emu.apim.resource_id}?api-version=2024-05-01", token=arm_token)
    missing = raw(emu, "GET", "/certificates/tls/?api-version=7.5", token=kv_token)
    unavailable = raw(emu, "GET", "/secrets/tls/?api-version=7.5", token=kv_token)

    assert (throttled.status, throttled.headers["retry-after"]) == (429, "7")
    assert throttled.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    assert missing.status == 404
    assert missing.json()["error"]["code"] == "CertificateNotFound"  # the certificate exists: the fault won
    assert (unavailable.status, unavailable.headers["retry-after"]) == (503, "1")
    assert unavailable.json()["error"]["code"] == "ServiceUnavailable"


def test_dropped_connection_on_a_read_is_retried(emu: Emulator, secrets: SecretClient) -> None:
    emu.vault.set_secret("api-key", "value")
    emu.faults.add("kv.get_secret", drop_connection=True)

    assert secrets.get_secret("api-key").value == "value"
    assert [r.status for r in emu.requests if r.operation == "kv.get_secret"] == [None, 200]


def test_a_faulted_write_writes_nothing(emu: Emulator, credential: ManagedIdentityCredential, chain: Chain) -> None:
    emu.faults.add("arm.put_certificate", status=500)

    with pytest.raises(HttpResponseError) as raised:
        put_root(no_retry_arm(emu, credential), emu, chain)

    assert raised.value.status_code == 500
    assert emu.apim.certificates == {}


def test_after_write_applies_the_write_then_fails_the_response(
    emu: Emulator, credential: ManagedIdentityCredential, chain: Chain
) -> None:
    emu.faults.add("arm.put_certificate", status=500, after_write=True)

    with pytest.raises(HttpResponseError):
        put_root(no_retry_arm(emu, credential), emu, chain)

    assert list(emu.apim.certificates) == ["root"]


def test_lost_response_then_sdk_retry_sees_an_update(emu: Emulator, arm: ApiManagementClient, chain: Chain) -> None:
    emu.faults.add("arm.put_certificate", drop_connection=True, after_write=True)

    put_root(arm, emu, chain)

    assert [r.status for r in emu.requests if r.operation == "arm.put_certificate"] == [None, 200]
    assert list(emu.apim.certificates) == ["root"]


def test_nth_call_and_times(emu: Emulator) -> None:
    token = token_for(emu, "https://management.azure.com")
    fault = emu.faults.add("arm.get_service", status=502, on_call=2, times=2)

    statuses = [raw(emu, "GET", f"{emu.apim.resource_id}?api-version=2024-05-01", token=token).status for _ in range(4)]

    assert statuses == [200, 502, 502, 200]
    assert fault.fired == 2
    assert emu.faults.pending() == []


def test_delay_only_slows_the_call_down(emu: Emulator) -> None:
    token = token_for(emu, "https://management.azure.com")
    emu.faults.add("arm.get_service", status=None, delay=0.1)

    response = raw(emu, "GET", f"{emu.apim.resource_id}?api-version=2024-05-01", token=token)

    assert response.status == 200
    assert emu.requests[-1].duration >= 0.1
    assert not emu.requests[-1].faulted


def test_identity_endpoint_faults_use_its_envelope(emu: Emulator, env: object) -> None:
    emu.faults.add("identity.token", status=500)

    ManagedIdentityCredential(**FAST_RETRY).get_token("https://vault.azure.net/.default")

    assert [r.status for r in emu.requests] == [500, 200]  # the credential's pipeline retried


def test_latency_applies_to_key_vault_and_arm_only(emu: Emulator) -> None:
    emu.latency = 0.2
    token = token_for(emu, "https://management.azure.com")

    raw(emu, "GET", f"{emu.apim.resource_id}?api-version=2024-05-01", token=token)

    identity, service = emu.requests
    assert service.duration >= 0.2
    assert identity.duration < 0.2


def test_fault_arguments_are_validated() -> None:
    faults = Faults()

    with pytest.raises(ValueError, match="unknown operation"):
        faults.add("arm.get_certificates")
    with pytest.raises(ValueError, match="4xx or 5xx"):
        faults.add("arm.get_service", status=200)
    with pytest.raises(ValueError, match="on_call"):
        faults.add("arm.get_service", on_call=0)


def test_faults_count_calls_from_when_they_are_added() -> None:
    faults = Faults()
    faults.take("kv.get_secret")
    fault = faults.add("kv.get_secret", on_call=2)

    first, second, third = (faults.take("kv.get_secret") for _ in range(3))

    assert (first, second, third) == (None, fault, None)
    assert faults.take("kv.get_certificate") is None
