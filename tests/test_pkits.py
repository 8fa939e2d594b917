"""NIST PKITS (Public Key Interoperability Test Suite, 2011 edition) against shared.chain.

The certificates and the expected outcomes come from the ``cryptography-vectors`` package
(x509/PKITS_data): each S/MIME message smime/Signed<Name>.eml carries a test's certification path
(its signer is the end entity), and <Name> says the expected outcome, "Valid..." or "Invalid...".
The trust anchor is certs/TrustAnchorRootCertificate.crt. Section numbers are PKITS's.

Each case runs twice and must give the same outcome both ways: `verdict` (the anchor trusted, the
message's CA certificates as untrusted intermediates) and `trust_path` (all of it as one bag, the
end entity named by thumbprint, the anchor found in the bag).

Included, as they decide whether a server chain validates: 4.1 signature verification, 4.2
validity periods, 4.3 name chaining, 4.5 self-issued certificates, 4.6 basic constraints and path
length, 4.7 key usage, 4.13 the DNS name constraints tests (30-33, 38), 4.16 private extensions.

Excluded (the meta-test checks every PKITS case is one or the other, never both nor neither):
- 4.4 basic certificate revocation, 4.14 distribution points, 4.15 delta-CRLs, and the cases of
  4.5 (Invalid ... Test2, Test5, Test7) and 4.7 (cRLSign False, Test4, Test5) whose outcome depends
  on a CRL: the product checks no revocation (a gateway fetches and checks CRLs itself, if at all),
  and OpenSSL's default verification checks none (X509_V_FLAG_CRL_CHECK is off).
- 4.8 certificate policies, 4.9 requireExplicitPolicy, 4.10 policy mappings, 4.11
  inhibitPolicyMapping, 4.12 inhibitAnyPolicy: TLS server validation uses no policy constraints
  (as browsers and the gateway's TLS stack): OpenSSL's default verification processes none
  (X509_V_FLAG_POLICY_CHECK is off), so PKITS's "Invalid" policy cases are accepted by it.
- 4.13 name constraints on directory names, RFC 822 names and URIs: a server is named by DNS names
  and IP addresses, so these would say nothing about server chains.

The validator is OpenSSL's X509_verify_cert, as the gateway runs it (docs/gateway-model.md):
with it, every included case meets PKITS's expectation but one, asserted as observed so that a
change in behaviour fails the test rather than passing silently:
- 4.1.5: the end entity's DSA key inherits its parameters from its issuer, and cryptography (which
  reads every certificate before anything is validated) cannot parse such a key.
"""

from __future__ import annotations

import email
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography.utils import CryptographyDeprecationWarning

from shared.chain import Certificate, ChainError, trust_path, verdict
from shared.der import element, integer

PKITS = Path(cryptography_vectors.__file__).parent / "x509" / "PKITS_data"
AT = datetime(2020, 6, 1, tzinfo=UTC)  # inside every PKITS validity window that is meant to be valid

