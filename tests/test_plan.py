"""The pure core: versions to trust, desired authorities, and the plan. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from emulator.pki import make_certificate
from shared.chain import Authority, Certificate, Role, TrustPath
from shared.desired import (
    CertificateChains,
    Desired,
    DesiredAuthority,
    VersionInfo,
    desired_authorities,
    versions_to_trust,
)
from shared.plan import (
    OWNED_PREFIX,
    ActionKind,
    ApimCertificate,
    Observed,
    certificate_id_for,
    is_owned,
    make_plan,
)

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def path(leaf: Certificate, *cas: Certificate) -> TrustPath:
    """leaf → intermediates → root, as trust_path returns it."""
    return TrustPath(
        leaf=leaf, authorities=(*(Authority(ca, Role.INTERMEDIATE) for ca in cas[:-1]), Authority(cas[-1], Role.ROOT))
    )


def ca(name: str) -> Certificate:
    return Certificate.from_x509(make_certificate(name, is_ca=True).certificate)


def version(name: str, *, enabled: bool = True, created_days_ago: int = 0, expires_in_days: int = 90) -> VersionInfo:
    return VersionInfo(
        version=name,
        enabled=enabled,
        created=NOW - timedelta(days=created_days_ago),
        expires=NOW + timedelta(days=expires_in_days),
        leaf_thumbprint=None,
    )


def desired(*authorities: tuple[Certificate, bool], complete: bool = True) -> Desired:
    return Desired(
        {cert.sha1_thumbprint: DesiredAuthority(cert, trusted, frozenset({"web"})) for cert, trusted in authorities},
        complete=complete,
    )


def in_apim(*certs: Certificate, ids: dict[Certificate, str] | None = None) -> dict[str, ApimCertificate]:
    found = {}
    for cert in certs:
        cid = (ids or {}).get(cert) or certificate_id_for(cert)
        found[cid] = ApimCertificate(cid, cert.sha1_thumbprint, cert.subject)
    return found


class TestVersionsToTrust:
    def test_latest_enabled_and_previous_unexpired(self) -> None:
        versions = [
            version("v1", created_days_ago=60),
            version("v3", created_days_ago=1),
            version("v2", created_days_ago=30),
        ]
        assert [v.version for v in versions_to_trust(versions, NOW)] == ["v3", "v2"]

    def test_disabled_versions_are_skipped(self) -> None:
        versions = [
            version("v1", created_days_ago=60),
            version("v2", created_days_ago=30, enabled=False),
            version("v3"),
        ]
        assert [v.version for v in versions_to_trust(versions, NOW)] == ["v3", "v1"]

    def test_expired_previous_is_dropped_but_latest_kept(self) -> None:
        versions = [version("v1", created_days_ago=400, expires_in_days=-10), version("v2", expires_in_days=-1)]
        assert [v.version for v in versions_to_trust(versions, NOW)] == ["v2"]

    def test_nothing_enabled(self) -> None:
        assert versions_to_trust([version("v1", enabled=False)], NOW) == ()


class TestDesiredAuthorities:
    def test_roots_always_trusted_intermediates_by_setting(self) -> None:
        root, intermediate = ca("Root"), ca("Intermediate")
        leaf = Certificate.from_x509(make_certificate("leaf").certificate)
        chain = path(leaf, intermediate, root)
        items = [CertificateChains("web", ((version("v1"), chain),))]

        strict = desired_authorities(items, trust_intermediates=False, now=NOW)
        field = desired_authorities(items, trust_intermediates=True, now=NOW)

        assert strict.authorities[root.sha1_thumbprint].trusted
        assert not strict.authorities[intermediate.sha1_thumbprint].trusted
        assert field.authorities[intermediate.sha1_thumbprint].trusted

    def test_shared_ca_is_needed_by_both_certificates(self) -> None:
        root = ca("Root")
        leaves = [Certificate.from_x509(make_certificate(n).certificate) for n in ("a", "b")]
        items = [
            CertificateChains(name, ((version("v1"), path(leaf, root)),))
            for name, leaf in zip(("api", "web"), leaves, strict=True)
        ]
        result = desired_authorities(items, trust_intermediates=True, now=NOW)
        assert result.authorities[root.sha1_thumbprint].needed_by == {"api", "web"}

    def test_expired_intermediate_is_reported_not_trusted(self) -> None:
        root = ca("Root")
        expired = Certificate.from_x509(
            make_certificate(
                "Old Intermediate", is_ca=True, not_after=NOW - timedelta(days=1), not_before=NOW - timedelta(days=9)
            ).certificate
        )
        leaf = Certificate.from_x509(make_certificate("leaf").certificate)
        items = [CertificateChains("web", ((version("v1"), path(leaf, expired, root)),))]

        result = desired_authorities(items, trust_intermediates=True, now=NOW)

        assert expired.sha1_thumbprint not in result.authorities
        assert root.sha1_thumbprint in result.authorities
        assert any("Old Intermediate" in note and "expired" in note for note in result.notes)


class TestCertificateIds:
    def test_deterministic_readable_and_valid(self) -> None:
        cert = ca("Contoso Issuing CA 01 — West/Europe <test>")
        cid = certificate_id_for(cert)
        assert cid == certificate_id_for(cert)
        assert cid.startswith(OWNED_PREFIX + "contoso-issuing-ca-01-west-europe-test-")
        assert len(cid) <= 80
        assert not set(cid) & set("*#&+:<>?")
        assert is_owned(cid)
        assert is_owned(cid.upper())
        assert not is_owned("my-root")

    def test_long_names_fit(self) -> None:
        assert len(certificate_id_for(ca("x-" * 32))) <= 80


class TestPlan:
    def test_everything_missing(self) -> None:
        root, inter = ca("Root"), ca("Inter")
        want = desired((root, True), (inter, True))
        plan = make_plan({"gw1": want, "gw2": want}, Observed({}, {}), allow_removals=False)

        uploads = [a for a in plan.actions if a.kind is ActionKind.UPLOAD_CERTIFICATE]
        sets = [a for a in plan.actions if a.kind is ActionKind.SET_GATEWAY_CA]
        assert sorted(a.certificate_id for a in uploads) == sorted(map(certificate_id_for, (root, inter)))
        assert all(a.certificate is not None and not a.replace for a in uploads)
        assert sorted((a.gateway, a.certificate_id) for a in sets) == sorted(
            (gw, certificate_id_for(c)) for gw in ("gw1", "gw2") for c in (root, inter)
        )
        assert all(a.trusted and not a.replace for a in sets)

    def test_in_sync_is_empty(self) -> None:
        root = ca("Root")
        observed = Observed(in_apim(root), {"gw1": {certificate_id_for(root): True}})
        plan = make_plan({"gw1": desired((root, True))}, observed, allow_removals=True)
        assert plan.is_empty
        assert plan.conflicts == ()

    def test_foreign_certificate_with_same_thumbprint_is_reused(self) -> None:
        root = ca("Root")
        observed = Observed(in_apim(root, ids={root: "my-own-root"}), {"gw1": {}})
        plan = make_plan({"gw1": desired((root, True))}, observed, allow_removals=True)
        assert [(a.kind, a.certificate_id) for a in plan.actions] == [(ActionKind.SET_GATEWAY_CA, "my-own-root")]
        assert any("reusing certificate my-own-root" in note for note in plan.notes)

    def test_foreign_gateway_entry_already_trusting_is_enough(self) -> None:
        root = ca("Root")
        observed = Observed(in_apim(root, ids={root: "my-own-root"}), {"gw1": {"my-own-root": True}})
        assert make_plan({"gw1": desired((root, True))}, observed, allow_removals=True).is_empty

    def test_own_entry_with_wrong_trust_is_updated_with_etag(self) -> None:
        inter = ca("Inter")
        cid = certificate_id_for(inter)
        observed = Observed(in_apim(inter), {"gw1": {cid: False}})
        plan = make_plan({"gw1": desired((inter, True))}, observed, allow_removals=False)
        assert [(a.kind, a.trusted, a.replace) for a in plan.actions] == [(ActionKind.SET_GATEWAY_CA, True, True)]

    def test_foreign_untrusted_entry_is_a_conflict_not_a_change(self) -> None:
        root = ca("Root")
        observed = Observed(in_apim(root, ids={root: "their-root"}), {"gw1": {"their-root": False}})
        plan = make_plan({"gw1": desired((root, True))}, observed, allow_removals=True)
        assert plan.actions == ()
        assert plan.conflicts
        assert "their-root" in plan.conflicts[0]

    def test_own_id_holding_another_certificate_is_replaced(self) -> None:
        root, other = ca("Root"), ca("Other")
        cid = certificate_id_for(root)
        observed = Observed({cid: ApimCertificate(cid, other.sha1_thumbprint)}, {"gw1": {cid: True}})
        plan = make_plan({"gw1": desired((root, True))}, observed, allow_removals=False)
        assert [(a.kind, a.replace) for a in plan.actions] == [(ActionKind.UPLOAD_CERTIFICATE, True)]

    def test_removals_only_of_own_entries_and_only_when_allowed(self) -> None:
        keep, stale, foreign = ca("Keep"), ca("Stale"), ca("Foreign")
        observed = Observed(
            in_apim(keep, stale, foreign, ids={foreign: "foreign-ca"}),
            {"gw1": {certificate_id_for(keep): True, certificate_id_for(stale): True, "foreign-ca": True}},
        )
        want = {"gw1": desired((keep, True))}

        assert make_plan(want, observed, allow_removals=False).is_empty
        plan = make_plan(want, observed, allow_removals=True)

        assert sorted((a.kind, a.certificate_id, a.gateway) for a in plan.actions) == [
            (ActionKind.DELETE_CERTIFICATE, certificate_id_for(stale), None),
            (ActionKind.REMOVE_GATEWAY_CA, certificate_id_for(stale), "gw1"),
        ]

    def test_no_removals_when_desired_state_is_incomplete(self) -> None:
        keep, stale = ca("Keep"), ca("Stale")
        observed = Observed(
            in_apim(keep, stale), {"gw1": {certificate_id_for(keep): True, certificate_id_for(stale): True}}
        )
        plan = make_plan({"gw1": desired((keep, True), complete=False)}, observed, allow_removals=True)
        assert plan.is_empty
        assert any("nothing removed" in note for note in plan.notes)

    def test_certificate_used_by_unselected_gateway_is_not_deleted(self) -> None:
        keep, stale = ca("Keep"), ca("Stale")
        stale_id = certificate_id_for(stale)
        observed = Observed(in_apim(keep, stale), {"gw1": {stale_id: True}, "gw-other": {stale_id: True}})
        plan = make_plan({"gw1": desired((keep, True))}, observed, allow_removals=True)
        kinds = {(a.kind, a.gateway) for a in plan.actions if a.certificate_id == stale_id}
        assert kinds == {(ActionKind.REMOVE_GATEWAY_CA, "gw1")}
        assert any("gw-other" in note for note in plan.notes)

    @pytest.mark.parametrize("allow_removals", [True, False])
    def test_plan_is_deterministic(self, allow_removals: bool) -> None:
        certs = [ca(f"CA {i}") for i in range(5)]
        want = desired(*((c, True) for c in certs))
        observed = Observed(in_apim(*certs[:2]), {"gw2": {}, "gw1": {}})
        first = make_plan({"gw2": want, "gw1": want}, observed, allow_removals=allow_removals)
        second = make_plan({"gw1": want, "gw2": want}, observed, allow_removals=allow_removals)
        assert first.actions == second.actions
