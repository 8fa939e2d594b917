"""The engine's reads, over in-memory ports: each service has its own slots, the reads every write
waits on go first, and Key Vault is read once (a last look only when removals are planned, and a
version's secret read once per worker). Deterministic: calls are held and released, never timed."""

from __future__ import annotations

import asyncio
from collections import Counter

from emulator.pki import Hierarchy
from shared.chain import Certificate
from shared.engine import Engine
from shared.gather import KnownVersions
from shared.scope import Mode, Scope
from tests.support.memory import Calls, MemoryApim, MemoryVault, settings
from tests.test_engine import Estate, run

SETTLE = 50  # loop turns that let every call not held or waiting for a slot get as far as it can


async def settle() -> None:
    for _ in range(SETTLE):
        await asyncio.sleep(0)


def secret_reads(calls: Calls) -> Counter[str]:
    return Counter(call for call in calls.log if call.startswith("kv secret "))


def test_a_key_vault_read_never_waits_for_an_arm_slot() -> None:
    """One slot per service: with ARM's only slot held, the certificate's version list and secret are read."""

    async def test() -> None:
        estate = Estate(MAX_CONCURRENCY="1")
        estate.vault.add_version("orders", Hierarchy(intermediates=1))
        estate.calls.hold("apim certificates")

        run_task = asyncio.create_task(estate.run(Mode.ADDITIONS, "orders"))
        await estate.calls.when_reached("apim certificates")
        await settle()
        read_meanwhile = list(estate.calls.log)
        estate.calls.release("apim certificates")
        report = await run_task

        assert {"kv versions orders", "kv secret ordersv1"} <= set(read_meanwhile)
        assert report.in_sync

    run(test)


def test_an_upload_every_put_waits_on_goes_before_a_gateway_s_own_ca_list() -> None:
    """One ARM slot, three gateways: the uploads of the new chain take the slot before the CA lists
    still waiting for it (each only needed by its own gateway's puts)."""

    async def test() -> None:
        estate = Estate(MAX_CONCURRENCY="1")
        estate.apim.add_gateways("gw-3")
        pki = Hierarchy(intermediates=1)
        estate.vault.add_version("orders", pki)
        estate.calls.hold("apim cas gw-1")

        run_task = asyncio.create_task(estate.run(Mode.ADDITIONS, "orders"))
        await estate.calls.when_reached("apim cas gw-1")
        await settle()  # the secret is read meanwhile: the uploads wait for ARM's slot
        estate.calls.release("apim cas gw-1")
        report = await run_task

        log = estate.calls.log
        first_upload = min(log.index(f"upload {i}") for i in estate.ids(pki))
        assert first_upload < log.index("apim cas gw-2") < log.index("apim cas gw-3")
        assert report.in_sync

    run(test)


def test_a_full_run_with_nothing_to_remove_reads_key_vault_once() -> None:
    async def test() -> None:
        estate = Estate()
        pki = Hierarchy(intermediates=1)
        estate.vault.add_version("orders", pki)
        estate.apim.trust(pki.ca_certificates())

        report = await estate.run(Mode.FULL)

        assert estate.calls.log.count("kv versions orders") == 1
        assert secret_reads(estate.calls) == {"kv secret ordersv1": 1}
        assert report.in_sync

    run(test)


def test_the_last_look_before_removals_lists_versions_again_but_reads_no_secret_twice() -> None:
    async def test() -> None:
        estate = Estate()
        _, old_ids = estate.retiring()

        report = await estate.run(Mode.FULL)

        assert estate.calls.log.count("kv versions orders") == 2  # the last look: removals were planned
        assert set(secret_reads(estate.calls).values()) == {1}
        assert any(call.startswith("delete") for call in estate.calls.log)
        assert not old_ids & estate.apim.trusted_ids("gw-1")
        assert report.in_sync

    run(test)


def test_a_version_landing_during_the_run_has_its_secret_read_by_the_last_look() -> None:
    async def test() -> None:
        estate = Estate()
        estate.retiring()
        landed = Hierarchy(intermediates=1, organization="Landed")
        estate.calls.hold("kv secret ordersv2")

        run_task = asyncio.create_task(estate.run(Mode.FULL))
        await estate.calls.when_reached("kv secret ordersv2")
        estate.vault.add_version("orders", landed)  # v3, after the first look listed the versions
        estate.calls.release("kv secret ordersv2")
        report = await run_task

        assert secret_reads(estate.calls) == {"kv secret ordersv2": 1, "kv secret ordersv3": 1}
        assert estate.calls.index("kv secret ordersv3") > estate.calls.index("kv secret ordersv2")
        assert report.errors == []

    run(test)


def test_a_warm_worker_reads_the_secrets_of_versions_it_has_not_seen_only() -> None:
    async def test() -> None:
        calls = Calls()
        vault, apim = MemoryVault(calls), MemoryApim(calls)
        apim.add_gateways("gw-1")
        pki = Hierarchy(intermediates=1)
        vault.add_version("orders", pki)
        vault.add_version("billing", pki)
        known = KnownVersions()

        first = await Engine(settings(), vault, apim, known=known).run(Scope(None), Mode.FULL)
        vault.add_version("orders", pki)  # a renewal between two audits
        calls.log.clear()
        second = await Engine(settings(), vault, apim, known=known).run(Scope(None), Mode.FULL)

        assert first.in_sync
        assert second.in_sync
        assert secret_reads(calls) == {"kv secret ordersv2": 1}
        assert calls.log.count("kv versions billing") == 1  # versions are still listed every run

    run(test)


def test_the_worker_keeps_public_certificates_only_and_a_bounded_number_of_versions() -> None:
    pki = Hierarchy(intermediates=1)
    chain = tuple(Certificate.from_x509(c) for c in pki.ca_certificates())
    known = KnownVersions(capacity=2)

    known.keep("https://v.example", "a", "1", chain)
    known.keep("https://v.example", "b", "1", chain)
    assert known.get("https://V.example", "A", "1") == chain  # touched: b is now the least recently used
    known.keep("https://v.example", "c", "1", chain)

    assert len(known) == 2
    assert known.get("https://v.example", "b", "1") is None
    assert known.get("https://v.example", "a", "1") == chain
    assert known.get("https://other.example", "a", "1") is None  # another vault's version is another version
    assert all(isinstance(c, Certificate) for c in chain)
