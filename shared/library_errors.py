"""What the app reads in the error text of its X.509 libraries, all of it here.

cryptography and OpenSSL give some facts only in the words of an error, and call that wording
unstable: it may change in any release. Every match over their text is one named pattern below,
and tests/test_library_errors.py pins each against the versions requirements.txt pins, so an
upgrade that rewords one fails a test that names the pattern, not a distant behaviour test.
Nothing else in the app matches a library's error text.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.bindings.openssl.binding import Binding

_ffi: Any = Binding.ffi
_lib: Any = Binding.lib  # the libcrypto pyOpenSSL runs on

# cryptography's Certificate.verify_directly_issued_by, when the signature's algorithm needs a key
# of another type than the issuer's (an RSA signature, an EC issuer): signed by some other key.
SIGNED_WITH_ANOTHER_KEY_TYPE = "does not match issuer key type"

# cryptography's PEM loaders, when the armour or its base64 cannot be decoded; a block that decodes
# but holds no certificate fails in the DER parser instead ("error parsing asn1 value").
PEM_UNDECODABLE = "Unable to load PEM file"


def signed_with_another_key_type(error: Exception) -> bool:
    """`verify_directly_issued_by` refused because the issuer's key is of the wrong type."""
    return SIGNED_WITH_ANOTHER_KEY_TYPE in str(error)


def pem_undecodable(error: Exception) -> bool:
    """A PEM loader refused the armour or the base64, not the certificate inside."""
    return PEM_UNDECODABLE in str(error)


def verify_error_text(code: int) -> str:
    """OpenSSL's own words for one of X509_verify_cert's error codes (what pyOpenSSL reports)."""
    return str(_ffi.string(_lib.X509_verify_cert_error_string(code)).decode("utf-8"))


__all__ = [
    "PEM_UNDECODABLE",
    "SIGNED_WITH_ANOTHER_KEY_TYPE",
    "pem_undecodable",
    "signed_with_another_key_type",
    "verify_error_text",
]