SECTIONS: dict[str, tuple[str, ...]] = {
    "4.1": (
        "ValidSignaturesTest1",
        "InvalidCASignatureTest2",
        "InvalidEESignatureTest3",
        "ValidDSASignaturesTest4",
        "ValidDSAParameterInheritanceTest5",
        "InvalidDSASignatureTest6",
    ),
    "4.2": (
        "InvalidCAnotBeforeDateTest1",
        "InvalidEEnotBeforeDateTest2",
        "Validpre2000UTCnotBeforeDateTest3",
        "ValidGeneralizedTimenotBeforeDateTest4",
        "InvalidCAnotAfterDateTest5",
        "InvalidEEnotAfterDateTest6",
        "Invalidpre2000UTCEEnotAfterDateTest7",
        "ValidGeneralizedTimenotAfterDateTest8",
    ),
    "4.3": (
        "InvalidNameChainingEETest1",
        "InvalidNameChainingOrderTest2",
        "ValidNameChainingWhitespaceTest3",
        "ValidNameChainingWhitespaceTest4",
        "ValidNameChainingCapitalizationTest5",
        "ValidNameChainingUIDsTest6",
        "ValidRFC3280MandatoryAttributeTypesTest7",
        "ValidRFC3280OptionalAttributeTypesTest8",
        "ValidUTF8StringEncodedNamesTest9",
        "ValidRolloverfromPrintableStringtoUTF8StringTest10",
        "ValidUTF8StringCaseInsensitiveMatchTest11",
    ),
    "4.5": (
        "ValidBasicSelfIssuedOldWithNewTest1",
        "ValidBasicSelfIssuedNewWithOldTest3",
        "ValidBasicSelfIssuedNewWithOldTest4",
        "ValidBasicSelfIssuedCRLSigningKeyTest6",
        "InvalidBasicSelfIssuedCRLSigningKeyTest8",
    ),
    "4.6": (
        "InvalidMissingbasicConstraintsTest1",
        "InvalidcAFalseTest2",
        "InvalidcAFalseTest3",
        "ValidbasicConstraintsNotCriticalTest4",
        "InvalidpathLenConstraintTest5",
        "InvalidpathLenConstraintTest6",
        "ValidpathLenConstraintTest7",
        "ValidpathLenConstraintTest8",
        "InvalidpathLenConstraintTest9",
        "InvalidpathLenConstraintTest10",
        "InvalidpathLenConstraintTest11",
        "InvalidpathLenConstraintTest12",
        "ValidpathLenConstraintTest13",
        "ValidpathLenConstraintTest14",
        "ValidSelfIssuedpathLenConstraintTest15",
        "InvalidSelfIssuedpathLenConstraintTest16",
        "ValidSelfIssuedpathLenConstraintTest17",
    ),
    "4.7": (
        "InvalidkeyUsageCriticalkeyCertSignFalseTest1",
        "InvalidkeyUsageNotCriticalkeyCertSignFalseTest2",
        "ValidkeyUsageNotCriticalTest3",
    ),
    "4.13": (
        "ValidDNSnameConstraintsTest30",
        "InvalidDNSnameConstraintsTest31",
        "ValidDNSnameConstraintsTest32",
        "InvalidDNSnameConstraintsTest33",
        "InvalidDNSnameConstraintsTest38",
    ),
    "4.16": ("ValidUnknownNotCriticalCertificateExtensionTest1", "InvalidUnknownCriticalCertificateExtensionTest2"),
}

# Excluded cases by name, each pattern with its reason (see the module docstring).
REVOCATION = "revocation: the outcome depends on a CRL, which neither the product nor OpenSSL by default checks"
POLICIES = "certificate policies: no policy processing in TLS server validation nor in OpenSSL by default"
NAME_FORMS = "name constraints on forms that do not name a server (directoryName, RFC 822, URI)"
EXCLUDED: tuple[tuple[str, str], ...] = (
    (r"(?<!SelfIssued)CRL|Revoked|SerialNumber|SeparateCertificateandCRLKeys", REVOCATION),  # 4.4
    (
        r"^Invalid(BasicSelfIssuedOldWithNewTest2|BasicSelfIssuedNewWithOldTest5|BasicSelfIssuedCRLSigningKeyTest7)$",
        REVOCATION,
    ),
    (r"cRLSignFalse", REVOCATION),  # 4.7.4, 4.7.5
    (r"distributionPoint|DistributionPoint|onlyContains|onlySomeReasons|IDPwithindirectCRL|cRLIssuer", REVOCATION),
    (r"deltaCRL", REVOCATION),
    (r"Polic|UserNoticeQualifier|CPSPointerQualifier", POLICIES),  # 4.8-4.12
    (r"(DN|RFC822|URI|DNandRFC822)nameConstraints", NAME_FORMS),
)

