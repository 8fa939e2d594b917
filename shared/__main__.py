"""Operator CLI: keep API Management gateways trusting the CA chains of Key Vault certificates.

Same configuration as the Function App: the app settings, read from the environment and, when the
current directory holds one, from local.settings.json's "Values" (the environment wins).

On a terminal (stdout and stderr both), a run that takes longer than about a second shows its
progress on stderr: Key Vault reads and writes done out of planned. Nothing extra with --json
or when the output goes to a file or a pipe.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .diagnosis import diagnose
from .handlers import TrustSync
from .ports import Work
from .records import HORIZON_RECORD, RUN_RECORD, VERDICT_RECORD
from .render import render, render_status
from .report import Report, RunStatus
from .scope import Mode, Scope
from .settings import SETTINGS, SettingsError, is_keyvault_object_name, parse_names, unbound_certificates
from .telemetry import Trigger, invocation

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PROGRESS_AFTER_SECONDS = 1.0  # a run that ends sooner shows no progress at all

EXIT_IN_SYNC = 0
EXIT_FAILED = 1
EXIT_DRIFT = 2
EXIT_EXPIRING = 3
EXIT_PARTIAL = 4  # the time budget ran out with writes left; the next run continues
EXIT_USAGE = 64  # sysexits.h EX_USAGE: never confused with drift
_EXIT_BY_STATUS = {
    RunStatus.IN_SYNC: EXIT_IN_SYNC,
    RunStatus.EXPIRING: EXIT_EXPIRING,
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


LOCAL_SETTINGS = Path("local.settings.json")

# The command an installed package puts on PATH (pyproject.toml's [project.scripts]); from the
# app root, where the Functions worker imports this package as `shared`, it is `python -m shared`.
COMMAND = "trustsync"
MODULE_COMMAND = f"python -m {__package__ or 'shared'}"

_EXAMPLES = (
    ("plan", "what a sync would change, changing nothing"),
    ("status --certificates web", "per gateway: its CAs and its verdict on each leaf"),
    ("sync", "apply: add missing trust, take away what nothing needs"),
    ("plan --json | jq .status", "the report as JSON"),
)

_EXIT_CODES = """\
exit codes:
  0   in sync: every selected gateway holds and trusts what Key Vault needs
  1   failed: an error (the report says which), or a configuration error
  2   drift: something needed is missing or something unneeded remains
  3   expiring: in sync, but a leaf or CA expires within EXPIRY_WARNING_DAYS
  4   partial: RUN_TIME_BUDGET ran out with writes left; run it again to continue
  64  usage error
