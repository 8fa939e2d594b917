"""Fixtures shared by the end-to-end tests: a running emulator and the app configured against it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from emulator import Emulator
from tests.support.capture import exported  # noqa: F401 - a fixture for every test module
from tests.support.harness import assert_no_private_keys, point_app_at

GATEWAYS = ("gw-west", "gw-east")

# CI runs the same property-based examples every time, so a red build can be reproduced; local runs
# keep drawing new ones to find new cases.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "default")


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
    point_app_at(emulator, monkeypatch)
    return emulator
