"""Fixtures: a started emulator, the environment pointing at it, real SDK clients, a test CA chain."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.secrets import SecretClient
from azure.mgmt.apimanagement import ApiManagementClient

from emulator import Emulator
from tests.emulator.helpers import FAST_RETRY, Chain, make_chain


@pytest.fixture(scope="session")
def chain() -> Chain:
    return make_chain()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(page_size=2) as emulator:
        yield emulator


@pytest.fixture
def env(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Mapping[str, str]:
    environment = emu.environ()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


@pytest.fixture
def credential(env: Mapping[str, str]) -> ManagedIdentityCredential:
    return ManagedIdentityCredential(**FAST_RETRY)


@pytest.fixture
def certificates(emu: Emulator, credential: ManagedIdentityCredential) -> CertificateClient:
    return CertificateClient(emu.keyvault_url, credential, **FAST_RETRY)


@pytest.fixture
def secrets(emu: Emulator, credential: ManagedIdentityCredential) -> SecretClient:
    return SecretClient(emu.keyvault_url, credential, **FAST_RETRY)


@pytest.fixture
def arm(emu: Emulator, credential: ManagedIdentityCredential) -> ApiManagementClient:
    return ApiManagementClient(credential, emu.apim.subscription_id, base_url=emu.arm_endpoint, **FAST_RETRY)