"""


def _epilog(prog: str) -> str:
    width = max(len(f"{prog} {example}") for example, _ in _EXAMPLES) + 2
    examples = "".join(f"  {f'{prog} {example}':<{width}}{what}\n" for example, what in _EXAMPLES)
    settings = "\n".join(
        f"  {setting.name:<20} {setting.description}"
        + (" (required)" if setting.required else f" (default {setting.default})" if setting.default else "")
        for setting in SETTINGS
    )
    return (
        f"examples:\n{examples}\n{_EXIT_CODES}\nsettings (environment, or local.settings.json's Values):\n{settings}\n"
    )


def local_settings(path: Path = LOCAL_SETTINGS) -> dict[str, str]:
    """The "Values" of a Functions local.settings.json, as strings; {} when there is none."""
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8-sig")).get("Values", {})
    except (OSError, ValueError, AttributeError) as error:
        raise SettingsError(f"{path} is not a local.settings.json with a Values object: {error}") from None
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: Values must be an object of app settings")
    return {str(name): str(value) for name, value in values.items() if value is not None}


def main(argv: Sequence[str] | None = None, prog: str = MODULE_COMMAND) -> int:
    parser = _Parser(
        prog=prog,
        description=(__doc__ or "").strip(),
        epilog=_epilog(prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        choices=("plan", "sync", "audit", "status"),
        help="plan: dry run; sync: apply; audit: as the timer; status: what each gateway trusts and accepts",
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
    with _cli_logging(args.verbose):
        return _command(args.command, args.certificates, as_json=args.json)


def _command(command: str, certificates: frozenset[str] | None, *, as_json: bool) -> int:
    try:
        app = TrustSync({**local_settings(), **os.environ})
        settings = app.settings()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return EXIT_FAILED
    unbound = unbound_certificates(settings, certificates or ())
    if unbound:
        print(f"--certificates: not in CERTIFICATE_NAMES: {', '.join(unbound)}", file=sys.stderr)
        return EXIT_USAGE
    progress = TerminalProgress() if not as_json and sys.stdout.isatty() and sys.stderr.isatty() else None
    if progress is not None:
        app.progress = progress
    try:
        report = asyncio.run(_run(app, command, certificates))
    except (OSError, ssl.SSLError) as error:  # before any call: the TLS roots or the network setup
        print(f"cannot reach Azure: {unreachable(error, app.environ)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if progress is not None:
            progress.stop()
    if as_json:
        answer = report.to_dict()
        if command == "status":
            answer["diagnosis"] = [found.to_dict() for found in diagnose(report)]
        print(json.dumps(answer, indent=2))
    else:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        color = width is not None and "NO_COLOR" not in os.environ
        print((render_status if command == "status" else render)(report, width=width, color=color))
    return _EXIT_BY_STATUS[report.status]


async def _run(app: TrustSync, command: str, names: frozenset[str] | None) -> Report:
    try:
        async with invocation(Trigger.CLI, None):
            if command == "audit":
                return await app.handle_audit()
            mode = Mode.FULL if command == "sync" else Mode.DRY_RUN  # status: a dry run, rendered per gateway
            return await app.run(app.settings(), Scope(certificates=names), mode)
    finally:
        await app.close()


class TerminalProgress:
    """The engine's `Progress` as bars on stderr (rich), shown once a run has taken `after` seconds;
    erased when the run ends, so the report that follows stands alone.

    Work is planned as it is discovered (a certificate's versions, then their secrets), so the
    count's total grows while the run goes: 8/8 can become 12/16. The count says so honestly; the
    bar only moves forward: it fills to done/(planned+1) at most until the run ends (the one held
    back stands for work not discovered yet), and never goes back when more is planned.
    """

    SCALE = 1000  # the bar's own units: a fraction, not the count

    def __init__(self, after: float = PROGRESS_AFTER_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._clock = clock
        self._show_at = clock() + after
        self._bars: Progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[planned]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[Work, TaskID] = {}
        self._counts: dict[Work, tuple[int, int]] = {}  # done, planned
        self._shown = False

    def planned(self, work: Work, count: int = 1) -> None:
        done, planned = self._counts.get(work, (0, 0))
        self._move(work, done, planned + count)

    def done(self, work: Work, count: int = 1) -> None:
        done, planned = self._counts.get(work, (0, 0))
        self._move(work, done + count, max(planned, done + count))

    def fraction(self, work: Work) -> float:
        """How full `work`'s bar is, 0 to 1."""
        task = self._tasks.get(work)
        return 0.0 if task is None else self._bars.tasks[task].completed / self.SCALE

    def stop(self) -> None:
        if self._shown:
            self._bars.stop()

    def _move(self, work: Work, done: int, planned: int) -> None:
        self._counts[work] = (done, planned)
        if work not in self._tasks:
            self._tasks[work] = self._bars.add_task(work.value, total=self.SCALE, done=0, planned=0)
        task = self._tasks[work]
        reach = int(self.SCALE * done / (planned + 1))
        completed = max(int(self._bars.tasks[task].completed), reach)
        self._bars.update(task, completed=completed, done=done, planned=planned)
        self._show_when_due()

    def _show_when_due(self) -> None:
        if not self._shown and self._clock() >= self._show_at:
            self._shown = True
            self._bars.start()


def unreachable(error: OSError | ssl.SSLError, environ: Mapping[str, str]) -> str:
    """One line on why the clients could not even be set up, and what to check."""
    bundle = environ.get("REQUESTS_CA_BUNDLE", "")
    if isinstance(error, FileNotFoundError | ssl.SSLError) and bundle and not Path(bundle).is_file():
        return (
            f"REQUESTS_CA_BUNDLE names {bundle}, which does not exist (a local emulator that has stopped takes its "
            "CA file with it: start it again, or unset REQUESTS_CA_BUNDLE)"
        )
    if isinstance(error, ssl.SSLError):
        return f"the TLS roots could not be loaded ({error.reason or error}); check REQUESTS_CA_BUNDLE"
    return f"{error.strerror or error}{f': {error.filename}' if error.filename else ''}"


@contextlib.contextmanager
def _cli_logging(verbose: bool) -> Iterator[None]:
    """The report says everything once; -v adds the app's own calls and actions as they happen.

    The loggers are the process's: put back as found on the way out (tests call `main` in-process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(lambda record: record.levelno < logging.WARNING)  # warnings and errors are in the report
    summaries = (RUN_RECORD, VERDICT_RECORD, HORIZON_RECORD)  # for Application Insights: the report says it all
    handler.addFilter(lambda record: not record.getMessage().startswith(summaries))
    app_log, sdk_log = logging.getLogger("trustsync"), logging.getLogger("azure")
    saved = [(log, log.level, log.propagate) for log in (app_log, sdk_log)]
    app_log.addHandler(handler)
    app_log.propagate = False
    app_log.setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)
    # The SDK's own credential chatter (each credential tried, and why it failed) only with -v: the
    # report's error already says in one line that no credential could be had.
    # A handler that drops them, not only a level: an azure.* logger with a level of its own (the
    # function app sets some) would otherwise reach Python's last-resort handler on stderr.
    sdk_handler: logging.Handler = logging.StreamHandler(sys.stderr) if verbose else logging.NullHandler()
    sdk_log.addHandler(sdk_handler)
    sdk_log.setLevel(logging.WARNING if verbose else logging.CRITICAL + 1)
    sdk_log.propagate = False
    try:
        yield
    finally:
        app_log.removeHandler(handler)
        sdk_log.removeHandler(sdk_handler)
        for log, level, propagate in saved:
            log.setLevel(level)
            log.propagate = propagate


def cli() -> int:
    """The installed `trustsync` command (its console script exits with what this returns)."""
    return main(prog=COMMAND)


if __name__ == "__main__":
    sys.exit(main())
