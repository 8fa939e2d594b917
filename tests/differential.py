"""The gateway path model (shared.chain.verdict) against the `openssl verify` command, over generated PKIs.

Each scenario is a PKI of 1 to 4 CAs (root first) with a leaf, and a gateway: a random subset of
every CA certificate made, each entry with isTrusted true or false. The generator draws, per
scenario: v1, extension-less (keyCertSign, no basicConstraints) and extendedKeyUsage-bearing roots;
pathLenConstraint, DNS name constraints and extendedKeyUsage (serverAuth, clientAuth only,
anyExtendedKeyUsage) on CAs; expired and not-yet-valid CAs and leaves; cross-signing of the top
intermediate by a second root; root key rollovers (a self-issued link of the new key signed by the
old); self-signed leaves; EC P-256 keys mostly, RSA now and then.

The oracle is the real TLS stack's verifier, run as the gateway is modelled
(docs/gateway-model.md): ``openssl verify -purpose sslserver -verify_hostname <leaf DNS name>``,
the self-signed entries with isTrusted=true as -CAfile (which ones are self-signed, the generator
knows: it made them), every entry as -untrusted, no -partial_chain, no default trust store, and
-attime the moment the model judges (the leaf's notBefore when that is later than now).

Not drawn, as the model decides them on purpose otherwise than a single `openssl verify` run
(each is a unit test in tests/test_chain.py): CAs whose notBefore is within the clock-skew
tolerance, and CAs valid at a not-yet-valid leaf's notBefore but not now.

``python -m tests.differential [count] [first-seed]`` runs a bigger batch and prints its figures.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from emulator.certs import der_tlv
from emulator.pki import Issued, make_certificate, new_key
from shared import der
from shared.chain import Certificate, verdict

AT = datetime.now(UTC).replace(microsecond=0)
_EXPIRED: dict[str, Any] = {"not_before": AT - timedelta(days=400), "not_after": AT - timedelta(days=2)}
_CA_FUTURE: dict[str, Any] = {"not_before": AT + timedelta(days=30), "not_after": AT + timedelta(days=400)}
_LEAF_FUTURE: dict[str, Any] = {"not_before": AT + timedelta(days=10), "not_after": AT + timedelta(days=100)}
_EKUS: dict[str, list[x509.ObjectIdentifier] | None] = {
    "none": None,
    "serverAuth": [ExtendedKeyUsageOID.SERVER_AUTH],
    "clientAuth": [ExtendedKeyUsageOID.CLIENT_AUTH],
    "any": [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
    "server+client": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
}


@dataclass
class Scenario:
    seed: int
    leaf: Issued
    dns_name: str
    entries: list[tuple[Issued, bool]]  # the gateway's CA entries: certificate, isTrusted
    self_signed: list[Issued]  # what the generator made self-signed
    features: list[str] = field(default_factory=list)

    @property
    def judged_at(self) -> datetime:
        return max(AT, self.leaf.certificate.not_valid_before_utc)


def _pick(rng: random.Random, weighted: dict[str, int]) -> str:
    return rng.choices(list(weighted), weights=list(weighted.values()))[0]


def _validity(rng: random.Random, features: list[str], what: str) -> dict[str, Any]:
    state = _pick(rng, {"valid": 14, "expired": 1, "future": 1})
    if state == "valid":
        return {}
    features.append(f"{what} {state}")
    return _EXPIRED if state == "expired" else _CA_FUTURE


def _ca_extensions(rng: random.Random, features: list[str], what: str) -> dict[str, Any]:
    shape: dict[str, Any] = {}
    eku = _pick(rng, {"none": 10, "serverAuth": 2, "clientAuth": 1, "any": 1, "server+client": 1})
    if eku != "none":
        shape["extended_key_usage"] = _EKUS[eku]
        features.append(f"{what} EKU {eku}")
    if rng.random() < 0.2:
        subtree = rng.choice(["example.test", "other.test"])
        excluded = rng.random() < 0.3
        constraints = x509.NameConstraints(
            permitted_subtrees=None if excluded else [x509.DNSName(subtree)],
            excluded_subtrees=[x509.DNSName(subtree)] if excluded else None,
        )
        shape["extensions"] = [(constraints, True)]
        features.append(f"{what} name constraints {'excluded' if excluded else 'permitted'} {subtree}")
    return shape


def _root(rng: random.Random, name: str, features: list[str], key: Any = None) -> Issued:
    kind = _pick(rng, {"v3": 10, "v1": 2, "no basicConstraints": 2, "EKU": 2})
    shape: dict[str, Any] = {"is_ca": True, "key": key or new_key(_key_type(rng, features))}
    shape.update(_validity(rng, features, "root"))
    if kind == "no basicConstraints":
        shape["basic_constraints"] = False
    if kind == "EKU":
        eku = rng.choice(["serverAuth", "clientAuth", "any"])
        shape["extended_key_usage"] = _EKUS[eku]
        kind = f"EKU {eku}"
    if kind == "v3" and rng.random() < 0.2:
        shape["path_length"] = rng.choice([0, 1])
        kind = f"pathLen {shape['path_length']}"
    issued = make_certificate(name, **shape)
    if kind == "v1":
        issued = as_v1(issued)
    features.append(f"root {kind}")
    return issued


def _key_type(rng: random.Random, features: list[str]) -> Literal["rsa", "ec"]:
    if rng.random() < 0.08:
        features.append("RSA key")
        return "rsa"
    return "ec"


def as_v1(issued: Issued) -> Issued:
    """The same self-signed certificate as X.509 v1: no version field, no extensions, signed again."""
    tbs = x509.load_der_x509_certificate(issued.der).tbs_certificate_bytes
    kept = [
        part.encoded for part in der.element(tbs).children if part.tag not in (0xA0, 0xA3)
    ]  # [0] version, [3] extensions
    return Issued(signed(der_tlv(0x30, b"".join(kept)), issued.key), issued.key)


def signed(tbs: bytes, key: Any) -> x509.Certificate:
    """A certificate of these TBS bytes, signed by `key` (ECDSA or RSA with SHA-256, as the TBS says)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        algorithm = bytes.fromhex("300a06082a8648ce3d040302")
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
        algorithm = bytes.fromhex("300d06092a864886f70d01010b0500")
    return x509.load_der_x509_certificate(der_tlv(0x30, tbs + algorithm + der_tlv(0x03, b"\x00" + signature)))


