"""``make demo``: the whole job on the local emulator, through the real functions and the real Azure SDKs.

1. A private CA chain (root → issuing CA → server) goes into the emulated Key Vault.
2. Event Grid delivers ``CertificateNewVersionCreated`` to ``on_keyvault_event``: every self-hosted
   gateway now trusts the chain.
3. The issuing CA is rotated (imported with the Key Vault SDK, as PEM this time): the new chain is
   trusted, and the previous one stays while the old certificate version is still valid.
4. ``POST /api/resync`` plans (dry run) and, once the old version is retired, removes what nobody needs.
5. Someone untrusts a CA by hand; ``drift_audit`` reports it, then repairs it.
6. The expiry horizon: what expires next, per certificate version and per gateway.
7. A classic service (Standard tier) beside them: no self-hosted gateway, its managed gateway trusts
   the service's CA store, which a second deployment writes with ``CA_STORE=manage``.
"""

from __future__ import annotations

import json
import os
import queue
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.identity import ManagedIdentityCredential
from azure.keyvault.certificates import CertificateClient, CertificateContentType, CertificatePolicy
from cryptography.hazmat.primitives.serialization import pkcs12

from emulator import Emulator
from emulator.pki import Issued, make_certificate, pem_secret, pfx_secret
from local.host import event_grid_event, post, timer
from local.host import functions as host_functions

VAULT_CERTIFICATE = "orders-api"
GATEWAYS = ("gw-aks-westeurope", "gw-aks-chinanorth3")
BOLD, DIM, GREEN, YELLOW, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[33m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
)


