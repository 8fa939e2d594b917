"""Properties of trust_path and verdict over generated PKIs.

Each example is a root → intermediates → leaf hierarchy of random depth, with at most one injected
defect that the generator knows; so the expected outcome (accepted, and with which authorities, or
refused, naming which certificate and why) is known without validating anything here. Bags are
shuffled and may repeat certificates. Keys are ECDSA P-256 for speed: the policy is the same.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.pki import Issued, make_certificate, new_key
from shared.chain import Certificate, ChainError, ChainRejected, Role, TrustPath, trust_path, verdict

NOW = datetime.now(UTC)
_SERIAL = itertools.count()
_NO_CERT_SIGN = x509.KeyUsage(True, False, True, False, False, False, True, False, False)

DEFECTS = (
    "none",
    "ca_false",  # a CA certificate with basicConstraints cA=false
    "no_basic_constraints",
    "no_key_cert_sign",
    "path_length_exceeded",  # a CA's pathLenConstraint one short of the CAs below it
    "path_length_exact",  # exactly enough: not a defect
    "expired_ca",
    "future_ca",
    "leaf_expired",
    "leaf_client_only",  # extendedKeyUsage without serverAuth
    "drop_ca",  # a CA left out of the secret
    "namesake",  # a second certificate with a CA's name and another key, not its signer
    "cross_signed",  # the top intermediate also certified by a second root, both in the secret
    "rollover",  # the root expired; a cross-certificate of its key under a new root is in the secret
)


@dataclass
class Generated:
    leaf: Issued
    bag: list[Issued]  # without the leaf
    accepted: bool
    authorities: list[Issued] | None = None  # the expected path above the leaf, when it is determined
    reason: str = ""  # a fragment of the expected refusal
    root_missing: bool = False
    never: list[Issued] = field(default_factory=list)  # certificates that must never be authorities


def _name(level: str) -> str:
    return f"{level} {next(_SERIAL)}"


def generate(depth: int, defect: str, position: int) -> Generated:
    """root, `depth` intermediates, a leaf; `position` picks the CA the defect is put on (0: the root)."""
    target = position % (depth + 1)
    expired = {"not_before": NOW - timedelta(days=900), "not_after": NOW - timedelta(days=1)}
    future = {"not_before": NOW + timedelta(days=1), "not_after": NOW + timedelta(days=900)}
    cas: list[Issued] = []
    for level in range(depth + 1):
        shape: dict[str, Any] = {"is_ca": True, "key_type": "ec"}
        if level == target:
            if defect == "ca_false":
                shape["is_ca"] = False
            elif defect == "no_basic_constraints":
                shape["basic_constraints"] = False
            elif defect == "no_key_cert_sign":
                shape["key_usage"] = _NO_CERT_SIGN
            elif defect in ("path_length_exceeded", "path_length_exact"):
                below = depth - level  # intermediates under this CA, on the way to the leaf
                shape["path_length"] = below - 1 if defect == "path_length_exceeded" else below
                if shape["path_length"] < 0:  # nothing below the lowest CA to exceed: make it exact
                    shape["path_length"] = 0
            elif defect == "expired_ca":
                shape.update(expired)
            elif defect == "future_ca":
                shape.update(future)
        name = _name("Root" if level == 0 else f"CA{level}")
        cas.append(make_certificate(name, issuer=cas[-1] if cas else None, **shape))
    leaf_shape: dict[str, Any] = {"key_type": "ec"}
    if defect == "leaf_expired":
        leaf_shape.update(expired)
    if defect == "leaf_client_only":
        leaf_shape["extended_key_usage"] = [ExtendedKeyUsageOID.CLIENT_AUTH]
    leaf = make_certificate(_name("leaf.example"), issuer=cas[-1], **leaf_shape)
    above = list(reversed(cas))  # nearest the leaf first, root last
    defective = cas[target]
    exceeded = defect == "path_length_exceeded" and depth - target > 0

    if defect in ("none", "path_length_exact") or (defect == "path_length_exceeded" and not exceeded):
        return Generated(leaf, list(cas), True, above)
    if defect == "no_basic_constraints" and target == 0:
        return Generated(leaf, list(cas), True, above)  # a root with keyCertSign is a CA to OpenSSL
    if defect in ("ca_false", "no_basic_constraints", "no_key_cert_sign"):
        why = {
            "ca_false": "basicConstraints cA=false",
            "no_basic_constraints": "basicConstraints absent",
            "no_key_cert_sign": "keyUsage without keyCertSign",
        }[defect]
        subject = Certificate.from_x509(defective.certificate).subject
        return Generated(
            leaf, list(cas), False, reason=f"{subject} may not issue certificates: {why}", never=[defective]
        )
    if defect == "path_length_exceeded":
        return Generated(leaf, list(cas), False, reason="path length constraint violated")
    if defect in ("expired_ca", "future_ca"):
        subject = Certificate.from_x509(defective.certificate).subject
        state = "expired on" if defect == "expired_ca" else "is not valid before"
        return Generated(leaf, list(cas), False, reason=f"CA {subject} {state}", never=[defective])
    if defect == "leaf_expired":
        return Generated(leaf, list(cas), False, reason="expired on")
    if defect == "leaf_client_only":
        return Generated(leaf, list(cas), False, reason="extendedKeyUsage allows no serverAuth")
    if defect == "drop_ca":
        kept = [ca for ca in cas if ca is not defective]
        reached = above[: above.index(defective)]  # the CAs the leaf still reaches by name
        if not reached:
            return Generated(leaf, kept, False, reason="missing issuer")
        return Generated(leaf, kept, True, reached, root_missing=True)
    if defect == "namesake":
        impostor = make_certificate(
            Certificate.from_x509(defective.certificate).common_name,
            is_ca=True,
            key_type="ec",
            issuer=cas[target - 1] if target else None,
        )
        return Generated(leaf, [*cas, impostor], True, above, never=[impostor])
    if defect == "cross_signed":
        other_root = make_certificate(_name("Other Root"), is_ca=True, key_type="ec")
        top = cas[1] if depth else cas[0]
        cross = make_certificate(
            Certificate.from_x509(top.certificate).common_name, issuer=other_root, is_ca=True, key=top.key
        )
        return Generated(leaf, [*cas, other_root, cross], True)  # either root may anchor
    # rollover: the old root expired; its key is certified by a new root
    old_root = make_certificate(
        Certificate.from_x509(cas[0].certificate).common_name,
        is_ca=True,
        key=cas[0].key,
        not_before=expired["not_before"],
        not_after=expired["not_after"],
    )
    new_root = make_certificate(_name("New Root"), is_ca=True, key_type="ec")
    cross = make_certificate(
        Certificate.from_x509(cas[0].certificate).common_name, issuer=new_root, is_ca=True, key=cas[0].key
    )
    return Generated(
        leaf, [*cas[1:], old_root, cross, new_root], True, [*above[:-1], cross, new_root], never=[old_root]
    )


def cert(issued: Issued) -> Certificate:
    return Certificate.from_x509(issued.certificate)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    depth=st.integers(min_value=0, max_value=3),
    defect=st.sampled_from(DEFECTS),
    position=st.integers(min_value=0, max_value=3),
    duplicates=st.lists(st.integers(min_value=0, max_value=10), max_size=2),
    with_thumbprint=st.booleans(),
    seed=st.randoms(use_true_random=False),
)
def test_generated_pkis_meet_their_expected_outcome(
    depth: int, defect: str, position: int, duplicates: list[int], with_thumbprint: bool, seed: Any
) -> None:
    generated = generate(depth, defect, position)
    bag = [cert(generated.leaf), *map(cert, generated.bag)]
    bag.extend(bag[index % len(bag)] for index in duplicates)
    seed.shuffle(bag)
    leaf = cert(generated.leaf)

    outcome: TrustPath | ChainError
    try:
        outcome = trust_path(bag, leaf_thumbprint=leaf.sha1_thumbprint if with_thumbprint else None, at=NOW)
    except ChainError as error:
        outcome = error
    if isinstance(outcome, ChainRejected):
        assert not generated.accepted, outcome.reasons
        assert any(generated.reason in reason for reason in outcome.reasons), (generated.reason, outcome.reasons)
        return
    if isinstance(outcome, ChainError):
        # Only without a thumbprint: extra roots or namesakes leave more than one certificate issuing none.
        assert not with_thumbprint, outcome
        return
    path = outcome
    assert generated.accepted, path
    assert path.leaf == leaf
    if generated.authorities is not None:
        assert [a.certificate for a in path.authorities] == [cert(ca) for ca in generated.authorities]
    assert path.root_missing == generated.root_missing
    assert not {cert(bad) for bad in generated.never} & {a.certificate for a in path.authorities}
    assert all(a.certificate.is_valid_at(NOW) for a in path.authorities)
    assert [a.role for a in path.authorities] == [Role.INTERMEDIATE] * (len(path.authorities) - 1) + [Role.ROOT]
    assert_agrees_with_verdict(path)


def assert_agrees_with_verdict(path: TrustPath, *, server_key: bool = True) -> None:
    """A gateway holding the path, its root trusted, accepts the leaf (unless the leaf's own key
    usage allows no TLS server: a CA certificate held as a leaf)."""
    everything = [a.certificate for a in path.authorities]
    as_anchors = verdict(path.leaf, trusted=everything, untrusted=[], at=NOW)
    anchor_only = verdict(path.leaf, trusted=[path.anchor], untrusted=everything[:-1], at=NOW)
    if path.root_missing:  # no partial chains: the topmost CA of the secret is no anchor on a gateway
        assert not as_anchors.accepted
        assert "root missing" in as_anchors.reason
        return
    if not server_key:
        assert not anchor_only.accepted
        assert "keyUsage allows none of digitalSignature" in anchor_only.reason
        return
    assert as_anchors.accepted, as_anchors.reason
    assert anchor_only.accepted, anchor_only.reason
    assert anchor_only.path == (path.leaf, *(c for c in everything if c != path.leaf))
    # And without its anchor, the same leaf is refused: nothing else in the path is trusted.
    assert not verdict(path.leaf, trusted=[], untrusted=everything, at=NOW).accepted


@settings(max_examples=60, deadline=None)
@given(
    ca=st.booleans(),
    self_signed_root_of=st.sampled_from(["leaf", "chain"]),
    seed=st.randoms(use_true_random=False),
)
def test_leaf_shapes_agree_with_verdict(ca: bool, self_signed_root_of: str, seed: Any) -> None:
    """Self-signed leaves and leaves that are CAs: their own authority when they may be one."""
    if self_signed_root_of == "leaf":
        leaf = make_certificate(_name("self.example"), is_ca=ca, key_type="ec")
        path = trust_path([cert(leaf)], leaf_thumbprint=None, at=NOW)
        assert [(a.certificate, a.role) for a in path.authorities] == [(cert(leaf), Role.ROOT)]
    else:
        root = make_certificate(_name("Root"), is_ca=True, key_type="ec")
        leaf = make_certificate(_name("Held CA" if ca else "held.example"), issuer=root, is_ca=ca, key=new_key("ec"))
        bag = [cert(root), cert(leaf)]
        seed.shuffle(bag)
        path = trust_path(bag, leaf_thumbprint=cert(leaf).sha1_thumbprint, at=NOW)
        expected = [(cert(leaf), Role.INTERMEDIATE)] if ca else []
        assert [(a.certificate, a.role) for a in path.authorities] == [*expected, (cert(root), Role.ROOT)]
    assert_agrees_with_verdict(path, server_key=not ca)