def scenario(seed: int) -> Scenario:
    rng = random.Random(seed)
    features: list[str] = []
    dns_name = f"leaf{seed}.example.test"
    if rng.random() < 0.08:  # a self-signed leaf: its own anchor
        leaf = make_certificate(dns_name, key_type="ec", dns_names=[dns_name], **_leaf_validity(rng, features))
        entries = [(leaf, rng.random() < 0.6)] if rng.random() < 0.8 else []
        return Scenario(seed, leaf, dns_name, entries, [leaf], ["self-signed leaf", *features])

    root = _root(rng, f"Root {seed}", features)
    self_signed, extras = [root], []
    top = root
    if rng.random() < 0.15:  # key rollover: a new root key, certified by the old one in a self-issued link
        new_key_ = new_key("ec")
        new_root = make_certificate(f"Root {seed}", is_ca=True, key=new_key_)
        link = make_certificate(f"Root {seed}", issuer=root, is_ca=True, key=new_key_)
        self_signed.append(new_root)
        extras.append(link)
        top = new_root
        features.append("rollover link")
    depth = rng.randint(1, 4)  # CAs in the main path, the root included
    cas = [top]
    for level in range(1, depth):
        what = f"CA{level}"
        shape: dict[str, Any] = {"is_ca": True, "key_type": _key_type(rng, features)}
        shape.update(_validity(rng, features, what))
        shape.update(_ca_extensions(rng, features, what))
        if rng.random() < 0.25:
            shape["path_length"] = rng.choice([0, 0, 1, 2])
            features.append(f"{what} pathLen {shape['path_length']}")
        if rng.random() < 0.04:
            shape["basic_constraints"] = False
            features.append(f"{what} no basicConstraints")
        cas.append(make_certificate(f"CA{level} {seed}", issuer=cas[-1], **shape))
    if depth >= 2 and rng.random() < 0.2:  # the top intermediate cross-signed by another root
        other = _root(rng, f"Other Root {seed}", features)
        cross = make_certificate(f"CA1 {seed}", issuer=other, is_ca=True, key=cas[1].key)
        self_signed.append(other)
        extras.append(cross)
        features.append("cross-signed")
    eku = _pick(rng, {"server+client": 8, "serverAuth": 3, "none": 2, "clientAuth": 1, "any": 1})
    leaf = make_certificate(
        dns_name,
        issuer=cas[-1],
        key_type="ec",
        dns_names=[dns_name],
        extended_key_usage=_EKUS[eku] or [],
        **_leaf_validity(rng, features),
    )
    if eku != "server+client":
        features.append(f"leaf EKU {eku}")
    pool = [root, *cas[1:], *extras, *(s for s in self_signed if s is not root)]
    entries = []
    for ca in pool:
        if rng.random() < 0.85:
            trusted = rng.random() < (0.7 if ca in self_signed else 0.2)
            entries.append((ca, trusted))
    rng.shuffle(entries)
    return Scenario(seed, leaf, dns_name, entries, self_signed, features)


