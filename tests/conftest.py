"""Fixtures shared by the end-to-end tests: a running emulator and the app configured against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator import Emulator
from shared.settings import SETTINGS
from tests.harness import assert_no_private_keys

GATEWAYS = ("gw-west", "gw-east")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """Key Vault, ARM/APIM and managed identity on 127.0.0.1, with two self-hosted gateways."""
    with Emulator(page_size=2) as emu:
        for gateway in GATEWAYS:
            emu.apim.add_gateway(gateway)
        yield emu
        # Whatever the test did, no PFX that reached APIM may hold a private key.
        assert_no_private_keys(emu)


@pytest.fixture
def configured(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The process environment of a Function App pointed at the emulator (and nothing else)."""
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    for name in ("AZURE_CLIENT_ID", "MSI_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in emulator.environ().items():
        monkeypatch.setenv(name, value)
    return emulator
