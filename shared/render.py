"""The CLI's human output, with rich: tables that fit the terminal, colour where it matters.

On a terminal the output is as wide as the terminal: a table that does not fit becomes one block
per row (its long cells, certificate ids and reasons, each on lines of their own), so that headers
never split and an id is never cut inside its thumbprint. Colour marks rejected and drift (red /
yellow) and expiring (yellow). To a file or a pipe: the same words, no colour, lines unwrapped, so
that grep and diff see one row per line.

The summary line comes last and counts only what the lines above show.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .diagnosis import OTHER_CAUSES, LeafDiagnosis, Next, diagnose
from .report import Report, RunStatus

UNWRAPPED = 100_000  # "no width": a file or a pipe gets each row on one line

_STATUS_STYLE = {
    RunStatus.IN_SYNC: "green",
    RunStatus.EXPIRING: "yellow",
    RunStatus.DRIFT: "bold yellow",
    RunStatus.PARTIAL: "yellow",
    RunStatus.FAILED: "bold red",
}
_STATE_STYLE = {"accepted": "green", "expiring": "bold yellow", "rejected": "bold red"}
_OUTCOME_STYLE = {"applied": "green", "planned": "yellow", "failed": "bold red", "skipped": "red", "deferred": "yellow"}


@dataclass(frozen=True)
class Column:
    header: str
    long: bool = False  # an id or a sentence: on a line of its own when the table does not fit


class Output:
    """Renders to text for a terminal `width` columns wide (None: a file or a pipe)."""

    def __init__(self, width: int | None, *, color: bool) -> None:
        self.width = width
        self._buffer = io.StringIO()
        self._console = Console(
            file=self._buffer,
            width=width or UNWRAPPED,
            force_terminal=color,
            no_color=not color,
            color_system="standard" if color else None,
            highlight=False,
            emoji=False,
            soft_wrap=width is None,
        )

    def line(self, text: RenderableType = "", *, indent: int = 0) -> None:
        renderable = text if indent == 0 else Padding(text, (0, 0, 0, indent))
        self._console.print(renderable)

    def table(self, columns: Sequence[Column], rows: Sequence[Sequence[str | Text]], *, indent: int = 0) -> None:
        """A table if it fits the width, else one block per row: the short cells on a line, each long
        cell on its own lines below, indented."""
        table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, pad_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column.header, no_wrap=True)
        for row in rows:
            table.add_row(*row)
        natural = self._console.measure(table, options=self._console.options.update_width(UNWRAPPED)).maximum
        if self.width is None or natural + indent <= self.width:
            self.line(table, indent=indent)
            return
        # A column of ids goes under its rows indented when every id of it fits, else all from the first
        # column: never cut, and aligned either way.
        fits = {
            index: all(len(str(row[index])) + indent + 2 <= self.width for row in rows)
            for index, column in enumerate(columns)
            if column.long
        }
        for row in rows:
            short = Text("  ").join(
                cell if isinstance(cell, Text) else Text(cell)
                for column, cell in zip(columns, row, strict=True)
                if not column.long and str(cell)
            )
            self.line(short, indent=indent)
            for index, cell in enumerate(row):
                if index in fits and str(cell):
                    self.long(cell if isinstance(cell, Text) else Text(cell), indent=indent + 2, fits=fits[index])

    def long(self, text: Text, *, indent: int, fits: bool) -> None:
        """A long cell under its row. A sentence wraps at words; an id (no space in it) is never cut:
        when it does not fit indented, it starts in the first column, and past the width the
        terminal wraps it, not us (so that a copy of it stays whole)."""
        if fits or " " in text.plain:
            self.line(text, indent=indent)
        else:
            self._console.print(text, soft_wrap=True)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self._buffer.getvalue().rstrip("\n").split("\n"))


def _status(report: Report) -> Text:
    return Text(report.status.value, style=_STATUS_STYLE[report.status])


def _findings(out: Output, report: Report) -> None:
    for prefix, messages, style in (
        ("conflict", report.conflicts, "yellow"),
        ("warning", report.warnings, "yellow"),
        ("error", report.errors, "red"),
    ):
        for message in messages:
            out.line(Text.assemble((f"{prefix}:", style), f" {message}"))


def render(report: Report, *, width: int | None = None, color: bool = False) -> str:
    """`plan`, `sync`, `audit`: the actions, what stands in the way, a one-line summary."""
    out = Output(width, color=color)
    out.line(Text.assemble(f"scope: {report.scope}   mode: {report.mode.value}   status: ", _status(report)))
    columns = (
        Column("ACTION"),
        Column("GATEWAY"),
        Column("TRUSTED"),
        Column("STATUS"),
        Column("CERTIFICATE ID", long=True),
        Column("REASON", long=True),
    )
    rows = [
        (
            outcome.action.kind.value,
            outcome.action.gateway or "",
            "" if outcome.action.trusted is None else str(outcome.action.trusted).lower(),
            Text(outcome.status.value, style=_OUTCOME_STYLE.get(outcome.status.value, "")),
            outcome.action.certificate_id,
            outcome.error or outcome.action.reason,
        )
        for outcome in report.outcomes
    ]
    if rows:
        out.table(columns, rows)
    else:
        out.line(_no_actions(report))
    _findings(out, report)
    if report.horizon is not None:
        for message in report.horizon.expiring():
            out.line(Text.assemble(("expiring:", "yellow"), f" {message}"))
    counts = ", ".join(f"{count} {what}" for what, count in report.summary().items()) or "no actions"
    out.line(f"summary: {counts}; {len(report.conflicts)} conflict(s), {len(report.errors)} error(s)")
    return out.text()


def _no_actions(report: Report) -> str:
    """The line in place of an empty action table: never "nothing to change" when the status is not in sync."""
    if report.in_sync:
        return "nothing to change: every gateway trusts what Key Vault holds"
    if report.status is RunStatus.FAILED:
        return "no change planned: the errors below stopped the run from knowing what to change"
    rejected = sum(not verdict.accepted for verdict in report.verdicts)
    blockers = []
    if report.conflicts:
        blockers.append(f"{len(report.conflicts)} conflict(s) below")
    if rejected:
        blockers.append(f"{rejected} rejected verdict(s): `status` says why and what to do")
    return "no change this app can make, yet not in sync: " + ("; ".join(blockers) or "see below")


def render_status(report: Report, *, width: int | None = None, color: bool = False) -> str:
    """`status`: for each gateway, its certificate authorities, then its verdict on each needed leaf
    with the reason, expiry, the host names it covers and the next step."""
    out = Output(width, color=color)
    diagnoses = diagnose(report)
    out.line(Text.assemble(f"scope: {report.scope}   status: ", _status(report)))
    by_gateway: dict[str, list[LeafDiagnosis]] = {}
    for found in diagnoses:
        by_gateway.setdefault(found.gateway, []).append(found)
    now = report.horizon.now if report.horizon is not None else None
    for gateway in report.gateways:
        out.line()
        out.line(Text.assemble(("gateway ", "bold"), (gateway.gateway, "bold"), " (self-hosted)"))
        columns = (
            Column("SUBJECT"),
            Column("TRUSTED"),
            Column("OWNER"),
            Column("EXPIRES"),
            Column("CERTIFICATE ID", long=True),
        )
        rows = [
            (
                entry.subject or "(not in APIM)",
                str(entry.trusted).lower(),
                "app" if entry.ours else "foreign",
                _date(entry.expires, now),
                entry.certificate_id,
            )
            for entry in gateway.entries
        ]
        if rows:
            out.table(columns, rows, indent=2)
        else:
            out.line("(no certificate authorities)", indent=2)
        for found in by_gateway.get(gateway.gateway, []):
            _leaf(out, found, now)
    for line in _service_lines(report):
        out.line(line)
    _findings(out, report)
    if any(found.accepted for found in diagnoses):
        out.line("if a backend is still refused with an accepted verdict, check:")
        for cause in OTHER_CAUSES:
            out.line(f"- {cause}", indent=2)
    out.line(_status_summary(report, diagnoses))
    return out.text()


def _service_lines(report: Report) -> list[str]:
    """The service's kind, what the app does on each target, the managed gateway's verdicts and CA store."""
    if not report.tier:
        return []
    service = report.service_dict()
    lines = ["", f"service tier {service['tier']} ({service['kind']})"]
    for target in report.targets:
        judged = "" if target.judged else " (not judged)"
        lines.append(f"  {target.kind.value} {target.name}: {target.manages}{judged}")
    managed = [*(v for v in report.verdicts if v.gateway == "managed"), *report.unjudged]
    for verdict in managed:
        why = "" if verdict.accepted else f": {verdict.verdict.reason}"
        state = "accepted" if verdict.accepted else "REJECTED"
        needed = verdict.needed
        lines.append(f"  managed {state} {needed.certificate_name} ({needed.version}) {needed.leaf.subject}{why}")
    if report.ca_store is not None:
        detail = f": {report.ca_store.detail}" if report.ca_store.detail else ""
        lines.append(f"  CA store {report.ca_store.status.value}{detail}")
    for backend in report.backends:
        detail = f": {backend.detail}" if backend.detail else ""
        lines.append(f"  backend {backend.backend} ({backend.certificate}) {backend.status}{detail}")
    return lines


def _leaf(out: Output, found: LeafDiagnosis, now: datetime | None) -> None:
    state = found.state.upper() if found.state != "accepted" else found.state
    out.line(
        Text.assemble((state, _STATE_STYLE[found.state]), f" {found.certificate} ({found.version}) {found.subject}"),
        indent=2,
    )
    if found.reason:
        out.line(f"why: {found.reason}", indent=4)
    expiry = f"leaf expires {_date(found.leaf_expires, now)}"
    if found.earliest_ca_expires is not None:
        expiry += f"; earliest CA {found.earliest_ca} expires {_date(found.earliest_ca_expires, now)}"
    out.line(Text(expiry, style="yellow" if found.expiring else ""), indent=4)
    out.line(f"hosts: {', '.join(found.san_names) or '(no SAN: no host name can match)'}", indent=4)
    if found.next_step is not Next.NONE:
        out.line(Text.assemble(("next:", "bold"), f" {found.advice}"), indent=4)


def _date(moment: datetime | None, now: datetime | None) -> str:
    if moment is None:
        return ""
    if now is None:
        return f"{moment:%Y-%m-%d}"
    days = (moment - now).days
    return f"{moment:%Y-%m-%d} (expired)" if moment <= now else f"{moment:%Y-%m-%d} ({days}d)"


def _status_summary(report: Report, diagnoses: Sequence[LeafDiagnosis]) -> str:
    """Counts of what the table shows; never "0 rejected" beside a rejected row, nor silent on errors."""
    rejected = sum(not found.accepted for found in diagnoses)
    expiring = sum(found.state == "expiring" for found in diagnoses)
    accepted = len(diagnoses) - rejected
    counts = f"{accepted} accepted{f' ({expiring} expiring)' if expiring else ''}, {rejected} rejected verdict(s)"
    changes = sum(outcome.status.value != "applied" for outcome in report.outcomes)
    extra = "".join(
        f"; {count} {what}(s)"
        for what, count in (("conflict", len(report.conflicts)), ("error", len(report.errors)))
        if count
    )
    return f"summary: {counts}; {changes} change(s) to make{extra}"
