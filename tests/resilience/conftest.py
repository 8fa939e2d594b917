"""One running emulator per test module, reset before each test.

The app's clients are cached per configuration (`shared.clients.clients_for`), so tests that share
the emulator also share warm tokens and connections, as invocations of a warm Functions worker do.
That keeps the hundreds of runs of these suites fast; `reset()` makes sure no state leaks between them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy
from tests.conftest import GATEWAYS
from tests.support.harness import import_version, point_app_at, resync


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    with Emulator(page_size=2) as emulator, pytest.MonkeyPatch.context() as patch:
        point_app_at(emulator, patch)
        _warm_up(emulator)
        yield emulator


def _warm_up(emulator: Emulator) -> None:
    """One dry run that reads every kind of thing, so that tokens and Key Vault challenges are cached
    (as in a warm worker) and the tests' call counts hold only the calls of the runs they test."""
    for gateway in GATEWAYS:
        emulator.apim.add_gateway(gateway)
    import_version(emulator, "warm-up", Hierarchy(intermediates=1))
    answer = resync({"dryRun": True})
    assert answer.status == 200, answer.body
    emulator.reset()


@pytest.fixture
def emu(shared_emulator: Emulator) -> Iterator[Emulator]:
    """The configured app's emulator, emptied, with the two self-hosted gateways of tests/conftest.py."""
    shared_emulator.reset()
    for gateway in GATEWAYS:
        shared_emulator.apim.add_gateway(gateway)
    yield shared_emulator
    shared_emulator.faults.clear()
