"""When a certificate's trust may be taken away: Key Vault's word on which versions are still needed
(grace from when a version stopped being the latest enabled one), on a certificate whose versions
are all expired, and on a name it does not hold (deleted, misspelt, or not ours to read).

The engine over the in-memory ports; the same cases through the real SDK against the emulator are
in tests/test_retirement_end_to_end.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from emulator.pki import Hierarchy
from shared.desired import versions_to_trust
from shared.ports import AzureCallError, NotFoundError, VersionInfo
from shared.report import ActionStatus
from shared.scope import Mode
from tests.support.memory import NOW
from tests.test_engine import GATEWAYS, Estate

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def version(name: str, *, created: timedelta, updated: timedelta | None = None, enabled: bool = True) -> VersionInfo:
    """A version created `created` ago, its attributes last changed `updated` ago (unknown: None)."""
    return VersionInfo(
        name,
        enabled,
        created=NOW - created,
        expires=NOW + 90 * DAY,
        leaf_thumbprint=None,
        updated=None if updated is None else NOW - updated,
    )


def picked(versions: list[VersionInfo], grace: timedelta = DAY) -> list[str]:
    return [v.version for v in versions_to_trust(versions, NOW, grace)]


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


class TestGraceFromWhenAVersionStoppedBeingTheLatest:
    def test_a_newer_version_created_disabled_supersedes_only_once_enabled(self) -> None:
        # v2 was created disabled three days ago and enabled two hours ago: until then v1 was the
        # latest enabled version, so a backend may still serve it.
        versions = [
            version("v1", created=60 * DAY, updated=60 * DAY),
            version("v2", created=3 * DAY, updated=2 * HOUR),
            version("v3", created=HOUR, updated=HOUR),
        ]
        assert picked(versions) == ["v3", "v2", "v1"]
        assert picked(versions, grace=HOUR + timedelta(minutes=59)) == ["v3", "v2"]  # enabled 2 h ago

    def test_without_updated_created_is_all_there_is(self) -> None:
        versions = [version("v1", created=60 * DAY), version("v2", created=3 * DAY), version("v3", created=HOUR)]
        assert picked(versions) == ["v3", "v2"]

    def test_the_first_newer_version_enabled_ends_the_older_one_s_time_as_latest(self) -> None:
        # v3 (created enabled two days ago) superseded v1 then; v2, older than v3 but enabled only an
        # hour ago, does not make v1 the latest again.
        versions = [
            version("v1", created=60 * DAY, updated=60 * DAY),
            version("v2", created=5 * DAY, updated=HOUR),
            version("v3", created=2 * DAY, updated=2 * DAY),
        ]
        assert picked(versions) == ["v3", "v2"]

    def test_a_later_attribute_change_only_keeps_more(self) -> None:
        # A tag set on v2 an hour ago reads as a later enabling: v1 stays (when unsure, keep).
        versions = [
            version("v1", created=60 * DAY),
            version("v2", created=3 * DAY, updated=HOUR),
            version("v3", created=HOUR),
        ]
        assert picked(versions) == ["v3", "v2", "v1"]


def test_a_certificate_whose_versions_all_expired_is_retired_with_a_warning_and_its_chain_goes() -> None:
    async def test() -> None:
        estate = Estate(CERTIFICATE_NAMES="orders,payments")
        kept, expired = Hierarchy(intermediates=1), Hierarchy(intermediates=1, organization="Payments")
        estate.vault.add_version("orders", kept)
        estate.apim.trust(kept.ca_certificates())
        estate.vault.add_version("payments", expired)
        expired_ids = estate.apim.trust(expired.ca_certificates())
        (info, secret) = estate.vault.certificates["payments"][0]
        estate.vault.certificates["payments"][0] = (
            VersionInfo(info.version, True, info.created, NOW - HOUR, info.leaf_thumbprint, info.not_before),
            secret,
        )

        report = await estate.run(Mode.FULL)

        assert report.errors == []
        assert any("payments has only expired versions" in w for w in report.warnings)
        assert not expired_ids & set(estate.apim.held_certificates)
        assert all(estate.apim.trusted_ids(gw) == estate.ids(kept) for gw in GATEWAYS)
        assert "kv secret paymentsv1" not in estate.calls.log  # nothing of it is read: nothing of it is needed
        assert report.in_sync

    run(test)


def retired_and_kept(estate: Estate) -> tuple[set[str], set[str]]:
    """`orders` rotated (v1 disabled): v1's chain would go in a full run, v2's is added. `payments`
    (its own chain, trusted) is named too. Returns v1's ids and payments' ids."""
    _new, old_ids = estate.retiring()
    payments = Hierarchy(intermediates=1, organization="Payments")
    payments_ids = estate.apim.trust(payments.ca_certificates())
    return old_ids, payments_ids


def removals(estate: Estate) -> list[str]:
    return [call for call in estate.calls.log if call.startswith(("remove", "delete"))]


def test_a_name_key_vault_does_not_hold_is_a_configuration_error_that_blocks_every_removal() -> None:
    async def test() -> None:
        estate = Estate(CERTIFICATE_NAMES="orders,paymnets")  # meant payments
        old_ids, payments_ids = retired_and_kept(estate)

        report = await estate.run(Mode.FULL)

        assert removals(estate) == []
        assert "kv deleted paymnets" in estate.calls.log  # told from a deletion by Key Vault's word
        (error,) = report.errors
        assert "CERTIFICATE_NAMES" in error
        assert "paymnets" in error
        assert not report.retryable
        assert not report.in_sync
        assert not any("retired" in w for w in report.warnings)
        # Additions for the certificates that are there go on.
        assert all(estate.apim.trusted_ids(gw) >= old_ids | payments_ids for gw in GATEWAYS)
        assert any(
            o.action.kind.value == "set-gateway-ca" and o.status is ActionStatus.APPLIED for o in report.outcomes
        )

    run(test)


def test_a_403_on_a_named_certificate_is_a_configuration_error_naming_the_role() -> None:
    async def test() -> None:
        estate = Estate(CERTIFICATE_NAMES="orders,paymnets")
        retired_and_kept(estate)
        estate.vault.forbidden.add("paymnets")  # roles on named certificates: a misspelt name answers 403

        report = await estate.run(Mode.FULL)

        assert removals(estate) == []
        (error,) = report.errors
        assert "HTTP 403" in error
        assert "Key Vault Reader" in error
        assert "CERTIFICATE_NAMES" in error
        assert not report.retryable

    run(test)


def test_a_deleted_certificate_is_confirmed_by_a_second_look_when_deleted_ones_cannot_be_read() -> None:
    async def test() -> None:
        estate = Estate(CERTIFICATE_NAMES="orders,payments")
        old_ids, payments_ids = retired_and_kept(estate)  # payments was deleted: only its chain is left
        estate.vault.may_read_deleted = False

        report = await estate.run(Mode.FULL)

        assert report.errors == []
        first_look = estate.calls.log.index("kv deleted payments")
        assert estate.calls.log.count("kv versions payments") >= 2
        assert estate.calls.log.index("kv versions payments", first_look) > first_look  # the second look
        assert not (old_ids | payments_ids) & set(estate.apim.held_certificates)
        assert any("payments was deleted" in w for w in report.warnings)

    run(test)


def test_a_404_then_found_at_the_second_look_removes_nothing() -> None:
    async def test() -> None:
        estate = Estate(CERTIFICATE_NAMES="orders,payments")
        old_ids, _ = retired_and_kept(estate)
        estate.vault.add_version("payments", Hierarchy(intermediates=1, organization="Payments"))
        estate.vault.may_read_deleted = False
        estate.calls.fail("kv versions payments", NotFoundError("list versions of certificate payments: not found"))

        report = await estate.run(Mode.FULL)

        assert removals(estate) == []
        assert old_ids <= set(estate.apim.held_certificates)
        assert report.retryable

    run(test)


def test_with_every_certificate_a_deletion_between_the_list_and_the_read_is_confirmed_then_retired() -> None:
    async def test() -> None:
        estate = Estate()  # CERTIFICATE_NAMES=*: names come from the vault's own list
        old_ids, payments_ids = retired_and_kept(estate)
        estate.vault.add_version("payments", Hierarchy(intermediates=1, organization="Payments"))
        estate.calls.hold("kv versions payments")

        run_task = asyncio.create_task(estate.run(Mode.FULL))
        await estate.calls.when_reached("kv versions payments")
        estate.vault.delete("payments")
        estate.calls.release("kv versions payments")
        report = await run_task

        assert "kv deleted payments" in estate.calls.log
        assert report.errors == []
        assert not (old_ids | payments_ids) & set(estate.apim.held_certificates)

    run(test)


def test_with_every_certificate_a_404_not_found_among_the_deleted_removes_nothing() -> None:
    async def test() -> None:
        estate = Estate()
        old_ids, _ = retired_and_kept(estate)
        estate.vault.add_version("payments", Hierarchy(intermediates=1, organization="Payments"))
        estate.calls.fail("kv versions payments", NotFoundError("list versions of certificate payments: not found"))

        report = await estate.run(Mode.FULL)

        assert removals(estate) == []
        assert old_ids <= set(estate.apim.held_certificates)
        assert report.retryable  # purged in between, most likely: the next list settles it

    run(test)


def test_a_scoped_run_naming_a_certificate_that_does_not_exist_asks_nothing_more() -> None:
    async def test() -> None:
        estate = Estate()
        estate.vault.add_version("orders", Hierarchy(intermediates=1))

        report = await estate.run(Mode.ADDITIONS, "orders", "gone")

        assert report.missing == ["gone"]
        assert "kv deleted gone" not in estate.calls.log
        assert not any(call.startswith(("upload", "put")) for call in estate.calls.log)

    run(test)


def test_a_403_on_the_vault_s_list_is_a_configuration_error_and_nothing_is_removed() -> None:
    async def test() -> None:
        estate = Estate()
        retired_and_kept(estate)
        estate.calls.fail("kv list", AzureCallError("list certificates: HTTP 403 Forbidden", status=403))

        report = await estate.run(Mode.FULL)

        assert removals(estate) == []
        (error,) = report.errors
        assert "Key Vault Reader" in error
        assert "on the vault" in error
        assert not report.retryable

    run(test)


def test_a_403_on_a_secret_names_the_secrets_role_but_a_disabled_version_stays_retryable() -> None:
    async def test() -> None:
        estate = Estate(CERTIFICATE_NAMES="orders")
        estate.vault.add_version("orders", Hierarchy(intermediates=1))
        forbidden = AzureCallError("read the secret: HTTP 403", status=403, code="Forbidden/ForbiddenByRbac")
        estate.calls.fail("kv secret ordersv1", forbidden)

        report = await estate.run(Mode.FULL)

        (error,) = report.errors
        assert "Key Vault Secrets User" in error
        assert "orders" in error
        assert not report.retryable

        estate = Estate(CERTIFICATE_NAMES="orders")
        estate.vault.add_version("orders", Hierarchy(intermediates=1))
        disabled = AzureCallError("read the secret: HTTP 403", status=403, code="Forbidden/SecretDisabled")
        estate.calls.fail("kv secret ordersv1", disabled)

        report = await estate.run(Mode.FULL)

        assert report.retryable

    run(test)
