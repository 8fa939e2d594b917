"""The operator CLI's progress: on a terminal, a run that lasts over a second shows Key Vault reads
and writes done out of planned on stderr; with --json or without a terminal, nothing extra. The CLI
runs as an operator runs it (``python -m shared``, its own process) against the emulator, its stdout
and stderr each on a pseudo-terminal of their own or on pipes.

The emulator answers every request after a fixed delay here, so that the run outlasts the second
before progress shows: the delay bounds the run's duration from below, nothing is timed or asserted
about time.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator import Emulator
from emulator.pki import Hierarchy, make_certificate, pfx_secret
from shared.chain import Certificate
from shared.plan import certificate_id_for
from tests.support.harness import import_version

ROOT = Path(__file__).resolve().parent.parent
LATENCY = 0.25  # seconds per Key Vault / ARM request: a sync then makes ~10 rounds, well over a second
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str


def _terminal(columns: int = 120, rows: int = 40) -> tuple[int, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def run_cli(*argv: str, on_terminal: bool, columns: int = 120) -> Ran:
    """``python -m shared ARGV`` with stdout and stderr on pseudo-terminals `columns` wide, or on pipes."""
    command = [sys.executable, "-m", "shared", *argv]
    environment = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
    environment.pop("NO_COLOR", None)
    if not on_terminal:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120, check=False
        )
        return Ran(done.returncode, done.stdout, done.stderr)
    (out_master, out_slave), (err_master, err_slave) = _terminal(columns), _terminal(columns)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=out_slave, stderr=err_slave
    )
    os.close(out_slave)
    os.close(err_slave)
    captured = {out_master: bytearray(), err_master: bytearray()}
    open_fds = set(captured)
    while open_fds:  # read both until the child has closed them (EIO on Linux), so neither fills up
        ready, _, _ = select.select(list(open_fds), [], [], 60)
        assert ready, "the CLI wrote nothing for a minute"
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if chunk:
                captured[fd].extend(chunk)
            else:
                open_fds.discard(fd)
                os.close(fd)
    exit_code = process.wait(timeout=60)
    return Ran(exit_code, captured[out_master].decode(), captured[err_master].decode())


def lines(text: str) -> list[str]:
    plain = ANSI.sub("", text).replace("\r\n", "\n")
    return [line for line in plain.split("\n") if line.strip()]


@pytest.fixture
def slow(configured: Emulator) -> Emulator:
    import_version(configured, "orders", Hierarchy(intermediates=1))
    configured.latency = LATENCY
    return configured


def test_on_a_terminal_a_long_run_shows_progress_on_stderr_and_the_table_ends_with_the_summary(slow: Emulator) -> None:
    ran = run_cli("sync", on_terminal=True)

    assert ran.exit_code == 0, ran
    shown = ANSI.sub("", ran.stderr)
    assert re.search(r"Key Vault reads\s.*\b\d+/\d+", shown), ran.stderr
    assert re.search(r"writes\s.*\b6/6", shown), ran.stderr  # 2 uploads + 2 entries on each of 2 gateways
    table = lines(ran.stdout)
    assert table[0].startswith("scope: full   mode: full   status: in-sync")
    assert table[-1] == "summary: 4 set-gateway-ca applied, 2 upload-certificate applied; 0 conflict(s), 0 error(s)"
    assert "Key Vault reads" not in ran.stdout


def test_without_a_terminal_or_with_json_the_same_run_shows_nothing_extra(slow: Emulator) -> None:
    planned = run_cli("plan", on_terminal=False)
    as_json = run_cli("plan", "--json", on_terminal=True)

    assert planned.exit_code == as_json.exit_code == 2  # drift: the chain is not trusted yet
    assert planned.stderr == ""
    assert (
        lines(planned.stdout)[-1]
        == "summary: 4 set-gateway-ca planned, 2 upload-certificate planned; 0 conflict(s), 0 error(s)"
    )
    assert ANSI.sub("", as_json.stderr).strip() == ""
    assert '"dryRun": true' in as_json.stdout


def test_at_80_columns_tables_fit_ids_stay_whole_and_rejected_is_red(configured: Emulator) -> None:
    emu = configured
    backend = import_version(emu, "orders", Hierarchy(intermediates=1))
    root = make_certificate("Offline Root", is_ca=True)
    issuing = make_certificate("Issuing CA", issuer=root, is_ca=True)
    leaf = make_certificate("payments.example", issuer=issuing, dns_names=["payments.example"])
    emu.vault.import_certificate("payments", pfx_secret(leaf.key, leaf.certificate, [issuing.certificate]))
    ids = {*backend.authority_ids, certificate_id_for(Certificate.from_x509(issuing.certificate))}

    planned = run_cli("plan", on_terminal=True, columns=80)
    assert run_cli("sync", on_terminal=False).exit_code == 2  # payments stays rejected: no root
    status = run_cli("status", on_terminal=True, columns=80)
    piped = run_cli("status", on_terminal=False)

    for ran in (planned, status):
        shown = lines(ran.stdout)
        assert all(len(line) <= 80 for line in shown), [line for line in shown if len(line) > 80]
        assert {line.strip() for line in shown} >= ids  # each id whole, on a line of its own
        assert not any(line.rstrip().endswith(("CERTIFICATE", "ID")) for line in shown)  # no header split
    assert re.search(r"\x1b\[[0-9;]*31mREJECTED\x1b\[0m payments", status.stdout)  # red
    assert re.search(r"status: \x1b\[[0-9;]*33mdrift", planned.stdout)  # yellow
    assert "\x1b[" not in piped.stdout  # a pipe gets the words only...
    assert any(len(line) > 80 for line in piped.stdout.splitlines())  # ...one row per line, unwrapped
    assert lines(status.stdout)[-1] == lines(piped.stdout)[-1]  # the same summary either way
