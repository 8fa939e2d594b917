"""The private keys in Key Vault's certificate secrets never leave the process. Every log line (all
loggers at DEBUG, the Azure SDK's included), every request the app sends, every answer it gives, and
every error it raises is searched for the keys in every encoding; every uploaded PFX holds one CA
certificate and no key.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from emulator import Emulator
from emulator.pki import Hierarchy, PrivateKey, pfx_secret
from shared.backing_secret import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE
from tests.resilience.scenarios import MONTH_AGO, WEEK_AGO, deliver_outcome
from tests.support.harness import assert_no_private_keys, audit, import_version, resync

# Loggers the app or function_app.py quiets: opened up for the test, so that nothing could hide there.
NOISY = ("azure", "azure.core.pipeline.policies.http_logging_policy", "azure.identity", "urllib3", "trustsync")


def key_encodings(key: PrivateKey) -> Iterator[bytes]:
    """The forms in which a private key could leak: PEM markers, DER (PKCS#8 and SEC1), their base64
    (standard and URL-safe, at every 3-byte alignment inside a larger base64 text), hex, and the raw scalar."""
    yield b"PRIVATE KEY-----"
    ders = [
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
    ]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        scalars = [key.private_numbers().private_value.to_bytes((key.curve.key_size + 7) // 8, "big")]
    else:  # RSA: the private exponent and the primes
        numbers = key.private_numbers()
        scalars = [n.to_bytes((n.bit_length() + 7) // 8, "big") for n in (numbers.d, numbers.p, numbers.q)]
    for secret in (*ders, *scalars):
        yield secret
        yield secret.hex().encode()
        yield secret.hex().upper().encode()
        for shift in range(3):
            # base64 of the secret, cut to whole 3-byte groups from `shift`: found inside any longer base64 text
            # that contains the secret at an offset congruent to `shift`, minus the (context-dependent) edges.
            aligned = secret[shift:]
            aligned = aligned[: len(aligned) - len(aligned) % 3]
            for encoded in (base64.b64encode(aligned), base64.urlsafe_b64encode(aligned)):
                yield encoded[4:-4] if len(encoded) > 16 else encoded


def leaks(haystack: bytes, keys: Iterable[PrivateKey]) -> list[str]:
    found = []
    for number, key in enumerate(keys):
        for form in key_encodings(key):
            if form in haystack and (len(form) >= 16 or form == b"PRIVATE KEY-----"):
                found.append(f"key {number}: {form[:24]!r}...")
    return found


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # caplog restores every level after the test
    for name in NOISY:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def full_runs(emu: Emulator, content_type: str) -> tuple[list[PrivateKey], list[str]]:
    """Rotations, a retirement, an audit that repairs drift, failures and bad input: every code path that
    touches a secret. Returns the private keys in the vault and what the app answered or raised."""
    keys: list[PrivateKey] = []
    said: list[str] = []
    first = import_version(emu, "orders", Hierarchy(intermediates=1), content_type=content_type, created=MONTH_AGO)
    second = import_version(
        emu, "orders", Hierarchy(intermediates=2, organization="Fabrikam"), content_type=content_type, created=WEEK_AGO
    )
    other = import_version(
        emu, "payments", Hierarchy(intermediates=1, organization="Northwind"), content_type=content_type
    )
    keys += [first.leaf.key, second.leaf.key, other.leaf.key]
    for name in ("orders", "payments"):
        said.append(str(deliver_outcome(emu.vault.certificate_event(name))))
    emu.faults.add("kv.get_secret", status=409)  # a failed read: its error must not carry the secret either
    said.append(str(deliver_outcome(emu.vault.certificate_event("orders"))))
    emu.faults.add("kv.get_secret", status=500, after_write=True)  # the read happened, its answer was lost
    said.append(str(deliver_outcome(emu.vault.certificate_event("orders"))))
    third = import_version(
        emu, "orders", Hierarchy(intermediates=1, organization="Tailspin"), content_type=content_type
    )
    keys.append(third.leaf.key)
    said.append(str(deliver_outcome(emu.vault.certificate_event("orders"))))
    emu.vault.set_enabled("orders", emu.vault.versions("orders")[0], False)
    said.append(json.dumps(resync({"dryRun": True}).body))
    said.append(json.dumps(resync().body))
    # Bad input: a version whose PFX has a password, then one whose secret is PEM with a stray key.
    locked = Hierarchy(intermediates=1, organization="Locked")
    leaf = locked.issue("locked.example")
    keys.append(leaf.key)
    import_version(emu, "orders", locked, content_type=content_type)
    emu.vault.replace_secret_value(
        "orders",
        emu.vault.versions("orders")[-1],
        pfx_secret(leaf.key, leaf.certificate, locked.ca_certificates(), password=b"pw"),
        PKCS12_CONTENT_TYPE,
    )
    said.append(str(deliver_outcome(emu.vault.certificate_event("orders"))))
    said.append(json.dumps(resync().body))
    emu.apim.delete_gateway_ca("gw-east", next(iter(emu.apim.gateway_cas("gw-east"))), if_match="*")  # drift
    audit()
    return keys, said


def opened(body: bytes) -> bytes:
    """A secret read's answer and, for a PFX, its key as the test opens it: Key Vault encrypts it there."""
    try:
        key = pkcs12.load_pkcs12(base64.b64decode(json.loads(body)["value"]), b"").key
    except ValueError:  # PEM, or the password-protected PFX
        return body
    if key is None:
        return body
    return body + key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize("content_type", [PKCS12_CONTENT_TYPE, PEM_CONTENT_TYPE])
def test_no_private_key_material_in_logs_traffic_answers_or_errors(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, everything_logged: pytest.LogCaptureFixture, content_type: str
) -> None:
    monkeypatch.setenv("AUDIT_REMEDIATE", "true")

    keys, said = full_runs(emu, content_type)

    sent = emu.requests
    secret_reads = [r for r in sent if r.operation == "kv.get_secret" and r.status == 200]
    assert secret_reads, "the runs read the secrets"
    found = b"".join(opened(r.response_body) for r in secret_reads)
    assert leaks(found, keys), "the detector finds keys where they are"
    logged = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in everything_logged.records)
    assert len(everything_logged.records) > 50  # the SDKs' own DEBUG/INFO lines are in there too
    traffic = b"".join(
        b"%s %s %s %s" % (r.method.encode(), r.path.encode(), json.dumps(dict(r.headers)).encode(), r.body)
        + (b"" if r.operation == "kv.get_secret" else r.response_body)
        for r in sent
    )
    assert leaks(logged.encode(), keys) == []
    assert leaks(traffic, keys) == []
    assert leaks("\n".join(said).encode(), keys) == []
    assert emu.count("arm.put_certificate") > 0


def test_every_uploaded_pfx_holds_one_ca_certificate_and_no_key(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_REMEDIATE", "true")

    full_runs(emu, PKCS12_CONTENT_TYPE)

    uploads = [r for r in emu.requests if r.operation == "arm.put_certificate"]
    assert len(uploads) >= 8
    for record in uploads:
        properties = json.loads(record.body)["properties"]
        bundle = pkcs12.load_pkcs12(base64.b64decode(properties["data"]), properties["password"].encode())
        assert bundle.key is None
        (certificate,) = [c.certificate for c in [bundle.cert, *bundle.additional_certs] if c is not None]
        assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert_no_private_keys(emu)
