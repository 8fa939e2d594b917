"""Operator CLI: ``python -m shared plan | sync | audit [--json] [--certificates a,b] [-v]``.

Same configuration as the Function App (environment variables). Exit codes: 0 in sync, 1 failed
(errors, or a configuration error), 2 drift (something needed is missing or unneeded remains),
4 partial (RUN_TIME_BUDGET ran out with writes left: run it again to continue), 64 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from shared.handlers import TrustSync
from shared.report import Mode, Report, RunStatus, Scope
from shared.settings import SettingsError, is_keyvault_object_name, parse_names, unbound_certificates

EXIT_IN_SYNC = 0
EXIT_FAILED = 1
EXIT_DRIFT = 2
EXIT_PARTIAL = 4  # the time budget ran out with writes left; the next run continues
EXIT_USAGE = 64  # sysexits.h EX_USAGE: never confused with drift
_EXIT_BY_STATUS = {
    RunStatus.IN_SYNC: EXIT_IN_SYNC,
    RunStatus.DRIFT: EXIT_DRIFT,
    RunStatus.PARTIAL: EXIT_PARTIAL,
    RunStatus.FAILED: EXIT_FAILED,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _certificate_names(raw: str) -> frozenset[str]:
    try:
        return parse_names("--certificates", raw, is_keyvault_object_name)
    except SettingsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m shared", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "command", choices=("plan", "sync", "audit"), help="plan: dry run; sync: apply; audit: as the timer"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--certificates",
        type=_certificate_names,
        help="comma-separated Key Vault certificate names (default: all bound)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the app's Azure calls and each action")
    args = parser.parse_args(argv)
    if args.command == "audit" and args.certificates:
        parser.error("audit always covers every bound certificate")
    _configure_logging(args.verbose)

    app = TrustSync()
    try:
        settings = app.settings()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return EXIT_FAILED
    unbound = unbound_certificates(settings, args.certificates or ())
    if unbound:
        print(f"--certificates: not in CERTIFICATE_NAMES: {', '.join(unbound)}", file=sys.stderr)
        return EXIT_USAGE
    report = asyncio.run(_run(app, args.command, args.certificates))
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    return _EXIT_BY_STATUS[report.status]


async def _run(app: TrustSync, command: str, names: frozenset[str] | None) -> Report:
    try:
        if command == "audit":
            return await app.handle_audit()
        mode = Mode.FULL if command == "sync" else Mode.DRY_RUN
        return await app.engine(app.settings()).run(Scope(certificates=names), mode)
    finally:
        await app.close()


def _configure_logging(verbose: bool) -> None:
    """The report says everything once; -v adds the app's own calls and actions as they happen."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(lambda record: record.levelno < logging.WARNING)  # warnings and errors are in the report
    app_log = logging.getLogger("trustsync")
    app_log.addHandler(handler)
    app_log.propagate = False
    app_log.setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)
    logging.getLogger("azure").setLevel(logging.WARNING)


def render(report: Report) -> str:
    """A readable table of the report, ending in a one-line summary."""
    rows = [("ACTION", "CERTIFICATE ID", "GATEWAY", "TRUSTED", "STATUS", "REASON")]
    for outcome in report.outcomes:
        action = outcome.action
        trusted = "" if action.trusted is None else str(action.trusted).lower()
        reason = outcome.error or action.reason
        rows.append(
            (action.kind.value, action.certificate_id, action.gateway or "", trusted, outcome.status.value, reason)
        )
    lines = [f"scope: {report.scope}   mode: {report.mode.value}   status: {report.status.value}"]
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines += ["  ".join([*(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)), row[5]]) for row in rows]
    elif not report.errors:
        lines.append("nothing to change: every gateway trusts what Key Vault holds")
    lines += [f"conflict: {message}" for message in report.conflicts]
    lines += [f"warning: {message}" for message in report.warnings]
    lines += [f"error: {message}" for message in report.errors]
    counts = ", ".join(f"{count} {what}" for what, count in report.summary().items()) or "no actions"
    lines.append(f"summary: {counts}; {len(report.conflicts)} conflict(s), {len(report.errors)} error(s)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
