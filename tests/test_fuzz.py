"""Property-based tests: the event parser and the chain builder never crash and never build a wrong chain."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.pki import Hierarchy, Issued, make_certificate, pem_secret, pfx_secret
from shared.chain import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE, Certificate, ChainError, parse_secret
from shared.events import CERTIFICATE_NEW_VERSION_CREATED, EventError, Ignore, Reconcile, route
from shared.settings import load_settings

SETTINGS = load_settings(
    {
        "KEYVAULT_URL": "https://sample-kv.vault.azure.net",
        "APIM_RESOURCE_ID": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim",
        "CERTIFICATE_NAMES": "mycert",
    }
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["Id", "id", " Id", "VaultName", "ObjectType", "ObjectName", "ObjectName ", "Version", "NBF", "EXP"]
)
event_types = (
    st.sampled_from(
        [
            CERTIFICATE_NEW_VERSION_CREATED,
            "Microsoft.KeyVault.CertificateNearExpiry",
            "Microsoft.KeyVault.CertificateExpired",
            "Microsoft.KeyVault.SecretNewVersionCreated",
            "Other.Type",
            "",
            " ",
        ]
    )
    | st.text(max_size=30)
    | json_scalars
)
ids = (
    st.sampled_from(
        [
            "https://sample-kv.vault.azure.net/certificates/mycert/a1b2",
            "https://sample-kv.vault.azure.net/certificates/mycert",
            "https://SAMPLE-KV.vault.azure.net/certificates/MyCert/v9",
            "https://other.vault.azure.net/certificates/mycert/v1",
            "https://sample-kv.vault.azure.net/secrets/mycert/v1",
            "https://sample-kv.vault.azure.net/certificates/my_cert/v1",
            "http://sample-kv.vault.azure.net/certificates/mycert/v1",
            "https://sample-kv.vault.azure.net/",
            "https://sample-kv.vault.azure.net:443/certificates/mycert/v1",
            "https://[sample-kv.vault.azure.net/certificates/mycert/v1",
            "https://sample-kv.vault.azure.net:99999/certificates/mycert/v1",
            "https://sample-kv.vault.azure.net:x/certificates/mycert/v1",
            "",
        ]
    )
    | st.text(max_size=60)
    | st.builds(lambda tail: "https://sample-kv.vault.azure.net" + tail, st.text(max_size=40))
)


@settings(max_examples=400, deadline=None)
@given(event_type=event_types, data=st.dictionaries(field_names, json_values | ids, max_size=8) | json_values)
def test_event_routing_never_crashes(event_type: object, data: Any) -> None:
    try:
        decision: Ignore | Reconcile | EventError = route(event_type, "id", data, SETTINGS)
    except EventError as error:
        decision = error
    if isinstance(decision, EventError):
        assert str(decision)  # a message that says what is wrong
        return
    assert isinstance(decision, Ignore | Reconcile)
    if isinstance(decision, Reconcile):
        assert decision.certificate_name.lower() == "mycert"
        assert decision.event.vault_host == "sample-kv.vault.azure.net"


@settings(max_examples=200, deadline=None)
@given(
    object_id=ids,
    object_type=st.sampled_from(["Certificate", "certificate", "Secret", None]),
    version=st.none() | st.text(max_size=10),
)
def test_well_formed_fields_route_consistently(object_id: str, object_type: str | None, version: str | None) -> None:
    data = {"Id": object_id, "ObjectType": object_type, "Version": version}
    try:
        decision = route(CERTIFICATE_NEW_VERSION_CREATED, "id", json.loads(json.dumps(data)), SETTINGS)
    except EventError:
        return
    if isinstance(decision, Reconcile):
        same_vault = object_id.lower().replace(".net:443/", ".net/", 1)  # the default port names the same vault
        assert same_vault.startswith("https://sample-kv.vault.azure.net/certificates/mycert")


# A pool of certificates for random bags: a three-level hierarchy, a second unrelated one,
# a self-signed leaf, and a forgery naming the real intermediate as issuer.
_PKI = Hierarchy(intermediates=2, organization="Fuzz")
_LEAF = _PKI.issue("fuzz.example")
_CAS = _PKI.ca_certificates()  # intermediate nearest the leaf first, root last
_OTHER = Hierarchy(intermediates=1, organization="Other")
_OTHER_LEAF = _OTHER.issue("other.example")
_SELF_SIGNED = make_certificate("lonely.example")
_FORGED = make_certificate("forged.example", issuer_name=_CAS[0].subject, signing_key=_SELF_SIGNED.key)
_NOISE = [*_OTHER.ca_certificates(), _OTHER_LEAF.certificate, _SELF_SIGNED.certificate]


def expected_path(bag: list[x509.Certificate]) -> list[bytes]:
    """The true chain of `_LEAF` given what is in the bag: up the hierarchy until a link is missing."""
    present = {Certificate.from_x509(c).der for c in bag}
    path = [Certificate.from_x509(_LEAF.certificate).der]
    for ca in _CAS:
        der = Certificate.from_x509(ca).der
        if der not in present:
            break
        path.append(der)
    return path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chosen=st.lists(st.sampled_from(range(len(_CAS) + len(_NOISE))), max_size=8),
    kind=st.sampled_from(["pfx", "pem"]),
    with_thumbprint=st.booleans(),
    seed=st.randoms(use_true_random=False),
)
def test_random_bags_build_the_true_chain(chosen: list[int], kind: str, with_thumbprint: bool, seed: Any) -> None:
    pool = [*_CAS, *_NOISE]
    bag = [pool[i] for i in chosen]
    seed.shuffle(bag)
    others = [*bag, _LEAF.certificate] if kind == "pem" else bag
    seed.shuffle(others)
    if kind == "pfx":
        value, content_type = pfx_secret(_LEAF.key, _LEAF.certificate, bag), PKCS12_CONTENT_TYPE
    else:
        value, content_type = pem_secret(_LEAF.key, others), PEM_CONTENT_TYPE
    leaf_thumbprint = (
        Certificate.from_x509(_LEAF.certificate).sha1_thumbprint if with_thumbprint or kind == "pfx" else None
    )

    try:
        chain = parse_secret(value, content_type, leaf_thumbprint=leaf_thumbprint)
    except ChainError:
        # Only acceptable without a thumbprint, when the bag's shape leaves the leaf ambiguous.
        assert leaf_thumbprint is None
        return
    path = [chain.leaf, *chain.intermediates, *([chain.root] if chain.root else [])]
    assert [c.der for c in path] == expected_path(bag)
    for child, parent in itertools.pairwise(path):
        assert parent.signed(child)


def _corrupt(value: str, kind: str, positions: list[int], seed: Any) -> str:
    raw = bytearray(base64.b64decode(value) if kind == "pfx" else value.encode())
    for position in positions:
        raw[position % len(raw)] = seed.randrange(256)
    return base64.b64encode(bytes(raw)).decode() if kind == "pfx" else raw.decode("latin-1")


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["pfx", "pem"]),
    positions=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=6),
    seed=st.randoms(use_true_random=False),
)
def test_corrupted_secrets_fail_cleanly_or_still_verify(kind: str, positions: list[int], seed: Any) -> None:
    full = [_LEAF.certificate, *_CAS]
    value = pfx_secret(_LEAF.key, _LEAF.certificate, _CAS) if kind == "pfx" else pem_secret(_LEAF.key, full)
    content_type = PKCS12_CONTENT_TYPE if kind == "pfx" else PEM_CONTENT_TYPE
    try:
        chain = parse_secret(_corrupt(value, kind, positions, seed), content_type)
    except ChainError:
        return
    # Corruption that left the secret parseable must not make anything trusted that was not there:
    # every link still verifies and every authority is one of the originals. (The leaf itself may be a
    # corrupted copy that no longer names its issuer: then the chain stops at it, root missing, and
    # trusts nothing. In production Key Vault's x5t pins the leaf, so such a copy is refused.)
    path = [chain.leaf, *chain.intermediates, *([chain.root] if chain.root else [])]
    for child, parent in itertools.pairwise(path):
        assert parent.signed(child)
    originals = {Certificate.from_x509(c).der for c in full}
    assert all(authority.certificate.der in originals for authority in chain.authorities)


def test_forged_issuer_in_bag_is_never_chained() -> None:
    value = pem_secret(_FORGED.key, [_FORGED.certificate, *_CAS])
    with pytest.raises(ChainError, match="signed it"):
        parse_secret(
            value, PEM_CONTENT_TYPE, leaf_thumbprint=Certificate.from_x509(_FORGED.certificate).sha1_thumbprint
        )


def test_issued_fixture_is_consistent() -> None:
    assert isinstance(_LEAF, Issued)
    assert Certificate.from_x509(_CAS[0]).signed(Certificate.from_x509(_LEAF.certificate))
