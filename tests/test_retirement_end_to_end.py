"""When trust is taken away, end to end: full resyncs through the real SDK clients against the
emulator's Key Vault (soft delete, roles on named certificates) and APIM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy, pfx_secret
from tests.resilience.scenarios import arrange_trusted
from tests.support.harness import Backend, import_version, resync, trusted

NOW = datetime.now(UTC)


def removed(answer_body: dict[str, object]) -> set[tuple[str, str]]:
    actions = answer_body["actions"]
    assert isinstance(actions, list)
    return {
        (a["action"], a["certificateId"])
        for a in actions
        if a["action"] in ("remove-gateway-ca", "delete-certificate") and a["status"] == "applied"
    }


def trusted_ids(emu: Emulator) -> set[str]:
    """Every id some gateway holds: the roots trusted, the other CAs for chain building."""
    return {cid for cas in trusted(emu).values() for cid in cas}


@pytest.fixture
def estate(configured: Emulator, monkeypatch: pytest.MonkeyPatch) -> tuple[Backend, Backend]:
    """`orders` and `payments` in the vault, each with its own chain trusted on every gateway."""
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders,payments")
    orders = import_version(configured, "orders", Hierarchy(intermediates=1), created=NOW - timedelta(days=30))
    payments = import_version(
        configured, "payments", Hierarchy(intermediates=1, organization="Payments"), created=NOW - timedelta(days=30)
    )
    arrange_trusted(configured, orders)
    arrange_trusted(configured, payments)
    return orders, payments


def test_a_typo_in_certificate_names_removes_nothing_and_names_the_setting(
    configured: Emulator, estate: tuple[Backend, Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    orders, payments = estate
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders,paymnets")  # meant payments
    new = import_version(emu, "orders", Hierarchy(intermediates=1, organization="Fabrikam"))

    answer = resync()

    assert answer.status == 500, answer.body
    assert answer.body["inSync"] is False
    (error,) = answer.body["errors"]
    assert "CERTIFICATE_NAMES" in error
    assert "paymnets" in error
    assert removed(answer.body) == set()
    assert trusted_ids(emu) >= orders.authority_ids | payments.authority_ids | new.authority_ids  # additions go on
    assert emu.count("kv.get_deleted_certificate") >= 1  # Key Vault was asked whether it was deleted


def test_a_403_on_a_named_certificate_removes_nothing_and_names_the_role(
    configured: Emulator, estate: tuple[Backend, Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    orders, payments = estate
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders,paymnets")
    emu.vault.allow_only(["orders", "payments"])  # the deployment's roles on named certificates

    answer = resync()

    assert answer.status == 500, answer.body
    (error,) = answer.body["errors"]
    assert "HTTP 403" in error
    assert "Key Vault Reader" in error
    assert "CERTIFICATE_NAMES" in error
    assert removed(answer.body) == set()
    assert trusted_ids(emu) >= orders.authority_ids | payments.authority_ids


@pytest.mark.parametrize("roles", ["vault", "named certificates"])
def test_a_deleted_certificate_is_retired_and_its_chain_removed(
    configured: Emulator, estate: tuple[Backend, Backend], roles: str
) -> None:
    emu = configured
    orders, payments = estate
    if roles == "named certificates":
        emu.vault.allow_only(["orders", "payments"])  # deleted certificates answer 403: a second look
    emu.vault.delete_certificate("payments")

    answer = resync()

    assert answer.status == 200, answer.body
    assert answer.body["inSync"] is True
    assert any("payments was deleted" in w for w in answer.body["warnings"])
    assert {cid for _, cid in removed(answer.body)} == payments.authority_ids
    assert trusted_ids(emu) == orders.authority_ids
    assert set(emu.apim.certificates) == orders.authority_ids
    if roles == "named certificates":
        forbidden = [r for r in emu.requests if r.operation == "kv.get_deleted_certificate"]
        assert forbidden
        assert all(r.status == 403 for r in forbidden)


def test_a_certificate_whose_versions_all_expired_is_retired_with_a_warning_and_its_chain_removed(
    configured: Emulator, estate: tuple[Backend, Backend]
) -> None:
    emu = configured
    orders, _ = estate
    pki = Hierarchy(intermediates=1, organization="Shipping")
    leaf = pki.issue("shipping.example", not_after=NOW - timedelta(minutes=5))
    emu.vault.import_certificate("payments", pfx_secret(leaf.key, leaf.certificate, pki.ca_certificates()))
    expired = Backend("payments", pki, leaf)
    arrange_trusted(emu, expired)
    for version in emu.vault.versions("payments")[:-1]:  # payments' first version, still valid, is disabled
        emu.vault.set_enabled("payments", version, False)

    answer = resync()

    assert answer.status == 200, answer.body
    assert answer.body["errors"] == []
    assert any("payments has only expired versions" in w for w in answer.body["warnings"])
    assert {cid for _, cid in removed(answer.body)} >= expired.authority_ids
    assert trusted_ids(emu) == orders.authority_ids


def test_a_version_superseded_by_one_enabled_lately_keeps_its_chain(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = configured
    monkeypatch.setenv("CERTIFICATE_NAMES", "orders")
    v1 = import_version(emu, "orders", Hierarchy(intermediates=1), created=NOW - timedelta(days=60))
    arrange_trusted(emu, v1)
    pki2 = Hierarchy(intermediates=1, organization="Fabrikam")
    leaf2 = pki2.issue("backend.internal.example")
    v2_id = emu.vault.import_certificate(
        "orders",
        pfx_secret(leaf2.key, leaf2.certificate, pki2.ca_certificates()),
        enabled=False,
        created=NOW - timedelta(days=3),
    )
    emu.vault.set_enabled("orders", v2_id, True, at=NOW - timedelta(hours=2))
    v2 = Backend("orders", pki2, leaf2)
    v3 = import_version(
        emu, "orders", Hierarchy(intermediates=1, organization="Northwind"), created=NOW - timedelta(hours=1)
    )

    answer = resync()

    assert answer.status == 200, answer.body
    assert removed(answer.body) == set()
    # v1 was the latest enabled version two hours ago: within ROTATION_GRACE (24 h) it stays trusted.
    assert trusted_ids(emu) == v1.authority_ids | v2.authority_ids | v3.authority_ids
