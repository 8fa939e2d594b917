"""``python -m bench.chain_cpu``: CPU per Key Vault secret, RSA-2048 against ECDSA P-256, and PEM scanning.

Per secret: what a no-op full run does with each certificate version it reads, i.e. read_secret +
trust_path on the backing secret of a root → intermediate → leaf certificate, as Key Vault serves it
(emulator.certs.keyvault_pfx: 3DES/SHA-1, 2,000 iterations, SHA-1 MAC). "whole" opens the same PFX
the way the product did before key bags were dropped unopened: ``pkcs12.load_pkcs12`` of all of it,
which decrypts the key and, for RSA, checks it. Process CPU time (time.process_time), best of
--rounds rounds of --secrets reads each, so other load on the machine inflates nothing.

The same chain and key as a PEM secret: read_secret alone (the key block is skipped unread).

Per verdict: the leaf judged on one gateway holding its root (isTrusted=true) and intermediate
(isTrusted=false), the Certificate objects reused as a run reuses them across gateways.

PEM: a 1 MB value of each hostile shape through read_secret (linear scan), and the regex the product
used before on a smaller value of the worst shape (it is quadratic: ~17 s for 200 KB).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.serialization import pkcs12

from emulator.certs import keyvault_pfx
from emulator.pki import Hierarchy, KeyType, make_certificate, pem_secret
from shared.backing_secret import PEM_CONTENT_TYPE, PKCS12_CONTENT_TYPE, read_secret
from shared.chain import Certificate, ChainError, trust_path, verdict

_OLD_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)


def _best_ms(work: Callable[[], object], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(count):
            work()
        best = min(best, (time.process_time() - start) / count)
    return best * 1000


def _secret(key_type: KeyType) -> tuple[str, bytes, str]:
    """The same secret as Key Vault serves it as PFX (base64 and bytes) and as PEM."""
    pki = Hierarchy(intermediates=1, key_type=key_type)
    leaf = pki.issue("backend.example")
    data = keyvault_pfx(leaf.key, leaf.certificate, pki.ca_certificates())
    return base64.b64encode(data).decode(), data, pem_secret(leaf.key, [leaf.certificate, *pki.ca_certificates()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    now = datetime.now(UTC)

    print(
        f"CPU ms per secret (best of {args.rounds} x {args.secrets}), root -> intermediate -> leaf PFX as Key Vault serves it"
    )
    figures: dict[str, dict[str, float]] = {}
    kinds: tuple[tuple[KeyType, str], ...] = (("rsa", "RSA-2048"), ("ec", "ECDSA P-256"))
    for key_type, label in kinds:
        value, data, pem = _secret(key_type)

        def now_path(value: str = value) -> object:
            return trust_path(read_secret(value, PKCS12_CONTENT_TYPE), leaf_thumbprint=None, at=now)

        def read(value: str = value) -> object:
            return read_secret(value, PKCS12_CONTENT_TYPE)

        def read_pem(pem: str = pem) -> object:
            return read_secret(pem, PEM_CONTENT_TYPE)

        found = read_secret(value, PKCS12_CONTENT_TYPE)
        leaf, intermediate, root = found[0], found[1], found[2]

        def judge(
            leaf: Certificate = leaf, intermediate: Certificate = intermediate, root: Certificate = root
        ) -> object:
            return verdict(leaf, trusted=[root], untrusted=[intermediate], at=now)

        def whole(data: bytes = data) -> object:
            bundle = pkcs12.load_pkcs12(data, b"")
            return [Certificate.from_x509(item.certificate) for item in bundle.additional_certs]

        figures[label] = {
            "read_secret": _best_ms(read, args.secrets, args.rounds),
            "read_secret + trust_path": _best_ms(now_path, args.secrets, args.rounds),
            "read_secret, same as PEM": _best_ms(read_pem, args.secrets, args.rounds),
            "verdict (one gateway)": _best_ms(judge, args.secrets, args.rounds),
            "whole PFX opened (before)": _best_ms(whole, max(10, args.secrets // 10), args.rounds),
        }
    for measure in figures["RSA-2048"]:
        rsa, ec = figures["RSA-2048"][measure], figures["ECDSA P-256"][measure]
        print(f"  {measure:<28} RSA-2048 {rsa:8.3f}   ECDSA P-256 {ec:8.3f}   ratio {rsa / ec:5.2f}")

    print("PEM scanning, read_secret, 1,000,000 characters:")
    for label, filler in (
        ("BEGIN lines, no END", "-----BEGIN CERTIFICATE-----\n" + "A" * 64),
        ("text, no block", "x" * 80),
        ("dashes", "-----BEGIN CERTIFICATE----" + "-" * 50),
    ):
        value = (filler * (1_000_000 // len(filler) + 1))[:1_000_000]
        start = time.process_time()
        with contextlib.suppress(ChainError):
            read_secret(value, PEM_CONTENT_TYPE)
        print(f"  {label:<28} {1000 * (time.process_time() - start):8.1f} ms")
    pem = make_certificate("many.example", key_type="ec").pem.decode()
    many = pem * (1_000_000 // len(pem))
    start = time.process_time()
    count = len(read_secret(many, PEM_CONTENT_TYPE))
    print(f"  {count} certificates ({len(many):,} characters) {1000 * (time.process_time() - start):8.1f} ms")
    for size in (10_000, 20_000, 40_000):
        worst = (("-----BEGIN CERTIFICATE-----\n" + "A" * 64) * size)[:size].encode()
        start = time.process_time()
        _OLD_PEM.findall(worst)
        print(f"  previous regex, BEGIN lines, {size:,} characters: {1000 * (time.process_time() - start):8.1f} ms")


if __name__ == "__main__":
    main()