def _leaf_validity(rng: random.Random, features: list[str]) -> dict[str, Any]:
    state = _pick(rng, {"valid": 12, "expired": 1, "future": 1})
    if state == "valid":
        return {}
    features.append(f"leaf {state}")
    return _EXPIRED if state == "expired" else _LEAF_FUTURE


# -- the two judges ----------------------------------------------------------------------------------------


def model(case: Scenario) -> tuple[bool, str]:
    trusted = [Certificate.from_x509(ca.certificate) for ca, is_trusted in case.entries if is_trusted]
    untrusted = [Certificate.from_x509(ca.certificate) for ca, is_trusted in case.entries if not is_trusted]
    found = verdict(Certificate.from_x509(case.leaf.certificate), trusted=trusted, untrusted=untrusted, at=AT)
    return found.accepted, found.reason


def openssl_verify(case: Scenario, workdir: Path) -> tuple[bool, str]:
    def pem(path: Path, certificates: Sequence[Issued]) -> Path:
        path.write_bytes(b"".join(c.certificate.public_bytes(serialization.Encoding.PEM) for c in certificates))
        return path

    anchors = [ca for ca, is_trusted in case.entries if is_trusted and any(ca is s for s in case.self_signed)]
    # The entries in the order the model is given them (trusted, then untrusted) and, when two share
    # a name, reversed too: accepted only if every order is (see shared.chain.verdict).
    entries = [ca for ca, is_trusted in case.entries if is_trusted] + [ca for ca, t in case.entries if not t]
    names = [ca.certificate.subject for ca in entries]
    orders = [entries, entries[::-1]] if len(set(names)) < len(names) else [entries]
    said: list[str] = []
    for order in orders:
        command = ["openssl", "verify", "-no-CAfile", "-no-CApath", "-no-CAstore"]
        command += ["-purpose", "sslserver", "-verify_hostname", case.dns_name]
        command += ["-attime", str(int(case.judged_at.timestamp()))]
        if anchors:
            command += ["-CAfile", str(pem(workdir / "anchors.pem", anchors))]
        if order:
            command += ["-untrusted", str(pem(workdir / "entries.pem", order))]
        command.append(str(pem(workdir / "leaf.pem", [case.leaf])))
        run = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
        if run.returncode != 0:
            return False, " ".join((run.stdout + run.stderr).split())
        said.append(" ".join(run.stdout.split()))
    return True, "; ".join(said)


@dataclass
class Figures:
    pkis: int = 0
    agreements: int = 0
    accepted: int = 0
    disagreements: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"differential model vs openssl verify: {self.pkis} PKIs, {self.agreements} agreements "
            f"({self.accepted} accepted by both), {len(self.disagreements)} disagreements"
        )


def run(seeds: range) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory() as directory:
        for seed in seeds:
            case = scenario(seed)
            (by_model, reason), (by_openssl, said) = model(case), openssl_verify(case, Path(directory))
            figures.pkis += 1
            if by_model == by_openssl:
                figures.agreements += 1
                figures.accepted += by_model
            else:
                figures.disagreements.append(
                    f"seed {seed} [{', '.join(case.features)}]: model {'accepts' if by_model else 'refuses'}"
                    f" ({reason}); openssl {'accepts' if by_openssl else 'refuses'} ({said})"
                )
    return figures


def main(argv: Sequence[str]) -> int:
    count = int(argv[0]) if argv else 2000
    first = int(argv[1]) if len(argv) > 1 else 0
    figures = run(range(first, first + count))
    for line in figures.disagreements:
        print(line)
    print(figures.line())
    return 1 if figures.disagreements else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
