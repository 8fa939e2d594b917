"""Operator CLI: ``python -m shared plan | sync | audit [--json] [--certificates a,b]``.

Same configuration as the Function App (environment variables). Exit codes: 0 in sync,
2 drift found (plan, or audit without remediation), 1 errors or bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from shared import handlers
from shared.connect import close_clients
from shared.engine import Report, Scope
from shared.settings import SettingsError, unbound_certificates

EXIT_IN_SYNC = 0
EXIT_FAILED = 1
EXIT_DRIFT = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", choices=("plan", "sync", "audit"), help="plan: dry run; sync: apply; audit: as the timer"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--certificates", help="comma-separated Key Vault certificate names (default: every bound one)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each call and action")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        settings = handlers.current_settings()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return EXIT_FAILED

    if args.command == "audit" and args.certificates:
        parser.error("audit always covers every bound certificate")
    names = frozenset(n.strip() for n in args.certificates.split(",")) if args.certificates else None
    unbound = unbound_certificates(settings, names or ())
    if unbound:
        print(f"not bound by CERTIFICATE_NAMES: {', '.join(unbound)}", file=sys.stderr)
        return EXIT_FAILED
    report = asyncio.run(_run(args.command, names))

    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    if report.errors:
        return EXIT_FAILED
    return EXIT_IN_SYNC if report.in_sync else EXIT_DRIFT


async def _run(command: str, names: frozenset[str] | None) -> Report:
    try:
        if command == "audit":
            return await handlers.handle_audit()
        engine = handlers.engine_for(handlers.current_settings())
        return await engine.run(Scope(certificates=names), apply=command == "sync")
    finally:
        await close_clients()


def render(report: Report) -> str:
    """A readable table of the report."""
    rows = [("ACTION", "CERTIFICATE ID", "GATEWAY", "TRUSTED", "STATUS", "REASON")]
    for result in report.results:
        action = result.action
        trusted = "" if action.trusted is None else str(action.trusted).lower()
        reason = result.error or action.reason
        rows.append(
            (action.kind.value, action.certificate_id, action.gateway or "", trusted, result.status.value, reason)
        )
    lines = [f"scope: {report.scope}   dry run: {str(report.dry_run).lower()}   status: {report.status}"]
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines += ["  ".join([*(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)), row[5]]) for row in rows]
    elif not report.errors:
        lines.append("nothing to change: every gateway trusts what Key Vault holds")
    lines += [f"conflict: {message}" for message in report.conflicts]
    lines += [f"warning: {message}" for message in report.warnings]
    lines += [f"error: {message}" for message in report.errors]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
