"""The pure core: versions to trust, desired authorities, ownership and the plan. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from emulator.pki import make_certificate
from shared.chain import Authority, Certificate, Role, TrustPath
from shared.desired import Desired, DesiredAuthority, VersionPath, desired_state, versions_to_trust
from shared.plan import (
    MAX_ID_LENGTH,
    OWNED_PREFIX,
    ActionKind,
    AppId,
    Observed,
    Ownership,
    Precedence,
    certificate_id_for,
    is_ours,
    parse_app_id,
    plan_additions,
    plan_narrowing,
    plan_uploads,
)
from shared.ports import ApimCertificate, VersionInfo, normalised_id
from shared.settings import MAX_DEPLOYMENT_ID_LENGTH
from tests.support.legacy import legacy_id
from tests.support.planning import plan_all

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def ca(name: str) -> Certificate:
    return Certificate.from_x509(make_certificate(name, is_ca=True).certificate)


def leaf(name: str = "leaf") -> Certificate:
    return Certificate.from_x509(make_certificate(name).certificate)


def version(
    name: str, *, enabled: bool = True, created: timedelta = timedelta(0), expires_in: timedelta = 90 * DAY
) -> VersionInfo:
    return VersionInfo(name, enabled, created=NOW - created, expires=NOW + expires_in, leaf_thumbprint=None)


def desired(*authorities: tuple[Certificate, bool], complete: bool = True) -> Desired:
    return Desired(
        {cert.sha1_thumbprint: DesiredAuthority(cert, trusted, frozenset({"web"})) for cert, trusted in authorities},
        complete=complete,
    )


def ours(*certs: Certificate) -> dict[str, ApimCertificate]:
    return {certificate_id_for(c): ApimCertificate(certificate_id_for(c), c.sha1_thumbprint, c.subject) for c in certs}


def kinds(actions: tuple[object, ...]) -> list[tuple[str, str, str | None]]:
    return sorted((a.kind.value, a.certificate_id, a.gateway) for a in actions)  # type: ignore[attr-defined]


def picked(versions: list[VersionInfo], grace: timedelta = DAY) -> list[str]:
    return [v.version for v in versions_to_trust(versions, NOW, grace)]


class TestVersionsToTrust:
    def test_latest_enabled_and_previous_unexpired(self) -> None:
        versions = [version("v1", created=60 * DAY), version("v3", created=DAY * 2), version("v2", created=30 * DAY)]
        assert picked(versions) == ["v3", "v2"]

    def test_disabled_versions_are_skipped(self) -> None:
        versions = [version("v1", created=60 * DAY), version("v2", created=30 * DAY, enabled=False), version("v3")]
        assert picked(versions) == ["v3", "v1"]

    def test_every_version_expired_is_a_retired_certificate(self) -> None:
        versions = [
            version("v1", created=400 * DAY, expires_in=-10 * DAY),
            version("v2", created=DAY, expires_in=-DAY),
        ]
        assert picked(versions) == []

    def test_expired_previous_is_dropped_but_latest_kept(self) -> None:
        versions = [version("v1", created=400 * DAY, expires_in=-10 * DAY), version("v2", created=DAY)]
        assert picked(versions) == ["v2"]

    def test_nothing_enabled(self) -> None:
        assert picked([version("v1", enabled=False)]) == []

    def test_a_version_superseded_within_the_grace_stays(self) -> None:
        # v1 (chain A), v2 (chain B) an hour ago, v3 (chain B re-issued) just now: v1 was the latest
        # until an hour ago, so a backend may still serve it.
        versions = [
            version("v1", created=30 * DAY),
            version("v2", created=timedelta(hours=1)),
            version("v3", created=timedelta(minutes=1)),
        ]
        assert picked(versions, grace=DAY) == ["v3", "v2", "v1"]
        assert picked(versions, grace=timedelta(minutes=30)) == ["v3", "v2"]

    def test_the_grace_ends_exactly_at_its_length(self) -> None:
        versions = [version("v1", created=30 * DAY), version("v2", created=DAY), version("v3", created=timedelta(0))]
        assert picked(versions, grace=DAY) == ["v3", "v2"]  # v1 stopped being the latest a full day ago
        assert picked(versions, grace=DAY + timedelta(seconds=1)) == ["v3", "v2", "v1"]

    def test_an_expired_version_is_never_kept_for_the_grace(self) -> None:
        versions = [
            version("v1", created=30 * DAY, expires_in=-timedelta(seconds=1)),
            version("v2", created=timedelta(hours=1)),
            version("v3"),
        ]
        assert picked(versions) == ["v3", "v2"]


class TestDesiredState:
    def path(self, *authorities: tuple[Certificate, Role], the_leaf: Certificate | None = None) -> TrustPath:
        return TrustPath(the_leaf or leaf(), tuple(Authority(c, role) for c, role in authorities), ())

    def test_anchors_always_trusted_intermediates_by_setting(self) -> None:
        root, intermediate = ca("Root"), ca("Intermediate")
        paths = {"web": [VersionPath(version("v1"), self.path((intermediate, Role.INTERMEDIATE), (root, Role.ROOT)))]}

        strict = desired_state(paths, trust_intermediates=False)
        field = desired_state(paths, trust_intermediates=True)

        assert strict.authorities[root.sha1_thumbprint].trusted
        assert not strict.authorities[intermediate.sha1_thumbprint].trusted
        assert field.authorities[intermediate.sha1_thumbprint].trusted

    def test_an_intermediate_that_anchors_a_path_is_trusted_whatever_the_setting(self) -> None:
        intermediate = ca("Issuing CA")  # the secret stops below the root
        paths = {"web": [VersionPath(version("v1"), self.path((intermediate, Role.INTERMEDIATE)))]}
        assert desired_state(paths, trust_intermediates=False).authorities[intermediate.sha1_thumbprint].trusted

    def test_shared_ca_is_needed_by_both_certificates_and_both_leaves_are_needed(self) -> None:
        root = ca("Root")
        a, b = leaf("a"), leaf("b")
        paths = {
            "api": [VersionPath(version("v1"), self.path((root, Role.ROOT), the_leaf=a))],
            "web": [VersionPath(version("v7"), self.path((root, Role.ROOT), the_leaf=b))],
        }
        result = desired_state(paths, trust_intermediates=True)
        assert result.authorities[root.sha1_thumbprint].needed_by == {"api", "web"}
        assert [(n.certificate_name, n.version, n.leaf) for n in result.leaves] == [("api", "v1", a), ("web", "v7", b)]


TEAM_A = Ownership("teama")
TEAM_B = Ownership("teamb")
HEIR = Ownership("heir", adopts_legacy=True)  # DEPLOYMENT_ID left empty: adopts the ids of earlier versions


def held(*pairs: tuple[str, Certificate]) -> dict[str, ApimCertificate]:
    return {cid: ApimCertificate(cid, cert.sha1_thumbprint, cert.subject) for cid, cert in pairs}


class TestOwnership:
    def test_ids_are_deterministic_readable_valid_and_carry_the_deployment_and_thumbprint(self) -> None:
        cert = ca("Contoso Issuing CA 01 — West/Europe <test>")
        cid = certificate_id_for(cert, TEAM_A)
        assert cid == TEAM_A.certificate_id(cert)
        assert cid.startswith(OWNED_PREFIX + "teama--contoso-issuing-ca-01-")
        assert cid.endswith("-" + cert.sha1_thumbprint.lower())
        assert len(cid) <= MAX_ID_LENGTH
        assert not set(cid) & set("*#&+:<>?")
        assert parse_app_id(cid) == AppId("teama", cert.sha1_thumbprint)

    @pytest.mark.parametrize("deployment", ["a", "z" * MAX_DEPLOYMENT_ID_LENGTH])
    def test_the_longest_names_fit_in_80_characters_with_the_longest_deployment_ids(self, deployment: str) -> None:
        owner = Ownership(deployment)
        for name in ("x-" * 32, "A" * 64, "Contoso Issuing Certificate Authority for West European Region"):
            cid = owner.certificate_id(ca(name))
            assert MAX_ID_LENGTH - 1 <= len(cid) <= MAX_ID_LENGTH, cid  # a hyphen cut at the end goes
            assert parse_app_id(cid) == AppId(deployment, cid[-40:].upper())

    def test_a_name_without_letters_or_digits_still_gets_an_id(self) -> None:
        cert = ca("—")
        assert TEAM_A.certificate_id(cert) == f"trustsync-teama--ca-{cert.sha1_thumbprint.lower()}"

    def test_ours_only_with_our_deployment_our_exact_pattern_and_the_thumbprint_it_encodes(self) -> None:
        cert, other = ca("Root"), ca("Other")
        cid = TEAM_A.certificate_id(cert)
        assert is_ours(ApimCertificate(cid, cert.sha1_thumbprint), TEAM_A)
        # APIM ids ignore case: the port lists them normalised (tests/test_ids.py reads one through the adapter).
        assert is_ours(ApimCertificate(normalised_id(cid.upper()), cert.sha1_thumbprint.lower()), TEAM_A)
        assert not is_ours(ApimCertificate(cid, other.sha1_thumbprint), TEAM_A)  # our id, someone else's certificate
        assert not is_ours(ApimCertificate(cid, cert.sha1_thumbprint), TEAM_B)  # another deployment's
        assert not is_ours(ApimCertificate(TEAM_B.certificate_id(cert), cert.sha1_thumbprint), TEAM_A)
        assert not is_ours(ApimCertificate("trustsync-partner-root", cert.sha1_thumbprint), HEIR)
        assert not is_ours(ApimCertificate(f"trustsync-{cert.sha1_thumbprint.lower()}", cert.sha1_thumbprint), HEIR)
        assert not is_ours(ApimCertificate(f"x{cid}", cert.sha1_thumbprint), TEAM_A)
        assert not is_ours(ApimCertificate(cid.replace("teama--", "teama---"), cert.sha1_thumbprint), TEAM_A)

    def test_legacy_ids_are_ours_only_for_the_deployment_that_adopts_them(self) -> None:
        cert = ca("Contoso Root CA")
        legacy = ApimCertificate(legacy_id(cert), cert.sha1_thumbprint)
        assert parse_app_id(legacy.id) == AppId(None, cert.sha1_thumbprint)
        assert HEIR.is_ours(legacy)
        assert not TEAM_A.is_ours(legacy)
        assert not HEIR.is_ours(ApimCertificate(legacy.id, ca("Other").sha1_thumbprint))
        # The heir's own ids are its own, and never mistaken for legacy ids by anyone.
        assert not TEAM_A.is_ours(ApimCertificate(HEIR.certificate_id(cert), cert.sha1_thumbprint))
        assert not HEIR.is_legacy(HEIR.certificate_id(cert))

    @pytest.mark.parametrize(
        "name", ["Root", "teama Root", "teama", "x-" * 32, "Contoso teama  Issuing", "a-b-c-d-e-f-g-h-i-j-k"]
    )
    def test_no_id_of_one_form_parses_as_the_other(self, name: str) -> None:
        cert = ca(name)
        for owner in (TEAM_A, TEAM_B, HEIR, Ownership("a"), Ownership("0123456789")):
            assert parse_app_id(owner.certificate_id(cert)) == AppId(owner.deployment, cert.sha1_thumbprint)
        assert parse_app_id(legacy_id(cert)) == AppId(None, cert.sha1_thumbprint)

    @pytest.mark.parametrize("deployment", ["", "TeamA", "team-a", "team_a", "a" * (MAX_DEPLOYMENT_ID_LENGTH + 1)])
    def test_a_deployment_id_out_of_bounds_is_refused(self, deployment: str) -> None:
        with pytest.raises(ValueError, match="a deployment id is 1 to 10 of a-z and 0-9"):
            Ownership(deployment)


class TestDeployments:
    """Two deployments on one APIM service: each plans only with its own entries."""

    def test_a_full_run_leaves_the_other_deployments_entries_alone_even_when_it_needs_nothing(self) -> None:
        mine, theirs, shared_root = ca("Mine"), ca("Theirs"), ca("Shared Root")
        a_ids = [TEAM_A.certificate_id(c) for c in (mine, shared_root)]
        b_ids = [TEAM_B.certificate_id(c) for c in (theirs, shared_root)]
        observed = Observed(
            held(*zip(a_ids, (mine, shared_root), strict=True), *zip(b_ids, (theirs, shared_root), strict=True)),
            {"gw1": dict.fromkeys([*a_ids, *b_ids], True)},
            owner=TEAM_A,
        )

        actions, conflicts = plan_all(desired(), observed, ["gw1"])

        assert {a.certificate_id for a in actions} == set(a_ids)  # its own only, though nothing is needed
        assert all(a.narrows for a in actions)
        assert conflicts == ()
        as_b = Observed(observed.certificates, observed.gateway_cas, owner=TEAM_B)
        assert plan_all(desired((theirs, True), (shared_root, True)), as_b, ["gw1"]) == ((), ())

    def test_each_holds_its_own_copy_of_a_ca_both_need(self) -> None:
        root = ca("Shared Root")
        a_id = TEAM_A.certificate_id(root)
        observed = Observed(held((a_id, root)), {"gw1": {a_id: True}}, owner=TEAM_B)
        actions, conflicts = plan_all(desired((root, True)), observed, ["gw1"])
        b_id = TEAM_B.certificate_id(root)
        assert kinds(actions) == [("set-gateway-ca", b_id, "gw1"), ("upload-certificate", b_id, None)]
        assert conflicts == ()


class TestLegacyIds:
    """Entries written before ids carried a deployment: adopted by one deployment, replaced, then gone."""

    def test_the_heir_replaces_them_first_and_removes_them_once_its_own_entries_are_in(self) -> None:
        root, inter, retired = ca("Contoso Root"), ca("Contoso Issuing"), ca("Retired CA")
        old = {c: legacy_id(c) for c in (root, inter, retired)}
        observed = Observed(
            held(*((cid, c) for c, cid in old.items())),
            {"gw1": dict.fromkeys(old.values(), True), "gw2": dict.fromkeys(old.values(), True)},
            owner=HEIR,
        )
        want = desired((root, True), (inter, True))

        additions, _ = plan_all(want, observed, ["gw1", "gw2"], narrow=False)
        everything, _ = plan_all(want, observed, ["gw1", "gw2"])

        new = {c: HEIR.certificate_id(c) for c in (root, inter)}
        assert all(not a.narrows for a in additions)
        assert {(a.kind.value, a.certificate_id) for a in additions} == {
            *(("upload-certificate", cid) for cid in new.values()),
            *(("set-gateway-ca", cid) for cid in new.values()),
        }
        narrowing = everything[len(additions) :]
        assert kinds(narrowing) == sorted(
            [
                *(("remove-gateway-ca", cid, gw) for cid in old.values() for gw in ("gw1", "gw2")),
                *(("delete-certificate", cid, None) for cid in old.values()),
            ]
        )
        reasons = {a.reason for a in narrowing if a.certificate_id == old[root] and a.gateway}
        assert reasons == {f"an id of an earlier version, replaced by {new[root]}"}

    def test_a_legacy_entry_stays_on_a_gateway_until_the_heirs_own_entry_is_there(self) -> None:
        root = ca("Contoso Root")
        old, new = legacy_id(root), HEIR.certificate_id(root)
        observed = Observed(
            held((old, root), (new, root)), {"gw1": {old: True, new: True}, "gw2": {old: True}}, owner=HEIR
        )
        narrowing = plan_narrowing(desired((root, True)), observed, ["gw1", "gw2"])
        assert kinds(narrowing.actions) == [("remove-gateway-ca", old, "gw1")]  # not from gw2, not deleted
        assert narrowing.notes == (f"{old} stays on gw2 until {new} replaces it there",)

    def test_a_replacement_that_trusts_less_than_needed_does_not_replace(self) -> None:
        root = ca("Contoso Root")
        old, new = legacy_id(root), HEIR.certificate_id(root)
        observed = Observed(held((old, root), (new, root)), {"gw1": {old: True, new: False}}, owner=HEIR)
        narrowing = plan_narrowing(desired((root, True)), observed, ["gw1"])
        assert narrowing.actions == ()

    def test_a_legacy_entry_waiting_for_its_replacement_is_trusted_no_more_than_needed(self) -> None:
        inter = ca("Contoso Issuing")
        old = legacy_id(inter)
        observed = Observed(held((old, inter)), {"gw1": {old: True}}, owner=HEIR)
        narrowing = plan_narrowing(desired((inter, False)), observed, ["gw1"])  # chain building only
        assert [(a.kind, a.certificate_id, a.trusted, a.replace) for a in narrowing.actions] == [
            (ActionKind.SET_GATEWAY_CA, old, False, True)
        ]

    def test_a_deployment_that_does_not_adopt_them_never_touches_them(self) -> None:
        root, retired = ca("Contoso Root"), ca("Retired CA")
        old = [legacy_id(root), legacy_id(retired)]
        observed = Observed(held((old[0], root), (old[1], retired)), {"gw1": dict.fromkeys(old, True)}, owner=TEAM_A)
        actions, conflicts = plan_all(desired((root, True)), observed, ["gw1"])
        assert not {a.certificate_id for a in actions} & set(old)
        assert conflicts == ()


class TestAdditions:
    def test_everything_missing(self) -> None:
        root, inter = ca("Root"), ca("Inter")
        actions, conflicts = plan_all(desired((root, True), (inter, True)), Observed({}, {}), ["gw1", "gw2"])
        uploads = [a for a in actions if a.kind is ActionKind.UPLOAD_CERTIFICATE]
        sets = [a for a in actions if a.kind is ActionKind.SET_GATEWAY_CA]
        assert sorted(a.certificate_id for a in uploads) == sorted(map(certificate_id_for, (root, inter)))
        assert sorted((a.gateway, a.certificate_id) for a in sets) == sorted(
            (gw, certificate_id_for(c)) for gw in ("gw1", "gw2") for c in (root, inter)
        )
        assert all(a.trusted and not a.replace for a in sets)
        assert conflicts == ()

    def test_in_sync_is_empty(self) -> None:
        root = ca("Root")
        observed = Observed(ours(root), {"gw1": {certificate_id_for(root): True}})
        assert plan_all(desired((root, True)), observed, ["gw1"]) == ((), ())

    def test_a_foreign_certificate_with_the_same_thumbprint_is_not_referenced(self) -> None:
        root = ca("Root")
        theirs = {"their-root": ApimCertificate("their-root", root.sha1_thumbprint)}
        actions, _ = plan_all(desired((root, True)), Observed(theirs, {"gw1": {"their-root": True}}), ["gw1"])
        assert kinds(actions) == [
            ("set-gateway-ca", certificate_id_for(root), "gw1"),
            ("upload-certificate", certificate_id_for(root), None),
        ]

    def test_a_foreign_untrusted_entry_is_the_same_conflict_whatever_existed_first(self) -> None:
        root = ca("Root")
        cid = certificate_id_for(root)
        theirs = {"their-root": ApimCertificate("their-root", root.sha1_thumbprint)}
        before_us = Observed(theirs, {"gw1": {"their-root": False}})
        after_us = Observed({**theirs, **ours(root)}, {"gw1": {"their-root": False, cid: True}})

        first = plan_all(desired((root, True)), before_us, ["gw1"])
        second = plan_all(desired((root, True)), after_us, ["gw1"])

        assert first[1] == second[1]
        assert len(first[1]) == 1
        assert "their-root" in first[1][0]
        assert second[0] == ()  # ours is in place: nothing to write, the conflict stays reported

    def test_our_entry_with_too_little_trust_is_raised_with_its_etag(self) -> None:
        inter = ca("Inter")
        observed = Observed(ours(inter), {"gw1": {certificate_id_for(inter): False}})
        actions, _ = plan_all(desired((inter, True)), observed, ["gw1"], narrow=False)
        assert [(a.kind, a.trusted, a.replace) for a in actions] == [(ActionKind.SET_GATEWAY_CA, True, True)]

    def test_additions_never_lower_trust(self) -> None:
        inter = ca("Inter")
        observed = Observed(ours(inter), {"gw1": {certificate_id_for(inter): True}})
        assert plan_all(desired((inter, False)), observed, ["gw1"], narrow=False) == ((), ())

    def test_our_id_holding_another_certificate_is_a_conflict_not_an_overwrite(self) -> None:
        root, other = ca("Root"), ca("Other")
        cid = certificate_id_for(root)
        observed = Observed({cid: ApimCertificate(cid, other.sha1_thumbprint)}, {"gw1": {cid: True}})
        actions, conflicts = plan_all(desired((root, True)), observed, ["gw1"])
        assert actions == ()
        assert len(conflicts) == 1
        assert cid in conflicts[0]


class TestPrecedence:
    def test_an_uploaded_ca_and_its_puts_go_first_a_held_ca_next_and_what_narrows_last(self) -> None:
        new, held, nowhere, raised, stale = ca("New"), ca("Held"), ca("Nowhere"), ca("Raised"), ca("Stale")
        new_id, held_id, nowhere_id, raised_id, stale_id = map(certificate_id_for, (new, held, nowhere, raised, stale))
        # Nowhere: held in APIM (an earlier run uploaded it) but on no gateway yet: it needs no upload.
        observed = Observed(
            ours(held, nowhere, raised, stale), {"gw1": {held_id: True, raised_id: False, stale_id: True}, "gw2": {}}
        )
        wanted = desired((new, True), (held, True), (nowhere, True), (raised, True))

        actions, _ = plan_all(wanted, observed, ["gw1", "gw2"])

        first, next_, last = Precedence.FIRST, Precedence.NEXT, Precedence.LAST
        assert {(a.kind.value, a.certificate_id, a.gateway): a.precedence for a in actions} == {
            ("upload-certificate", new_id, None): first,
            ("set-gateway-ca", new_id, "gw1"): first,
            ("set-gateway-ca", new_id, "gw2"): first,
            ("set-gateway-ca", held_id, "gw2"): next_,
            ("set-gateway-ca", nowhere_id, "gw1"): next_,
            ("set-gateway-ca", nowhere_id, "gw2"): next_,
            ("set-gateway-ca", raised_id, "gw1"): next_,  # its isTrusted raised
            ("set-gateway-ca", raised_id, "gw2"): next_,
            ("remove-gateway-ca", stale_id, "gw1"): last,
            ("delete-certificate", stale_id, None): last,
        }

    def test_a_gateway_s_puts_keep_their_precedence_whichever_gateway_list_is_planned_first(self) -> None:
        # The engine plans each gateway as its list arrives: the stamp must not depend on that order.
        held, new = ca("Held"), ca("New")
        observed = Observed(ours(held), {"gw1": {certificate_id_for(held): True}, "gw2": {}})
        wanted = desired((held, True), (new, True))

        def stamps(order: list[str]) -> set[tuple[str, str | None, Precedence]]:
            uploads = plan_uploads(wanted, observed.certificates, observed.owner)
            return {
                (a.certificate_id, a.gateway, a.precedence)
                for gateway in order
                for a in plan_additions(
                    gateway, wanted, observed.gateway_cas[gateway], uploads, observed.certificates
                ).actions
            }

        assert stamps(["gw1", "gw2"]) == stamps(["gw2", "gw1"])
        assert (certificate_id_for(held), "gw2", Precedence.NEXT) in stamps(["gw2"])

    def test_lowering_an_istrusted_is_last(self) -> None:
        inter = ca("Inter")
        observed = Observed(ours(inter), {"gw1": {certificate_id_for(inter): True}})
        (action,) = plan_narrowing(desired((inter, False)), observed, ["gw1"]).actions
        assert (action.kind, action.trusted, action.precedence) == (ActionKind.SET_GATEWAY_CA, False, Precedence.LAST)


class TestNarrowing:
    def test_only_our_unneeded_entries_go_and_only_from_selected_gateways(self) -> None:
        keep, stale = ca("Keep"), ca("Stale")
        partner = ApimCertificate("trustsync-partner-root", ca("Partner").sha1_thumbprint)
        observed = Observed(
            {**ours(keep, stale), partner.id: partner},
            {
                "gw1": {certificate_id_for(keep): True, certificate_id_for(stale): True, partner.id: True},
                "gw-other": {partner.id: True},
            },
        )
        actions = plan_narrowing(desired((keep, True)), observed, ["gw1"]).actions
        assert kinds(actions) == [
            ("delete-certificate", certificate_id_for(stale), None),
            ("remove-gateway-ca", certificate_id_for(stale), "gw1"),
        ]

    def test_a_certificate_used_by_an_unselected_gateway_is_not_deleted(self) -> None:
        keep, stale = ca("Keep"), ca("Stale")
        stale_id = certificate_id_for(stale)
        observed = Observed(ours(keep, stale), {"gw1": {stale_id: True}, "gw-other": {stale_id: True}})
        narrowing = plan_narrowing(desired((keep, True)), observed, ["gw1"])
        assert kinds(narrowing.actions) == [("remove-gateway-ca", stale_id, "gw1")]
        assert narrowing.notes == (
            f"{stale_id} is not needed but stays: gateway(s) gw-other outside the selection use it",
        )

    def test_trust_lowered_to_what_is_needed(self) -> None:
        inter = ca("Inter")
        observed = Observed(ours(inter), {"gw1": {certificate_id_for(inter): True}})
        (action,) = plan_narrowing(desired((inter, False)), observed, ["gw1"]).actions
        assert (action.kind, action.trusted, action.replace, action.narrows) == (
            ActionKind.SET_GATEWAY_CA,
            False,
            True,
            True,
        )

    def test_no_narrowing_when_the_desired_state_is_incomplete(self) -> None:
        keep, stale = ca("Keep"), ca("Stale")
        observed = Observed(
            ours(keep, stale), {"gw1": {certificate_id_for(keep): True, certificate_id_for(stale): True}}
        )
        assert plan_all(desired((keep, True), complete=False), observed, ["gw1"]) == ((), ())

    @pytest.mark.parametrize("narrow", [True, False])
    def test_plan_is_deterministic(self, narrow: bool) -> None:
        certs = [ca(f"CA {i}") for i in range(5)]
        want = desired(*((c, True) for c in certs))
        observed = Observed(ours(*certs[:2]), {"gw2": {}, "gw1": {}})
        assert plan_all(want, observed, ["gw2", "gw1"], narrow=narrow) == plan_all(
            want, observed, ["gw1", "gw2"], narrow=narrow
        )
