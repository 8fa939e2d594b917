"""The library error text the app reads (shared/library_errors.py), pinned against the pinned
cryptography and pyOpenSSL: an upgrade that rewords one of them fails here, by the pattern's name."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import crypto

from emulator.pki import make_certificate, new_key
from shared import library_errors
from shared.library_errors import (
    PEM_UNDECODABLE,
    SIGNED_WITH_ANOTHER_KEY_TYPE,
    pem_undecodable,
    signed_with_another_key_type,
    verify_error_text,
)

_lib: Any = Binding.lib


def test_signed_with_another_key_type_is_cryptographys_wording() -> None:
    """A key-rollover link from an RSA root to an EC key: self-issued, signed by the old RSA key."""
    old_root = make_certificate("Rolled Root", is_ca=True, key=new_key("rsa"))
    link = make_certificate("Rolled Root", issuer=old_root, is_ca=True, key=new_key("ec")).certificate

    with pytest.raises(ValueError, match=re.escape(SIGNED_WITH_ANOTHER_KEY_TYPE)) as raised:
        link.verify_directly_issued_by(link)

    assert signed_with_another_key_type(raised.value)


def test_signed_with_another_key_type_is_not_a_bad_signature_of_the_same_type() -> None:
    """The pattern tells the key type apart: a wrong key of the right type raises InvalidSignature."""
    other = make_certificate("Other Root", is_ca=True, key=new_key("ec"))
    link = make_certificate("Other Root", issuer=other, is_ca=True, key=new_key("ec")).certificate

    with pytest.raises(InvalidSignature) as raised:
        link.verify_directly_issued_by(link)

    assert not signed_with_another_key_type(raised.value)


def test_pem_undecodable_is_cryptographys_wording_for_bad_base64_only() -> None:
    with pytest.raises(ValueError, match=re.escape(PEM_UNDECODABLE)) as bad_base64:
        x509.load_pem_x509_certificates(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match="asn1") as bad_certificate:
        x509.load_pem_x509_certificates(
            b"-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b"no certificate") + b"\n-----END CERTIFICATE-----\n"
        )

    assert pem_undecodable(bad_base64.value)
    assert not pem_undecodable(bad_certificate.value)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        # The model refuses a CA that is valid at the judged moment but not now with these codes.
        (_lib.X509_V_ERR_CERT_HAS_EXPIRED, "certificate has expired"),
        # OpenSSL 4 added the clock to it: the model used to write the older words by hand.
        (_lib.X509_V_ERR_CERT_NOT_YET_VALID, "certificate is not yet valid or the system clock is incorrect"),
        # Refusals that reasons.py words with OpenSSL's own text: what an operator reads.
        (_lib.X509_V_ERR_PERMITTED_VIOLATION, "permitted subtree violation"),
        (_lib.X509_V_ERR_EXCLUDED_VIOLATION, "excluded subtree violation"),
    ],
)
def test_verify_error_text_is_openssls(code: int, words: str) -> None:
    assert verify_error_text(code) == words


def test_verify_error_text_is_what_pyopenssl_reports() -> None:
    """The model's own refusals carry the text X509_verify_cert's refusals carry."""
    now = datetime.now(UTC)
    expired = make_certificate(
        "expired.example", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(expired.certificate))
    context = crypto.X509StoreContext(store, crypto.X509.from_cryptography(expired.certificate))

    with pytest.raises(crypto.X509StoreContextError) as refused:
        context.verify_certificate()

    code, _, message = refused.value.errors
    assert code == _lib.X509_V_ERR_CERT_HAS_EXPIRED
    assert message == verify_error_text(code)


def test_every_pattern_is_pinned_here() -> None:
    """A pattern added to library_errors.py without a pin here fails this test."""
    patterns = {name for name in library_errors.__all__ if name.isupper()}
    assert patterns == {"PEM_UNDECODABLE", "SIGNED_WITH_ANOTHER_KEY_TYPE"}
