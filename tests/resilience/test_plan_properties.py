"""Random desired states against random APIM states (the app's entries, foreign ones, foreign copies
of a needed CA, our id squatted by another certificate, ids that only look like ours, gateways
outside the selection, trust flags either way, legacy ids the default deployment adopts, another
deployment's ids). The plan, applied as APIM would apply it, must never
touch what is not provably the app's, never reference a foreign certificate, never take away what is
needed, and reach a fixed point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emulator.pki import make_certificate
from shared.chain import Certificate
from shared.desired import Desired, DesiredAuthority
from shared.plan import LOCAL, Action, ActionKind, Observed, Ownership, certificate_id_for, is_ours
from shared.ports import ApimCertificate
from tests.support.legacy import legacy_id
from tests.support.planning import plan_all

POOL = [Certificate.from_x509(make_certificate(f"Fuzz CA {i}", is_ca=True).certificate) for i in range(3)]
SELECTABLE = ("gw-a", "gw-b")
UNSELECTED = "gw-outside"
THEIRS = Ownership("teamb")  # another deployment sharing the APIM service


@dataclass
class Apim:
    """A mutable copy of what APIM holds; `apply` does what APIM does with each action, or refuses."""

    certificates: dict[str, ApimCertificate]
    gateway_cas: dict[str, dict[str, bool]]

    def observed(self) -> Observed:
        return Observed(dict(self.certificates), {gw: dict(cas) for gw, cas in self.gateway_cas.items()})

    def apply(self, actions: tuple[Action, ...], after_each: Callable[[], None] = lambda: None) -> None:
        for action in actions:  # the engine's order: additions, then narrowing, deletions last
            if action.kind is ActionKind.UPLOAD_CERTIFICATE:
                assert action.certificate is not None
                assert action.certificate_id not in self.certificates, "the app never overwrites a certificate"
                cert = action.certificate
                self.certificates[action.certificate_id] = ApimCertificate(action.certificate_id, cert.sha1_thumbprint)
            elif action.kind is ActionKind.SET_GATEWAY_CA:
                assert action.gateway is not None
                assert action.trusted is not None
                assert action.certificate_id in self.certificates, "APIM: 404, no such certificate"
                self.gateway_cas[action.gateway][action.certificate_id] = action.trusted
            elif action.kind is ActionKind.REMOVE_GATEWAY_CA:
                assert action.gateway is not None
                del self.gateway_cas[action.gateway][action.certificate_id]
            else:
                users = [gw for gw, cas in self.gateway_cas.items() if action.certificate_id in cas]
                assert not users, f"APIM: 400, {action.certificate_id} is used by {users}"
                del self.certificates[action.certificate_id]
            after_each()

    def trusts(self, gateway: str) -> dict[str, bool]:
        """thumbprint → the widest trust any entry of the gateway gives it."""
        found: dict[str, bool] = {}
        for cid, trusted in self.gateway_cas[gateway].items():
            if cid in self.certificates:
                thumbprint = self.certificates[cid].thumbprint
                found[thumbprint] = found.get(thumbprint, False) or trusted
        return found

    def foreign(self) -> tuple[dict[str, str], dict[str, dict[str, bool]]]:
        ours = {cid for cid, cert in self.certificates.items() if is_ours(cert, LOCAL)}
        return (
            {cid: c.thumbprint for cid, c in self.certificates.items() if cid not in ours},
            {gw: {cid: ok for cid, ok in cas.items() if cid not in ours} for gw, cas in self.gateway_cas.items()},
        )


Scenario = tuple[Desired, list[str], Apim]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    selected = draw(st.lists(st.sampled_from(SELECTABLE), min_size=1, max_size=2, unique=True))
    wanted = draw(st.lists(st.tuples(st.sampled_from(range(len(POOL))), st.booleans()), max_size=4))
    authorities = {
        POOL[i].sha1_thumbprint: DesiredAuthority(POOL[i], trusted, frozenset({"orders"})) for i, trusted in wanted
    }
    desired = Desired(authorities, complete=draw(st.booleans()))

    certificates: dict[str, ApimCertificate] = {}
    for i, cert in enumerate(POOL):
        form = draw(st.sampled_from(["absent", "ours", "foreign", "both", "squatted", "lookalike", "legacy", "theirs"]))
        if form in ("ours", "both"):
            certificates[certificate_id_for(cert)] = ApimCertificate(certificate_id_for(cert), cert.sha1_thumbprint)
        if form in ("foreign", "both"):
            certificates[f"corp-ca-{i}"] = ApimCertificate(f"corp-ca-{i}", cert.sha1_thumbprint)
        if form == "legacy":  # written before ids carried a deployment: adopted (the default deployment's)
            certificates[legacy_id(cert)] = ApimCertificate(legacy_id(cert), cert.sha1_thumbprint)
        if form == "theirs":  # another deployment's id on the same service: foreign
            certificates[THEIRS.certificate_id(cert)] = ApimCertificate(
                THEIRS.certificate_id(cert), cert.sha1_thumbprint
            )
        if form == "lookalike":  # our prefix, someone else's name: not ours
            certificates[f"trustsync-partner-{i}"] = ApimCertificate(f"trustsync-partner-{i}", cert.sha1_thumbprint)
        if form == "squatted":  # our exact id, another certificate under it: not ours
            other = POOL[(i + 1) % len(POOL)]
            certificates[certificate_id_for(cert)] = ApimCertificate(certificate_id_for(cert), other.sha1_thumbprint)
    gateway_cas: dict[str, dict[str, bool]] = {}
    for gateway in (*SELECTABLE, UNSELECTED):
        entries = draw(st.lists(st.tuples(st.sampled_from(sorted(certificates) or ["x"]), st.booleans()), max_size=5))
        gateway_cas[gateway] = {cid: trusted for cid, trusted in entries if cid in certificates}
    return desired, selected, Apim(certificates, gateway_cas)


def _held(cert: Certificate, certificate_id: str | None = None) -> ApimCertificate:
    certificate_id = certificate_id or certificate_id_for(cert)
    return ApimCertificate(certificate_id, cert.sha1_thumbprint)


_A, _B = POOL[0], POOL[1]
# A's id squatted by B while both are needed: B must not be overwritten, A is a conflict.
_SQUATTED = (
    Desired({c.sha1_thumbprint: DesiredAuthority(c, True, frozenset({"orders"})) for c in (_A, _B)}),
    ["gw-a"],
    Apim(
        {certificate_id_for(_A): _held(_B, certificate_id_for(_A))},
        {"gw-a": {certificate_id_for(_A): True}, "gw-b": {}, UNSELECTED: {}},
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
@example(scenario=_SQUATTED)
def test_a_plan_never_touches_foreign_entries_never_removes_what_is_needed_and_converges(scenario: Scenario) -> None:
    desired, selected, apim = scenario
    foreign_before = apim.foreign()
    trusted_before = {gw: apim.trusts(gw) for gw in selected}

    actions, conflicts = plan_all(desired, apim.observed(), selected)

    for action in actions:
        assert action.gateway in (None, *selected), action  # gateways outside the selection are never written
        if action.narrows:
            assert desired.complete, action

    def needed_trust_kept() -> None:
        """After every single write: a needed CA a gateway trusted is still trusted there."""
        for gateway in selected:
            now = apim.trusts(gateway)
            for thumbprint, authority in desired.authorities.items():
                if authority.trusted and trusted_before[gateway].get(thumbprint):
                    assert now.get(thumbprint), (gateway, "lost trust in", authority.certificate.subject)

    apim.apply(actions, after_each=needed_trust_kept)

    certificates_after, cas_after = apim.foreign()
    assert certificates_after == foreign_before[0]  # foreign certificates unchanged
    for gateway, cas in foreign_before[1].items():
        assert cas == cas_after[gateway], gateway  # foreign entries unchanged, none added
    for gateway in selected:
        entries = [
            (apim.certificates[cid].thumbprint, trusted)
            for cid, trusted in apim.gateway_cas[gateway].items()
            if is_ours(apim.certificates[cid], LOCAL)
        ]
        ours_here = {thumbprint: any(ok for t, ok in entries if t == thumbprint) for thumbprint, _ in entries}
        for thumbprint, authority in desired.authorities.items():
            if any(authority.certificate.subject in conflict for conflict in conflicts if "not uploaded" in conflict):
                continue  # its id is squatted: reported, not trusted
            # Needed: held by our own entry (never by reference), trusted at least as far as needed...
            assert thumbprint in ours_here, (gateway, authority.certificate.subject)
            assert ours_here[thumbprint] or not authority.trusted
        if desired.complete:
            # ...and never wider: our entries are exactly what is desired, as trusted as desired.
            for thumbprint, trusted in entries:
                assert thumbprint in desired.authorities, (gateway, thumbprint)
                assert trusted == desired.authorities[thumbprint].trusted, (gateway, thumbprint)

    again, conflicts_again = plan_all(desired, apim.observed(), selected)
    assert again == (), again  # one plan reaches the fixed point
    assert conflicts_again == conflicts  # the same conflicts, whatever the app wrote meanwhile


@settings(max_examples=50, deadline=None)
@given(scenario=scenarios())
def test_planning_is_pure_and_order_independent(scenario: Scenario) -> None:
    desired, selected, apim = scenario
    assert plan_all(desired, apim.observed(), selected) == plan_all(desired, apim.observed(), list(reversed(selected)))
