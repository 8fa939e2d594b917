"""The benchmark's estates: what the emulator holds before a run, the change a run reacts to, and
the DAG of the calls the request budget allows for it (see `bench.model`).

Every estate starts *in sync* (APIM holds and trusts what the product would have put there), as
a production estate does between rotations:

- rotations: one certificate ``orders-N`` (root → intermediate → leaf), version 1 created a month
  ago and trusted on every gateway; the run is the event for version 2 (a new leaf from the same
  CAs, or a new leaf from a new root and intermediate). A repetition rotates a certificate of its
  own (``orders-2``, ...) in the same estate, so its CA lists hold a few more entries (one page);
- every key is RSA-2048 in a PFX as Key Vault writes it (3DES/SHA-1, 2,000 iterations), except in
  the rows marked ECDSA (P-256), which measure what the key type costs;
- full audit: C certificates with one version each, issued from C/10 private hierarchies (root →
  intermediate), so APIM holds C/5 CAs, each trusted on all 25 gateways; the run is the timer's
  audit (``AUDIT_REMEDIATE=false``), which finds the estate in sync.

PKI material is generated once per scenario (and repetition), so the parallel run and the naive
run see the same estate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import model
from emulator import Emulator
from emulator.pki import Hierarchy, KeyType, pfx_secret
from shared.chain import Certificate
from shared.plan import certificate_id_for

PAGE_SIZE = 25  # the emulator's page size: Key Vault's maximum, and APIM pages the same way here
MONTH_AGO = datetime.now(UTC) - timedelta(days=30)


@dataclass
class Material:
    """Secrets (base64 PFX, as Key Vault stores them) and the CA certificates (DER) they chain to."""

    secrets: list[tuple[str, str]]  # (certificate name, secret) present before the run
    cas: list[bytes]  # CA certificates present before the run, trusted on every gateway
    new_version: str | None = None  # the version the rotation imports (of the first certificate)
    new_cas: list[bytes] = field(default_factory=list)


def _cas(pki: Hierarchy) -> list[bytes]:
    return [Certificate.from_x509(cert).der for cert in pki.ca_certificates()]


def _secret(pki: Hierarchy, hostname: str) -> str:
    leaf = pki.issue(hostname)
    return pfx_secret(leaf.key, leaf.certificate, pki.ca_certificates())


@dataclass(frozen=True)
class Scenario:
    key: str
    kind: str  # "leaf" | "chain" | "audit" | "resync" (a no-op full resync: it may remove, finds nothing to)
    gateways: int
    certificates: int = 1
    key_type: KeyType = "rsa"  # RSA-2048 in a 3DES/SHA-1 PFX, as Key Vault issues them by default

    @property
    def in_place(self) -> bool:
        """An estate in sync, read again in place: the audit and the no-op full resync."""
        return self.kind in ("audit", "resync")

    @property
    def title(self) -> str:
        keys = " ECDSA" if self.key_type == "ec" else ""
        if self.kind == "audit":
            return f"(c) full audit C={self.certificates} G={self.gateways}{keys}"
        if self.kind == "resync":
            return f"(r) no-op full resync C={self.certificates} G={self.gateways}{keys}"
        what = "leaf-only rotation" if self.kind == "leaf" else "new-chain rotation"
        return f"({'a' if self.kind == 'leaf' else 'b'}) {what} G={self.gateways}{keys}"

    def hierarchy(self, organization: str) -> Hierarchy:
        return Hierarchy(intermediates=1, organization=organization, key_type=self.key_type)

    def material(self, repetition: int = 1) -> Material:
        if self.in_place:
            pkis = [self.hierarchy(f"Org{n:03d}") for n in range(max(1, self.certificates // 10))]
            secrets = [
                (f"svc-{n:04d}", _secret(pkis[n % len(pkis)], f"svc-{n:04d}.internal.example"))
                for n in range(self.certificates)
            ]
            return Material(secrets, [der for pki in pkis for der in _cas(pki)])
        pki = self.hierarchy(f"Contoso{repetition}")
        material = Material([(f"orders-{repetition}", _secret(pki, "orders.internal.example"))], _cas(pki))
        if self.kind == "leaf":
            material.new_version = _secret(pki, "orders.internal.example")
        else:
            new_pki = self.hierarchy(f"Fabrikam{repetition}")
            material.new_version = _secret(new_pki, "orders.internal.example")
            material.new_cas = _cas(new_pki)
        return material

    def arrange(self, emu: Emulator, material: Material) -> None:
        gateways = [f"gw-{n:02d}" for n in range(1, self.gateways + 1)]
        for gateway in gateways:
            if gateway not in {g.id for g in emu.apim.gateways}:
                emu.apim.add_gateway(gateway)
        created = MONTH_AGO if not self.in_place else None
        for name, secret in material.secrets:
            emu.vault.import_certificate(name, secret, created=created)
        for der in material.cas:
            ca = Certificate.from_der(der)
            certificate_id = certificate_id_for(ca)
            emu.apim.add_certificate(certificate_id, der)
            for gateway in gateways:  # as the app leaves them: the root trusted, the others build chains
                emu.apim.set_gateway_ca(gateway, certificate_id, trusted=ca.is_self_signed)

    def warm_up(self, emu: Emulator, material: Material) -> dict[str, Any]:
        """A no-op invocation before the measured one: a warm worker (tokens, challenges, connections)."""
        return {"cmd": "event", "event": emu.vault.certificate_event(material.secrets[0][0])}

    def change(self, emu: Emulator, material: Material) -> dict[str, Any]:
        """Applies the scenario's change to the estate; returns the command to measure."""
        if self.in_place:
            return {"cmd": self.kind}
        assert material.new_version is not None
        rotated = material.secrets[0][0]
        emu.vault.import_certificate(rotated, material.new_version)
        return {"cmd": "event", "event": emu.vault.certificate_event(rotated)}

    def check(self, emu: Emulator, material: Material, answer: dict[str, Any]) -> list[str]:
        """What is wrong with the outcome (empty: the run did what the scenario needs)."""
        problems = []
        if answer.get("error"):
            problems.append(str(answer["error"]))
        if self.kind == "audit" and answer.get("audit_status") != "in-sync":
            problems.append(f"audit status {answer.get('audit_status')}, expected in-sync")
        if self.kind == "resync" and answer.get("status") != "in-sync":
            problems.append(f"resync status {answer.get('status')} (left {answer.get('left')}), expected in-sync")
        # As the app leaves a gateway (TRUST_INTERMEDIATES=false): each root trusted, each intermediate held.
        cas_wanted = [Certificate.from_der(der) for der in material.cas + material.new_cas]
        wanted = {certificate_id_for(ca): ca.is_self_signed for ca in cas_wanted}
        for gateway in emu.apim.gateways:
            cas = emu.apim.gateway_cas(gateway.id)
            if not all(cid in cas and (cas[cid] or not root) for cid, root in wanted.items()):
                problems.append(f"{gateway.id} holds {sorted(cas)}, expected at least {sorted(wanted)} (roots trusted)")
                break
        return problems

    def dag(self, emu: Emulator, material: Material, *, fresh: bool = False) -> model.Dag:
        """The calls the budget allows for the run about to start, given what APIM holds now;
        `fresh`: on a new worker, whose tokens and challenges come first."""
        estate = model.Estate(
            self.gateways,
            len(emu.apim.certificates),
            max(len(emu.apim.gateway_cas(gateway.id)) for gateway in emu.apim.gateways),
            PAGE_SIZE,
        )
        if self.in_place:  # nothing to remove: no last look at Key Vault
            return model.full_audit(estate, certificates=self.certificates, fresh=fresh)
        return model.rotation(estate, versions=2, new_cas=len(material.new_cas), fresh=fresh)


