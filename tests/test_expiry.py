"""The expiry horizon: its arithmetic at the boundaries, pure; and the audit's `expiring` status end to end."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy, make_certificate, pfx_secret
from shared.chain import Authority, Certificate, Role, TrustPath
from shared.desired import Desired, NeededLeaf
from shared.expiry import expiry_horizon, within
from shared.plan import Observed, certificate_id_for
from shared.ports import ApimCertificate
from tests.support.harness import audit, deliver

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
DAYS_30 = timedelta(days=30)


@pytest.mark.parametrize(
    ("expires", "inside"),
    [
        (NOW - timedelta(days=3), True),  # expired
        (NOW, True),  # expires this instant
        (NOW + timedelta(hours=5), True),  # expires today
        (NOW + DAYS_30, True),  # exactly EXPIRY_WARNING_DAYS: the boundary is inside
        (NOW + DAYS_30 + timedelta(seconds=1), False),
    ],
)
def test_the_warning_window_at_its_boundaries(expires: datetime, inside: bool) -> None:
    assert within(expires, NOW, DAYS_30) is inside


def certificate(name: str, *, is_ca: bool, days: float) -> Certificate:
    issued = make_certificate(
        name, is_ca=is_ca, not_before=NOW - timedelta(days=400), not_after=NOW + timedelta(days=days)
    )
    return Certificate.from_x509(issued.certificate)


def test_the_horizon_names_the_leaf_the_earliest_ca_of_each_path_and_each_gateway_s_earliest() -> None:
    leaf = certificate("orders.example", is_ca=False, days=200)
    intermediate = certificate("Issuing CA", is_ca=True, days=10)
    root = certificate("Root CA", is_ca=True, days=3000)
    path = TrustPath(leaf, (Authority(intermediate, Role.INTERMEDIATE), Authority(root, Role.ROOT)), ())
    desired = Desired({}, leaves=(NeededLeaf("orders", "v2", path),))
    held = {
        certificate_id_for(c): ApimCertificate(certificate_id_for(c), c.sha1_thumbprint, c.subject, c.not_after)
        for c in (intermediate, root)
    }
    observed = Observed(held, {"gw-1": dict.fromkeys(held, True), "gw-2": {certificate_id_for(root): True}})

    horizon = expiry_horizon(desired, observed, ["gw-1", "gw-2"], now=NOW, warning=DAYS_30)

    (item,) = horizon.certificates
    assert (item.leaf_expires, item.earliest_ca, item.earliest_ca_expires) == (
        leaf.not_after,
        "CN=Issuing CA",
        intermediate.not_after,
    )
    assert {(g.gateway, g.certificate_id) for g in horizon.gateways} == {
        ("gw-1", certificate_id_for(intermediate)),
        ("gw-2", certificate_id_for(root)),
    }
    assert horizon.earliest == intermediate.not_after
    assert horizon.expiring() == [
        "orders (v2): CA CN=Issuing CA expires on 2026-12-14 (10 days left)",
        f"gw-1: {certificate_id_for(intermediate)} expires on 2026-12-14 (10 days left)",
    ]


def test_a_self_signed_leaf_has_no_ca_and_an_expired_one_says_so() -> None:
    leaf = certificate("lonely.example", is_ca=False, days=-1)
    desired = Desired({}, leaves=(NeededLeaf("lonely", "v1", TrustPath(leaf, (Authority(leaf, Role.ROOT),), ())),))

    horizon = expiry_horizon(desired, Observed({}, {}), [], now=NOW, warning=DAYS_30)

    assert horizon.certificates[0].earliest_ca_expires is None
    assert horizon.expiring() == [f"lonely (v1): leaf expired on {leaf.not_after:%Y-%m-%d}"]


def test_an_audit_with_a_leaf_inside_the_window_says_expiring(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    emu = configured
    pki = Hierarchy(intermediates=1)
    leaf = pki.issue("orders.example", not_after=datetime.now(UTC) + timedelta(days=12))
    emu.vault.import_certificate("orders", pfx_secret(leaf.key, leaf.certificate, pki.ca_certificates()))
    deliver(emu.vault.certificate_event("orders"))
    caplog.set_level(logging.INFO, logger="trustsync")

    audit()

    (record,) = [r for r in caplog.records if r.getMessage().startswith("TRUSTSYNC_AUDIT")]
    assert record.levelno == logging.WARNING
    assert "status=expiring" in record.getMessage()
    report = json.loads(record.getMessage().split(" ", 2)[2])
    assert report["inSync"] is True
    assert report["expiry"]["expiring"] == [
        f"orders ({emu.vault.versions('orders')[0]}): leaf expires on "
        f"{leaf.certificate.not_valid_after_utc:%Y-%m-%d} (11 days left)"
    ]

    monkeypatch.setenv("EXPIRY_WARNING_DAYS", "7")
    caplog.clear()
    audit()
    assert any("TRUSTSYNC_AUDIT status=in-sync" in r.getMessage() for r in caplog.records)
