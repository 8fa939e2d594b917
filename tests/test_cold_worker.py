"""A new worker's first invocation: what it pays before its first Key Vault read, and the benchmark's
model of it.

A new worker's clients meet Key Vault's challenge once per SDK client and fetch one token per
audience (`tests/test_budgets.py` counts them). Made in turn (challenge, token, version list, the
secrets client's challenge, secret) they would add three round trips to the first invocation's
longest chain; the app primes both challenges and the vault's token together as the clients are
made, so the first read waits for one round of them, and the secret reads for none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from bench import model
from emulator import Emulator
from emulator.pki import Hierarchy
from shared.keyvault import vault_scope
from shared.settings import SETTINGS
from tests.support.harness import deliver, import_version

PROTOCOL = ("identity.token", "kv.challenge")


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A started emulator the app is configured against: a configuration (and so clients) of its own."""
    emulator = Emulator().start()
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    for name in ("AZURE_CLIENT_ID", "MSI_ENDPOINT", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in emulator.environ(MAX_CONCURRENCY="4").items():
        monkeypatch.setenv(name, value)
    try:
        yield emulator
    finally:
        emulator.stop()


def test_a_new_worker_meets_both_challenges_and_the_token_before_its_first_read(emu: Emulator) -> None:
    emu.apim.add_gateway("gw-01")
    import_version(emu, "orders", Hierarchy(intermediates=1), hostname="orders.example")
    emu.clear_requests()
    emu.latency = 0.05  # a round trip long enough that "asked before answered" cannot be a race of the loopback

    deliver(emu.vault.certificate_event("orders"))  # the first invocation of these clients

    records = sorted(emu.requests, key=lambda r: r.started)
    protocol = [r for r in records if r.operation in PROTOCOL]
    assert sorted(r.operation for r in protocol) == ["identity.token", "identity.token", "kv.challenge", "kv.challenge"]
    first_read = min(r.started for r in records if r.operation == "kv.list_certificate_versions")
    secret_reads = [r for r in records if r.operation == "kv.get_secret"]
    assert secret_reads, "the version's secret was read"
    # Both challenges and the Key Vault token went out before the first read, not the secrets
    # client's challenge after the version list (which is when the secret reads can start).
    kv_token = [r for r in protocol if (r.audience or "").startswith(emu.keyvault_challenge_resource)]
    challenges = [r for r in protocol if r.operation == "kv.challenge"]
    assert len(kv_token) == 1
    assert all(r.started < first_read for r in kv_token + challenges)
    # The token was asked for with the challenges, not once they had been answered.
    assert kv_token[0].started < min(r.finished for r in challenges)


def test_the_vault_scope_is_the_one_the_challenge_names() -> None:
    assert vault_scope("https://contoso.vault.azure.net") == "https://vault.azure.net/.default"
    assert vault_scope("https://contoso.vault.azure.cn") == "https://vault.azure.cn/.default"
    with Emulator() as emulator:  # the emulator's vault names a resource the SDK accepts for 127.0.0.1:PORT
        assert vault_scope(emulator.keyvault_url) == emulator.keyvault_challenge_resource + "/.default"


def test_the_benchmark_bounds_a_new_worker_s_event_by_five_round_trips() -> None:
    """Token and challenges (one round), version list, secret, upload, gateway CA put."""
    estate = model.Estate(gateways=25, apim_certificates=2, cas_per_gateway=2, page_size=25)
    warm = model.rotation(estate, versions=2, new_cas=2)
    cold = model.rotation(estate, versions=2, new_cas=2, fresh=True)

    assert warm.longest_chain() == 4
    assert cold.longest_chain() == 5
    assert cold.counts() - warm.counts() == Counter({"identity.token": 2, "kv.challenge": 2})
    assert not warm.counts() - cold.counts()
    assert model.bound(cold, concurrency=1000, latency=0.030).seconds == pytest.approx(0.150)
    assert model.reads_and_writes(cold.counts()) == model.reads_and_writes(warm.counts())
