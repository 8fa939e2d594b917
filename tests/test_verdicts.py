"""Verdicts: would each gateway accept each needed leaf, and which removals the gate holds back. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from emulator.pki import Issued, make_certificate
from shared.chain import Authority, Certificate, Role, TrustPath
from shared.desired import Desired, DesiredAuthority, NeededLeaf
from shared.plan import ActionKind, Observed, certificate_id_for, plan_narrowing
from shared.ports import ApimCertificate
from shared.report import Report, RunStatus
from shared.scope import Mode, Scope
from shared.verdicts import judge, keep_accepted

NOW = datetime.now(UTC)


def cert(issued: Issued) -> Certificate:
    return Certificate.from_x509(issued.certificate)


def ours(*certs: Certificate) -> dict[str, ApimCertificate]:
    return {certificate_id_for(c): ApimCertificate(certificate_id_for(c), c.sha1_thumbprint, c.subject) for c in certs}


ROOT = make_certificate("Contoso Root", is_ca=True)
ISSUING = make_certificate("Contoso Issuing", issuer=ROOT, is_ca=True)
LEAF = make_certificate("orders.example", issuer=ISSUING)
PATH = TrustPath(cert(LEAF), (Authority(cert(ISSUING), Role.INTERMEDIATE), Authority(cert(ROOT), Role.ROOT)), ())


def desired(
    path: TrustPath = PATH, *, trust_intermediates: bool = True, also_in_secret: tuple[Certificate, ...] = ()
) -> Desired:
    authorities = {
        a.certificate.sha1_thumbprint: DesiredAuthority(
            a.certificate, a.role is Role.ROOT or trust_intermediates, frozenset({"orders"})
        )
        for a in path.authorities
    }
    read = (path.leaf, *(a.certificate for a in path.authorities), *also_in_secret)
    return Desired(authorities, leaves=(NeededLeaf("orders", "v1", path),), known={c.sha1_thumbprint: c for c in read})


def test_a_gateway_holding_the_chain_accepts_the_leaf() -> None:
    root, issuing = cert(ROOT), cert(ISSUING)
    observed = Observed(
        ours(root, issuing), {"gw": {certificate_id_for(root): True, certificate_id_for(issuing): False}}
    )
    (verdict,) = judge(desired(), observed, ["gw"], at=NOW)
    assert verdict.accepted
    assert verdict.to_dict() == {
        "gateway": "gw",
        "certificate": "orders",
        "version": "v1",
        "leaf": "CN=orders.example",
        "verdict": "accepted",
    }


def test_a_missing_intermediate_is_a_rejection_that_says_so() -> None:
    root = cert(ROOT)
    observed = Observed(ours(root), {"gw": {certificate_id_for(root): True}})
    (verdict,) = judge(desired(), observed, ["gw"], at=NOW)
    assert not verdict.accepted
    assert "missing intermediate" in verdict.verdict.reason
    assert "Contoso Issuing" in verdict.verdict.reason


def test_a_root_held_untrusted_is_no_anchor() -> None:
    root, issuing = cert(ROOT), cert(ISSUING)
    observed = Observed(
        ours(root, issuing), {"gw": {certificate_id_for(root): False, certificate_id_for(issuing): False}}
    )
    (verdict,) = judge(desired(), observed, ["gw"], at=NOW)
    assert not verdict.accepted
    assert "no trusted anchor" in verdict.verdict.reason


def test_a_certificate_the_app_never_read_is_named_in_a_rejection() -> None:
    root = cert(ROOT)
    stranger = cert(make_certificate("Somebody's CA", is_ca=True))
    held = {**ours(root), "their-ca": ApimCertificate("their-ca", stranger.sha1_thumbprint)}
    observed = Observed(held, {"gw": {certificate_id_for(root): True, "their-ca": True}})
    (verdict,) = judge(desired(), observed, ["gw"], at=NOW)
    assert not verdict.accepted
    assert "1 certificate(s) the app has not read" in verdict.verdict.reason


def test_a_removal_that_would_break_an_accepted_leaf_is_held_back_with_its_deletion() -> None:
    # Root rollover: the secret holds the new self-signed root (same name and key) and the old one. The
    # new one cannot be held under the app's id (another certificate squats it), and the gateway
    # accepts the leaf through the old root of ours.
    old_root = cert(ROOT)
    new_root = cert(make_certificate("Contoso Root", is_ca=True, key=ROOT.key))
    issuing = cert(ISSUING)
    path = TrustPath(cert(LEAF), (Authority(issuing, Role.INTERMEDIATE), Authority(new_root, Role.ROOT)), ())
    want = desired(path, trust_intermediates=False, also_in_secret=(old_root,))
    squatted = certificate_id_for(new_root)
    stranger = cert(make_certificate("Squatter", is_ca=True))
    observed = Observed(
        {**ours(old_root, issuing), squatted: ApimCertificate(squatted, stranger.sha1_thumbprint)},
        {"gw": {certificate_id_for(old_root): True, certificate_id_for(issuing): False}},
    )
    narrowing = plan_narrowing(want, observed, ["gw"]).actions
    assert {(a.kind, a.certificate_id) for a in narrowing} == {
        (ActionKind.REMOVE_GATEWAY_CA, certificate_id_for(old_root)),
        (ActionKind.DELETE_CERTIFICATE, certificate_id_for(old_root)),
    }

    kept, notes = keep_accepted(narrowing, want, observed, ["gw"], at=NOW)

    assert kept == ()
    (note,) = notes
    assert note.startswith(f"kept {certificate_id_for(old_root)} on gw: without it gw would reject orders (v1)")


def test_removals_that_break_nothing_all_go_ahead() -> None:
    root, issuing = cert(ROOT), cert(ISSUING)
    retired = cert(make_certificate("Retired CA", is_ca=True))
    observed = Observed(
        ours(root, issuing, retired),
        {"gw": {certificate_id_for(c): True for c in (root, issuing, retired)}},
    )
    narrowing = plan_narrowing(desired(), observed, ["gw"]).actions
    assert keep_accepted(narrowing, desired(), observed, ["gw"], at=NOW) == (narrowing, ())
    assert len(narrowing) == 2


def test_a_rejected_verdict_alone_means_the_run_is_not_in_sync() -> None:
    root = cert(ROOT)
    observed = Observed(ours(root), {"gw": {certificate_id_for(root): True}})
    report = Report(Scope(), Mode.DRY_RUN, verdicts=judge(desired(), observed, ["gw"], at=NOW))
    assert report.outcomes == [] and report.conflicts == []  # noqa: PT018 - nothing else says drift
    assert report.status is RunStatus.DRIFT
    assert report.to_dict()["verdicts"]["rejected"][0]["gateway"] == "gw"