def step(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


def table(rows: Iterable[tuple[str, ...]], header: tuple[str, ...]) -> None:
    rows = list(rows)
    if not rows:
        print(f"   {DIM}(none){RESET}")
        return
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("   " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def show_apim(emu: Emulator, label: str) -> None:
    print(f"\n  {label}: APIM certificates")
    table(
        ((cid, c.subject, c.thumbprint[:16] + "…") for cid, c in sorted(emu.apim.certificates.items())),
        ("ID", "SUBJECT", "THUMBPRINT"),
    )
    print(f"  {label}: gateway certificate authorities")
    table(
        (
            (gateway.id, cid, "true" if ok else "false")
            for gateway in emu.apim.gateways
            for cid, ok in sorted(emu.apim.gateway_cas(gateway.id).items())
        ),
        ("GATEWAY", "CERTIFICATE ID", "isTrusted"),
    )


def show_report(body: dict[str, Any]) -> None:
    state = f"{GREEN}in sync{RESET}" if body["inSync"] else f"{YELLOW}not in sync{RESET}"
    print(
        f"  dryRun={str(body['dryRun']).lower()}  {state}  actions={len(body['actions'])}  errors={len(body['errors'])}"
    )
    table(
        ((a["action"], a["certificateId"], a["gateway"] or "", a["status"]) for a in body["actions"]),
        ("ACTION", "CERTIFICATE ID", "GATEWAY", "STATUS"),
    )
    for warning in body["warnings"]:
        print(f"  {DIM}note: {warning}{RESET}")


def show_horizon(expiry: dict[str, Any]) -> None:
    """Each needed certificate version's leaf and earliest CA, and each gateway's earliest trusted CA."""
    now = datetime.now(UTC)
    rows: list[tuple[datetime, str, str]] = []
    for item in expiry["certificates"]:
        where = f"certificate {item['certificate']} ({item['version'][:8]}…)"
        rows.append((datetime.fromisoformat(item["leafExpires"]), where, "leaf"))
        if item["earliestCaExpires"]:
            rows.append((datetime.fromisoformat(item["earliestCaExpires"]), where, f"earliest CA {item['earliestCa']}"))
    for item in expiry["gateways"]:
        rows.append(
            (datetime.fromisoformat(item["earliestExpires"]), f"gateway {item['gateway']}", item["certificateId"])
        )
    table(
        ((f"{when:%Y-%m-%d}", str((when - now).days), where, what) for when, where, what in sorted(rows)),
        ("EXPIRES", "DAYS LEFT", "WHERE", "WHAT"),
    )
    within = expiry["expiring"] or ["nothing"]
    print(f"  within EXPIRY_WARNING_DAYS={expiry['warningDays']}: {'; '.join(within)}")
    print(
        f"  {DIM}In Azure the same horizon is the TRUSTSYNC_HORIZON records and the trustsync.expiry.seconds metric"
        f" (the workbook's 'What will break next'); the audit says status=expiring inside the window.{RESET}"
    )


def chain(root: Issued, issuing_name: str, host: str, *, leaf_days: int | None = None) -> tuple[Issued, Issued]:
    issuing = make_certificate(issuing_name, issuer=root, is_ca=True)
    not_after = datetime.now(UTC) + timedelta(days=leaf_days) if leaf_days is not None else None
    return issuing, make_certificate(host, issuer=issuing, not_after=not_after)


def main() -> int:
    print(
        f"{BOLD}APIM Trust Sync — demo on the local emulator (Key Vault, ARM/APIM, managed identity on 127.0.0.1){RESET}"
    )
    with Emulator(page_size=5) as emu:
        for gateway in GATEWAYS:
            emu.apim.add_gateway(gateway, description="self-hosted gateway on AKS")
        os.environ.update(emu.environ(CERTIFICATE_NAMES=VAULT_CERTIFICATE, AUDIT_REMEDIATE="false"))
        deliveries: queue.Queue[dict[str, Any]] = queue.Queue()
        emu.vault.subscribe(deliveries.put)  # Key Vault → Event Grid system topic → our subscription
        functions = host_functions()  # indexed after the environment points at the emulator

        def deliver_pending() -> None:
            while not deliveries.empty():
                event = deliveries.get()
                print(
                    f"  Event Grid → on_keyvault_event: {event['eventType']} {event['subject']} {event['data']['Version'][:8]}…"
                )
                functions["on_keyvault_event"](event_grid_event(event))

        step("1. A private CA chain goes into Key Vault (PFX, imported a month ago)")
        root = make_certificate("Contoso Root CA", is_ca=True)
        issuing_1, leaf_1 = chain(root, "Contoso Issuing CA 1", "orders.internal.contoso")
        emu.vault.import_certificate(
            VAULT_CERTIFICATE,
            pfx_secret(leaf_1.key, leaf_1.certificate, [issuing_1.certificate, root.certificate]),
            created=datetime.now(UTC) - timedelta(days=30),
        )
        print(
            f"  {VAULT_CERTIFICATE}: {leaf_1.certificate.subject.rfc4514_string()} ← Contoso Issuing CA 1 ← Contoso Root CA"
        )
        show_apim(emu, "before")

        step("2. Rotation event → on_keyvault_event")
        emu.clear_requests()
        deliver_pending()
        show_apim(emu, "after")
        print(
            f"  {emu.count(writes=True)} writes, {emu.count(writes=False)} reads (incl. token and Key Vault auth challenge)"
        )
        emu.clear_requests()
        event = emu.vault.certificate_event(VAULT_CERTIFICATE)
        deliveries.put(event)
        deliver_pending()
        print(f"  the same event delivered again (Event Grid is at-least-once): {emu.count(writes=True)} writes")

        step(
            "3. Rotate the issuing CA: new version imported with the Key Vault SDK, as PEM (a 20-day server certificate)"
        )
        issuing_2, leaf_2 = chain(root, "Contoso Issuing CA 2", "orders.internal.contoso", leaf_days=20)
        client = CertificateClient(emu.keyvault_url, ManagedIdentityCredential())
        client.import_certificate(
            VAULT_CERTIFICATE,
            pem_secret(leaf_2.key, [leaf_2.certificate, issuing_2.certificate, root.certificate]).encode(),
            policy=CertificatePolicy(content_type=CertificateContentType.pem),
        )
        deliver_pending()
        show_apim(emu, "after rotation")
        print(
            "  Issuing CA 1 stays on the gateways (the root anchors both chains): the previous version is still valid and a backend may not have reloaded yet."
        )

        step('4. POST /api/resync {"dryRun": true}')
        answer = _resync(functions, {"dryRun": True})
        show_report(answer)
        print("\n  The old version is retired (disabled in Key Vault); POST /api/resync (full, applied):")
        emu.vault.set_enabled(VAULT_CERTIFICATE, emu.vault.versions(VAULT_CERTIFICATE)[0], False)
        show_report(_resync(functions, None))
        show_apim(emu, "after resync")

        step("5. Drift: someone deletes the root's trust on one gateway by hand")
        root_id = next(cid for cid, c in emu.apim.certificates.items() if c.subject == "CN=Contoso Root CA")
        emu.apim.delete_gateway_ca(GATEWAYS[1], root_id, if_match="*")
        print(f"  drift_audit (AUDIT_REMEDIATE=false) logs:\n{_audit(functions)}")
        os.environ["AUDIT_REMEDIATE"] = "true"
        print(f"  drift_audit (AUDIT_REMEDIATE=true) logs:\n{_audit(functions)}")
        print(f"  drift_audit again:\n{_audit(functions)}")

        step('6. Expiry horizon: what expires next (POST /api/resync {"dryRun": true}, its "expiry")')
        show_horizon(_resync(functions, {"dryRun": True})["expiry"])

        classic_ok = _classic_service(emu, functions)

        step("Summary")
        # As a gateway needs them: the root trusted (its anchor), the issuing CA held for chain building.
        wanted = {
            cid: c.subject == "CN=Contoso Root CA"
            for cid, c in emu.apim.certificates.items()
            if c.subject in ("CN=Contoso Root CA", "CN=Contoso Issuing CA 2")
        }
        ok = len(wanted) == 2 and all(
            all(cid in cas and (cas[cid] or not root) for cid, root in wanted.items())
            for cas in (emu.apim.gateway_cas(g.id) for g in emu.apim.gateways)
        )
        keyless = all(
            not c.had_private_key and pkcs12.load_pkcs12(c.uploaded_pfx, c.password.encode()).key is None
            for c in emu.apim.certificates.values()
        )
        print(f"  every gateway trusts Contoso Root CA, holds Issuing CA 2:    {_yes(ok)}")
        print(f"  Contoso Issuing CA 1 removed after its version was retired:  {_yes(len(emu.apim.certificates) == 2)}")
        print(f"  no uploaded PFX holds a private key:                         {_yes(keyless)}")
        print(f"  the classic service's managed gateway trusts the chain:      {_yes(classic_ok)}")
        return 0 if ok and keyless and classic_ok else 1


def _classic_service(emu: Emulator, functions: dict[str, Callable[..., Any]]) -> bool:
    """Step 7: a Standard-tier service, its CA store written by a deployment of its own."""
    step("7. A classic service (Standard tier) beside the self-hosted gateways: its managed gateway's CA store")
    classic = emu.add_apim_service(emu.apim.subscription_id, emu.apim.resource_group, "apim-classic-demo")
    classic.sku = "Standard"
    saved = dict(os.environ)
    os.environ.update(APIM_RESOURCE_ID=classic.resource_id, CA_STORE="manage", DEPLOYMENT_ID="classic")
    try:
        print("  CA_STORE=off would only judge it; with CA_STORE=manage, POST /api/resync:")
        first = _resync(functions, None)
        _show_service(first)
        print(f"  {DIM}(Azure applies a CA store update over 15 minutes or more; the emulator finishes it now){RESET}")
        classic.finish_update()
        print("  POST /api/resync again:")
        second = _resync(functions, None)
        _show_service(second)
        print("  the classic service's CA store (a GET shows no certificate bytes):")
        table(
            ((e.store_name, e.subject, e.thumbprint[:16] + "…") for e in classic.ca_store),
            ("STORE", "SUBJECT", "THUMBPRINT"),
        )
        return bool(second["inSync"])
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _show_service(body: dict[str, Any]) -> None:
    service = body["service"]
    state = f"{GREEN}in sync{RESET}" if body["inSync"] else f"{YELLOW}{body['status']}{RESET}"
    print(f"  tier {service['tier']} ({service['kind']})  {state}")
    for target in service["targets"]:
        print(f"    {target['kind']} {target['name']}: {target['manages']}")
    store = service.get("caStore", {})
    print(f"    CA store: {store.get('status')}  {DIM}{store.get('detail', '')}{RESET}")
    for verdict in body["verdicts"]["rejected"]:
        print(f"    {verdict['gateway']} rejects {verdict['certificate']}: {verdict['reason']}")


def _yes(value: bool) -> str:
    return f"{GREEN}yes{RESET}" if value else f"{YELLOW}NO{RESET}"


def _resync(functions: dict[str, Callable[..., Any]], body: dict[str, Any] | None) -> dict[str, Any]:
    response = functions["resync"](post("resync", json.dumps(body).encode() if body else b""))
    result: dict[str, Any] = json.loads(response.get_body())
    return result


def _audit(functions: dict[str, Callable[..., Any]]) -> str:
    import logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("TRUSTSYNC_AUDIT"):
                records.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("trustsync")
    logger.setLevel(logging.INFO)  # the in-sync record is INFO; the Functions host sets this from host.json
    logger.addHandler(handler)
    try:
        functions["drift_audit"](timer())
    finally:
        logger.removeHandler(handler)
    lines = []
    for message in records:
        prefix, status, body = message.split(" ", 2)
        report = json.loads(body)
        actions = ", ".join(
            f"{a['action']} {a['certificateId']} on {a['gateway']} ({a['status']})" for a in report["actions"]
        )
        lines.append(f"    {prefix} {status} inSync={str(report['inSync']).lower()} {actions}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