# name → (what the verifier decides, a fragment of its reason, why this differs from PKITS)
DEVIATIONS: dict[str, tuple[bool, str, str]] = {
    "ValidDSAParameterInheritanceTest5": (False, "not a DER certificate", "inherited DSA parameters do not parse"),
}

INCLUDED = {name: section for section, names in SECTIONS.items() for name in names}


@dataclass(frozen=True)
class Case:
    name: str
    leaf: bytes  # DER
    cas: tuple[bytes, ...]  # the message's other certificates (the anchor excluded)


@cache
def load_case(name: str) -> Case:
    message = email.message_from_bytes((PKITS / "smime" / f"Signed{name}.eml").read_bytes())
    p7s = next(part.get_payload(decode=True) for part in message.walk() if "pkcs7-signature" in part.get_content_type())
    assert isinstance(p7s, bytes)
    signed = element(p7s).child(1).child(0)  # ContentInfo → [0] → SignedData
    certificates = next(node for node in signed.children if node.tag == 0xA0)  # [0] IMPLICIT SET OF Certificate
    ders = [node.encoded for node in certificates.children]
    sid = signed.children[-1].child(0).child(1)  # SignerInfos → SignerInfo → IssuerAndSerialNumber
    wanted = (sid.child(0).encoded, integer(sid.child(1)))
    leaf = next(der for der in ders if _issuer_and_serial(der) == wanted)
    return Case(name, leaf, tuple(der for der in ders if der != leaf and der != anchor().der))


def _issuer_and_serial(der: bytes) -> tuple[bytes, int]:
    tbs = element(der).child(0).children
    offset = 1 if tbs[0].tag == 0xA0 else 0  # [0] version
    return tbs[offset + 2].encoded, integer(tbs[offset])


@cache
def anchor() -> Certificate:
    return Certificate.from_der((PKITS / "certs" / "TrustAnchorRootCertificate.crt").read_bytes())


def outcomes(case: Case) -> tuple[tuple[bool, str], tuple[bool, str]]:
    """(accepted, reason) by verdict and by trust_path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)  # PKITS's odd serial numbers
        try:
            leaf = Certificate.from_der(case.leaf)
            cas = [Certificate.from_der(der) for der in case.cas]
        except ChainError as error:
            return (False, str(error)), (False, str(error))
    judged = verdict(leaf, trusted=[anchor()], untrusted=cas, at=AT)
    try:
        trust_path([leaf, *cas, anchor()], leaf_thumbprint=leaf.sha1_thumbprint, at=AT)
    except ChainError as error:
        return (judged.accepted, judged.reason), (False, str(error))
    return (judged.accepted, judged.reason), (True, "")


def _case_id(name: str) -> str:
    return f"{INCLUDED[name]}-{name}"


@pytest.mark.parametrize("name", list(INCLUDED), ids=_case_id)
def test_pkits(name: str) -> None:
    (by_verdict, verdict_reason), (by_path, path_reason) = outcomes(load_case(name))

    assert by_verdict == by_path, (verdict_reason, path_reason)
    if name in DEVIATIONS:
        decided, fragment, why = DEVIATIONS[name]
        assert by_verdict == decided, why
        assert fragment in verdict_reason + " " + path_reason, (why, verdict_reason, path_reason)
    else:
        assert by_verdict == name.startswith("Valid"), (verdict_reason, path_reason)


def test_every_pkits_case_is_included_or_excluded_with_a_reason() -> None:
    names = sorted(path.stem.removeprefix("Signed") for path in (PKITS / "smime").glob("Signed*.eml"))
    excluded = {name for name in names for pattern, _ in EXCLUDED if re.search(pattern, name)}

    assert len(names) == 224
    assert set(INCLUDED) <= set(names)
    assert not set(INCLUDED) & excluded
    assert set(names) == set(INCLUDED) | excluded
    assert set(DEVIATIONS) <= set(INCLUDED)
