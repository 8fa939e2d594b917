"""The managed-identity endpoint, driven by azure.identity's ManagedIdentityCredential (App Service flavour)."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from emulator import Emulator
from tests.emulator.helpers import FAST_RETRY, raw

USER_ASSIGNED = "0b0c9e6e-1f1a-4c53-9f5a-6d2f3b7c8a90"


def test_system_assigned_token_is_remembered_with_its_audience(emu: Emulator, env: Mapping[str, str]) -> None:
    token = ManagedIdentityCredential(**FAST_RETRY).get_token("https://vault.azure.net/.default")

    (issued,) = emu.issued_tokens
    assert issued.access_token == token.token
    assert issued.resource == "https://vault.azure.net"  # the SDK strips /.default
    assert issued.requested_client_id is None
    assert token.expires_on >= time.time() + 3600
    (record,) = emu.requests
    assert (record.operation, record.status, record.client_id) == ("identity.token", 200, None)
    assert record.audience == "https://vault.azure.net"
    assert record.headers["x-identity-header"] == emu.identity_header


def test_user_assigned_identity_is_recorded(emu: Emulator, env: Mapping[str, str]) -> None:
    ManagedIdentityCredential(client_id=USER_ASSIGNED, **FAST_RETRY).get_token("https://management.azure.com/.default")

    (record,) = emu.requests
    assert record.client_id == USER_ASSIGNED
    assert emu.issued_tokens[0].client_id == USER_ASSIGNED


def test_answer_has_the_app_service_shape(emu: Emulator) -> None:
    response = raw(
        emu,
        "GET",
        "?api-version=2019-08-01&resource=https://vault.azure.net",
        headers={"X-IDENTITY-HEADER": emu.identity_header, "Metadata": "true"},
        base=emu.identity_endpoint,
    )

    body = response.json()
    assert response.status == 200
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(body["expires_on"], str)
    assert int(body["expires_on"]) >= time.time() + 3600
    assert body["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 400), ({"X-IDENTITY-HEADER": "not-the-secret"}, 401)],
)
def test_the_identity_header_is_required(emu: Emulator, headers: dict[str, str], status: int) -> None:
    response = raw(
        emu,
        "GET",
        "?api-version=2019-08-01&resource=https://vault.azure.net",
        headers=headers,
        base=emu.identity_endpoint,
    )

    assert response.status == status
    assert response.json()["statusCode"] == status
    assert not emu.issued_tokens


def test_wrong_identity_header_fails_the_credential(
    emu: Emulator, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "stale-secret")

    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential(**FAST_RETRY).get_token("https://vault.azure.net/.default")
    assert emu.count("identity.token", status=401) == 1


def test_unknown_user_assigned_identity_is_refused_when_identities_are_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Emulator(user_assigned_client_ids=[USER_ASSIGNED]) as emu:
        for name, value in emu.environ().items():
            monkeypatch.setenv(name, value)

        with pytest.raises(ClientAuthenticationError):
            ManagedIdentityCredential(client_id="11111111-2222-3333-4444-555555555555", **FAST_RETRY).get_token(
                "https://vault.azure.net/.default"
            )
        ManagedIdentityCredential(client_id=USER_ASSIGNED, **FAST_RETRY).get_token("https://vault.azure.net/.default")

        assert [r.status for r in emu.requests] == [400, 200]
