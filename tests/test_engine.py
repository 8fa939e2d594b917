"""The engine alone, over in-memory ports: what waits for what, what a failure stops, and which
failures ask for a retry. Deterministic: calls are held and released by the test, never timed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest

from emulator.pki import Hierarchy
from shared.backing_secret import PEM_CONTENT_TYPE
from shared.chain import Certificate
from shared.engine import Engine
from shared.plan import certificate_id_for
from shared.ports import ApimCertificate, AzureCallError, Secret
from shared.report import ActionStatus, Report, RunStatus
from shared.scope import Mode, Scope
from tests.support.legacy import legacy_id
from tests.support.memory import NOW, Calls, MemoryApim, MemoryVault, settings

GATEWAYS = ("gw-1", "gw-2")


class Estate:
    def __init__(self, **overrides: str) -> None:
        self.calls = Calls()
        self.vault = MemoryVault(self.calls)
        self.apim = MemoryApim(self.calls)
        self.apim.add_gateways(*GATEWAYS)
        self.engine = Engine(settings(**overrides), self.vault, self.apim)

    async def run(self, mode: Mode, *names: str) -> Report:
        return await self.engine.run(Scope(frozenset(names) if names else None), mode)

    def retiring(self) -> tuple[Hierarchy, set[str]]:
        """`orders` v1 (Contoso) trusted everywhere, v2 (Fabrikam) not yet, v1 disabled: a full run adds
        v2's chain and removes v1's. Returns v2's hierarchy and v1's ids."""
        old, new = Hierarchy(intermediates=1), Hierarchy(intermediates=1, organization="Fabrikam")
        self.vault.add_version("orders", old)
        old_ids = self.apim.trust(old.ca_certificates())
        self.vault.add_version("orders", new)
        self.vault.disable("orders", 1)
        return new, old_ids

    def ids(self, pki: Hierarchy) -> set[str]:
        return {certificate_id_for(Certificate.from_x509(c)) for c in pki.ca_certificates()}


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_a_gateway_s_puts_wait_only_for_its_own_ca_list_and_its_uploads() -> None:
    async def test() -> None:
        estate = Estate()
        pki = Hierarchy(intermediates=1)
        estate.vault.add_version("orders", pki)
        estate.calls.hold("apim cas gw-2")

        run_task = asyncio.create_task(estate.run(Mode.ADDITIONS, "orders"))
        await estate.calls.when_reached("apim cas gw-2")
        for _ in range(20):  # let everything that does not wait for gw-2's list finish
            await asyncio.sleep(0)
        done_before_release = list(estate.calls.log)
        estate.calls.release("apim cas gw-2")
        report = await run_task

        ids = estate.ids(pki)
        assert {f"upload {i}" for i in ids} | {f"put gw-1 {i}" for i in ids} <= set(done_before_release)
        assert not any(call.startswith("put gw-2") for call in done_before_release)
        assert estate.apim.trusted_ids("gw-2") == ids
        assert report.in_sync

    run(test)


def test_a_put_waits_for_its_upload() -> None:
    async def test() -> None:
        estate = Estate()
        pki = Hierarchy(intermediates=1)
        estate.vault.add_version("orders", pki)
        root_id = certificate_id_for(Certificate.from_x509(pki.ca_certificates()[-1]))
        estate.calls.hold(f"upload {root_id}")

        run_task = asyncio.create_task(estate.run(Mode.ADDITIONS, "orders"))
        await estate.calls.when_reached(f"upload {root_id}")
        for _ in range(20):
            await asyncio.sleep(0)
        assert not any(call.endswith(root_id) and call.startswith("put") for call in estate.calls.log)
        estate.calls.release(f"upload {root_id}")
        await run_task

        upload = estate.calls.index(f"upload {root_id}")
        assert all(upload < estate.calls.index(f"put {gw} {root_id}") for gw in GATEWAYS)

    run(test)


def test_a_full_run_removes_only_after_every_addition_and_after_one_last_look_at_key_vault() -> None:
    async def test() -> None:
        estate = Estate()
        new, old_ids = estate.retiring()

        report = await estate.run(Mode.FULL)

        log = estate.calls.log
        new_ids = estate.ids(new)
        last_put = max(log.index(f"put {gw} {i}") for gw in GATEWAYS for i in new_ids)
        removals = [i for i, call in enumerate(log) if call.startswith(("remove", "delete"))]
        second_look = [i for i, call in enumerate(log) if call == "kv versions orders"][1]
        assert last_put < second_look < min(removals)
        assert [call for call in log if call.startswith("delete")] == [f"delete {i}" for i in sorted(old_ids)]
        assert max(log.index(f"remove {gw} {i}") for gw in GATEWAYS for i in old_ids) < min(
            log.index(f"delete {i}") for i in old_ids
        )
        assert all(estate.apim.trusted_ids(gw) == new_ids for gw in GATEWAYS)
        assert report.in_sync

    run(test)


def test_a_rotation_that_lands_during_the_additions_is_not_removed() -> None:
    async def test() -> None:
        estate = Estate()
        a, b = Hierarchy(intermediates=1), Hierarchy(intermediates=1, organization="Fabrikam")
        estate.vault.add_version("orders", a)
        a_ids = estate.apim.trust(a.ca_certificates())
        estate.vault.add_version("orders", b)
        estate.vault.disable("orders", 1)  # A looks retired at the first look
        b_root = certificate_id_for(Certificate.from_x509(b.ca_certificates()[-1]))
        estate.calls.hold(f"upload {b_root}")

        run_task = asyncio.create_task(estate.run(Mode.FULL))
        await estate.calls.when_reached(f"upload {b_root}")
        estate.vault.add_version("orders", a)  # meanwhile a new version back on chain A
        estate.calls.release(f"upload {b_root}")
        report = await run_task

        assert a_ids <= estate.apim.trusted_ids("gw-1")
        assert not any(call.startswith(("remove", "delete")) and call.split()[-1] in a_ids for call in estate.calls.log)
        assert report.errors == []

    run(test)


def test_a_failed_addition_skips_every_removal_and_asks_for_a_retry() -> None:
    async def test() -> None:
        estate = Estate()
        new, _ = estate.retiring()
        new_root = certificate_id_for(Certificate.from_x509(new.ca_certificates()[-1]))
        estate.calls.fail(f"put gw-2 {new_root}", AzureCallError("set: HTTP 409 Conflict", status=409))

        report = await estate.run(Mode.FULL)

        assert not any(call.startswith(("remove", "delete")) for call in estate.calls.log)
        assert {o.status for o in report.outcomes if o.action.narrows} == {ActionStatus.SKIPPED}
        assert report.retryable
        assert report.status.value == "failed"

    run(test)


def test_an_unusable_secret_is_not_retried_and_does_not_block_the_other_certificates() -> None:
    async def test() -> None:
        estate = Estate()
        good = Hierarchy(intermediates=1)
        estate.vault.add_version("orders", good)
        estate.vault.add_version("broken", good, secret=Secret("no certificate here", PEM_CONTENT_TYPE))

        report = await estate.run(Mode.ADDITIONS, "orders", "broken")

        assert estate.apim.trusted_ids("gw-1") == estate.ids(good)
        assert not report.retryable
        assert any("broken" in error and "no certificates" in error for error in report.errors)

    run(test)


def test_a_missing_certificate_in_a_scoped_run_writes_nothing_and_is_not_retried() -> None:
    async def test() -> None:
        estate = Estate()
        estate.vault.add_version("orders", Hierarchy(intermediates=1))

        report = await estate.run(Mode.ADDITIONS, "orders", "gone")

        assert report.missing == ["gone"]
        assert not report.retryable
        assert not any(call.startswith(("upload", "put")) for call in estate.calls.log)

    run(test)


def test_a_deleted_named_certificate_is_retired_and_the_clean_up_of_the_others_goes_on() -> None:
    async def test() -> None:
        estate = Estate(CERTIFICATE_NAMES="orders,payments")
        kept, retired = Hierarchy(intermediates=1), Hierarchy(intermediates=1, organization="Payments")
        estate.vault.add_version("orders", kept)
        estate.apim.trust(kept.ca_certificates())
        retired_ids = estate.apim.trust(retired.ca_certificates())  # payments' chain; payments was deleted
        estate.vault.deleted_names.add("payments")

        report = await estate.run(Mode.FULL)

        assert estate.apim.trusted_ids("gw-1") == estate.ids(kept)
        assert not retired_ids & set(estate.apim.held_certificates)
        assert any("payments was deleted" in w and "CERTIFICATE_NAMES" in w for w in report.warnings)
        assert report.errors == []

    run(test)


def test_an_unreadable_gateway_gets_no_writes_and_nothing_is_removed_anywhere() -> None:
    async def test() -> None:
        estate = Estate()
        new, _ = estate.retiring()
        estate.calls.fail("apim cas gw-2", AzureCallError("list: HTTP 503", status=503))

        report = await estate.run(Mode.FULL)

        assert estate.apim.trusted_ids("gw-1") >= estate.ids(new)
        assert not any(call.startswith(("put gw-2", "remove", "delete")) for call in estate.calls.log)
        assert report.retryable

    run(test)


def test_a_failed_apim_list_fails_the_run_before_any_write() -> None:
    async def test() -> None:
        estate = Estate()
        estate.vault.add_version("orders", Hierarchy(intermediates=1))
        estate.calls.fail("apim certificates", AzureCallError("list certificates: HTTP 500", status=500))

        report = await estate.run(Mode.ADDITIONS, "orders")

        assert report.errors == ["list certificates: HTTP 500"]
        assert report.retryable
        assert not any(call.startswith(("upload", "put")) for call in estate.calls.log)

    run(test)


@pytest.mark.parametrize("limit", [1, 3])
def test_never_more_azure_calls_in_flight_than_the_limit(limit: int) -> None:
    async def test() -> None:
        estate = Estate(MAX_CONCURRENCY=str(limit))
        for number in range(6):
            estate.vault.add_version(f"cert{number}", Hierarchy(intermediates=1, organization=f"Org{number}"))

        report = await estate.run(Mode.FULL)

        assert estate.calls.peak == limit
        assert report.in_sync

    run(test)


def test_a_dry_run_writes_nothing_and_reports_the_plan() -> None:
    async def test() -> None:
        estate = Estate()
        pki = Hierarchy(intermediates=1)
        estate.vault.add_version("orders", pki)

        report = await estate.run(Mode.DRY_RUN)

        assert not any(call.startswith(("upload", "put")) for call in estate.calls.log)
        assert {o.status for o in report.outcomes} == {ActionStatus.PLANNED}
        assert len(report.outcomes) == 2 + 2 * len(GATEWAYS)
        assert report.status.value == "drift"

    run(test)


def test_a_version_superseded_within_the_grace_keeps_its_chain() -> None:
    async def test() -> None:
        estate = Estate(ROTATION_GRACE="24h")
        a, b = Hierarchy(intermediates=1), Hierarchy(intermediates=1, organization="Fabrikam")
        estate.vault.add_version("orders", a, created=NOW - timedelta(days=30))
        estate.vault.add_version("orders", b, created=NOW - timedelta(hours=1))
        estate.vault.add_version("orders", b, created=NOW - timedelta(minutes=1))  # b re-issued
        estate.apim.trust(a.ca_certificates())

        report = await estate.run(Mode.FULL)

        assert estate.apim.trusted_ids("gw-1") == estate.ids(a) | estate.ids(b)
        assert not any(o.action.narrows for o in report.outcomes)

    run(test)


def test_two_deployments_on_one_apim_each_change_only_their_own_entries() -> None:
    async def test() -> None:
        calls = Calls()
        apim = MemoryApim(calls)
        apim.add_gateways(*GATEWAYS)
        shared_root = Hierarchy(intermediates=1)  # both teams' backends chain to it
        vaults = {team: MemoryVault(calls) for team in ("teama", "teamb")}
        vaults["teama"].add_version("orders", shared_root)
        vaults["teamb"].add_version("payments", shared_root)
        vaults["teamb"].add_version("billing", Hierarchy(intermediates=1, organization="Fabrikam"))
        engines = {team: Engine(settings(DEPLOYMENT_ID=team), vault, apim) for team, vault in vaults.items()}
        for engine in engines.values():
            assert (await engine.run(Scope(), Mode.FULL)).in_sync
        b_entries = {gw: dict(apim.cas[gw]) for gw in GATEWAYS}
        b_ids = {cid for cid in apim.held_certificates if cid.startswith("trustsync-teamb--")}
        assert len(b_ids) == 4  # its own copies of the shared chain, and billing's
        vaults["teama"].add_version("orders", Hierarchy(intermediates=1, organization="Contoso 2"))
        vaults["teama"].disable("orders", 1)  # teama no longer needs the shared chain at all
        calls.log.clear()

        report = await engines["teama"].run(Scope(), Mode.FULL)

        assert report.in_sync, report.to_dict()
        assert report.to_dict()["deployment"] == "teama"
        writes = [call for call in calls.log if call.startswith(("upload", "put", "remove", "delete"))]
        assert any(call.startswith("delete trustsync-teama--") for call in writes)
        assert not [call for call in writes if "teama--" not in call]
        assert b_ids <= set(apim.held_certificates)
        for gw in GATEWAYS:
            assert {cid: ok for cid, ok in apim.cas[gw].items() if cid in b_ids} == {
                cid: ok for cid, ok in b_entries[gw].items() if cid in b_ids
            }
        assert (await engines["teamb"].run(Scope(), Mode.DRY_RUN)).outcomes == []  # teamb: still in sync

    run(test)


def test_legacy_entries_go_only_after_the_deployment_s_own_entries_are_in() -> None:
    async def test() -> None:
        estate = Estate()  # DEPLOYMENT_ID left empty: this deployment adopts the legacy ids
        pki = Hierarchy(intermediates=1)
        estate.vault.add_version("orders", pki)
        legacy = set()
        for cert in map(Certificate.from_x509, pki.ca_certificates()):
            estate.apim.held_certificates[legacy_id(cert)] = ApimCertificate(
                legacy_id(cert), cert.sha1_thumbprint, cert.subject
            )
            for gw in GATEWAYS:
                estate.apim.cas[gw][legacy_id(cert)] = True
            legacy.add(legacy_id(cert))

        report = await estate.run(Mode.FULL)

        log = estate.calls.log
        new_ids = estate.ids(pki)
        last_put = max(log.index(f"put {gw} {i}") for gw in GATEWAYS for i in new_ids)
        first_removal = min(log.index(f"remove {gw} {i}") for gw in GATEWAYS for i in legacy)
        assert last_put < first_removal
        assert {call for call in log if call.startswith("delete")} == {f"delete {i}" for i in legacy}
        assert all(estate.apim.trusted_ids(gw) == new_ids for gw in GATEWAYS)
        assert set(estate.apim.held_certificates) == new_ids
        assert report.in_sync, report.to_dict()

    run(test)


def test_a_deployment_with_an_explicit_id_leaves_legacy_entries_alone() -> None:
    async def test() -> None:
        estate = Estate(DEPLOYMENT_ID="teama")
        pki = Hierarchy(intermediates=1)
        estate.vault.add_version("orders", pki)
        retired = Certificate.from_x509(Hierarchy(intermediates=0, organization="Retired").ca_certificates()[0])
        estate.apim.held_certificates[legacy_id(retired)] = ApimCertificate(legacy_id(retired), retired.sha1_thumbprint)
        for gw in GATEWAYS:
            estate.apim.cas[gw][legacy_id(retired)] = True

        report = await estate.run(Mode.FULL)

        assert not [call for call in estate.calls.log if legacy_id(retired) in call and not call.startswith("apim")]
        assert all(estate.apim.cas[gw][legacy_id(retired)] for gw in GATEWAYS)
        assert report.in_sync

    run(test)


@pytest.mark.parametrize(
    ("gateways", "selection", "named"),
    [((), "*", "gateways: none"), (("gw-1",), "gw-9", "gateways: gw-1")],
)
def test_no_selected_gateway_is_not_in_sync_and_names_the_gateways_and_the_tier(
    gateways: tuple[str, ...], selection: str, named: str
) -> None:
    async def test() -> None:
        calls = Calls()
        vault, apim = MemoryVault(calls), MemoryApim(calls, tier="BasicV2")
        apim.add_gateways(*gateways)
        vault.add_version("orders", Hierarchy(intermediates=1))
        engine = Engine(settings(APIM_GATEWAYS=selection), vault, apim)

        report = await engine.run(Scope(), Mode.FULL)

        assert report.status is RunStatus.FAILED
        assert not report.in_sync
        assert not report.retryable  # a setting or the service must change: a redelivery would not help
        assert any("tier BasicV2" in error and named in error for error in report.errors), report.errors
        assert calls.log.count("apim service") == 1

    run(test)


def test_the_service_is_read_once_per_run_to_know_its_kind() -> None:
    async def test() -> None:
        estate = Estate()
        estate.vault.add_version("orders", Hierarchy(intermediates=1))
        report = await estate.run(Mode.FULL)
        assert report.in_sync  # a Developer service's managed gateway is reported, not judged, beside its gateways
        assert estate.calls.log.count("apim service") == 1
        assert report.to_dict()["service"]["kind"] == "classic"

    run(test)