SCENARIOS = (
    Scenario("a", "leaf", gateways=25),
    Scenario("b1", "chain", gateways=1),
    Scenario("b10", "chain", gateways=10),
    Scenario("b25", "chain", gateways=25),
    Scenario("b25ec", "chain", gateways=25, key_type="ec"),
    Scenario("c50", "audit", gateways=25, certificates=50),
    Scenario("c200", "audit", gateways=25, certificates=200),
    Scenario("c200ec", "audit", gateways=25, certificates=200, key_type="ec"),
    Scenario("c1000", "audit", gateways=25, certificates=1000),
    Scenario("r200", "resync", gateways=25, certificates=200),
)


@dataclass(frozen=True)
class WriteRate:
    """A first sync of C certificates (a root and an intermediate each, nothing in APIM yet) on G
    gateways under ARM's write bucket (`capacity`, refilled at `refill` a second): 2C(1 + G) writes,
    most of them paced at the refill rate. What is measured is the rate they go at once the bucket's
    burst is spent, against the refill rate."""

    key: str
    gateways: int
    certificates: int
    capacity: int
    refill: float
    retry_after_unit: float  # 1.0: whole seconds, as ARM sends; less for a bucket scaled down in time

    @property
    def writes(self) -> int:
        return 2 * self.certificates * (1 + self.gateways)

    @property
    def title(self) -> str:
        return (
            f"(w) first sync C={self.certificates} G={self.gateways} ({self.writes} writes), "
            f"bucket {self.capacity} + {self.refill:g}/s"
        )

    def arrange(self, emu: Emulator) -> None:
        for n in range(1, self.gateways + 1):
            emu.apim.add_gateway(f"gw-{n:02d}")
        for n in range(self.certificates):
            pki = Hierarchy(intermediates=1, organization=f"Rate{n:03d}")
            emu.vault.import_certificate(f"svc-{n:03d}", _secret(pki, f"svc-{n:03d}.internal.example"))


WRITE_RATES = (
    # The scenario that failed with HTTP 500 before the pacer: ARM's refill rate, a bucket scaled down.
    WriteRate("w10", gateways=5, certificates=20, capacity=40, refill=10, retry_after_unit=1.0),
    # The same scaled down in time too: a thousand writes at ten times the rate.
    WriteRate("w100", gateways=25, certificates=20, capacity=40, refill=100, retry_after_unit=0.001),
)
