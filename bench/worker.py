"""The product side of the benchmark: one Function App worker process, driven over stdin/stdout.

It imports ``function_app`` and calls its functions as the Functions host does (the user function
of each indexed binding). Running apart from the emulator gives the product a core and a GIL of
its own, and makes its peak RSS the product's alone. One JSON object per line each way:

    → {"cmd": "event", "event": {...Event Grid event...}}   ← {"wall": s, "cpu": s, "peak_rss_mb": ..., ...}
    → {"cmd": "audit"}                                       ← the same, plus "audit_status"
    → {"cmd": "resync"}                                      ← the same, plus the answer's "http_status", "status", "left"
    → {"cmd": "exit"}
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _usage_since(before: resource.struct_rusage) -> dict[str, float]:
    """User and system CPU, and context switches (voluntary: waits; involuntary: preemptions)."""
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "user_s": after.ru_utime - before.ru_utime,
        "system_s": after.ru_stime - before.ru_stime,
        "voluntary_switches": after.ru_nvcsw - before.ru_nvcsw,
        "involuntary_switches": after.ru_nivcsw - before.ru_nivcsw,
    }


class _AuditStatus(logging.Handler):
    """Keeps the status of the audit's one log record (``TRUSTSYNC_AUDIT status=...``)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.status: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Formatting every record (an audit of C certificates logs one per gateway and certificate)
        # would charge the benchmark's own handler to the product's CPU: only the audit's is read.
        if not (record.args and isinstance(record.args, tuple) and record.args[0] == "TRUSTSYNC_AUDIT"):
            return
        message = record.getMessage()
        if message.startswith("TRUSTSYNC_AUDIT status="):
            self.status = message.split()[1].removeprefix("status=")


def main(commands: TextIO, answers: TextIO) -> None:
    started = time.perf_counter()
    import function_app  # the import is what is timed

    imported = time.perf_counter() - started
    from local.host import event_grid_event, post, timer
    from local.host import functions as host_functions

    functions: dict[str, Callable[..., Any]] = host_functions()
    audit_status = _AuditStatus()
    trustsync = logging.getLogger("trustsync")
    trustsync.setLevel(logging.INFO)
    trustsync.addHandler(audit_status)
    trustsync.propagate = False  # per-action INFO lines would only cost time on stderr

    def answer(body: dict[str, Any]) -> None:
        answers.write(json.dumps(body) + "\n")
        answers.flush()

    answer({"ready": True, "import_s": imported, "rss_mb": _rss_mb()})
    for line in commands:
        command = json.loads(line)
        if command["cmd"] == "exit":
            return
        if command["cmd"] == "setenv":  # e.g. another MAX_CONCURRENCY: the app reads its settings per invocation
            os.environ.update(command["values"])
            answer({"ok": True})
            continue
        function: Callable[[Any], object]
        argument: Any
        if command["cmd"] == "event":
            event = command["event"]
            function = functions["on_keyvault_event"]
            argument = event_grid_event(event)
        elif command["cmd"] == "audit":
            function, argument = functions["drift_audit"], timer()
        elif command["cmd"] == "resync":
            function, argument = functions["resync"], post("resync", b"")
        else:
            answer({"error": f"unknown command {command['cmd']!r}"})
            continue
        if command.get("forget_versions"):  # a worker new to the vault's versions: every secret is read
            function_app.trust_sync.known.clear()
        audit_status.status = None
        rss_before = _rss_mb()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        # The emulator records its requests by time.monotonic(), the system's clock: the timeline's origin.
        started_at = time.monotonic()
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        error = None
        resynced: dict[str, Any] = {}
        try:
            result = function(argument)
            if command["cmd"] == "resync":
                body = json.loads(result.get_body())
                resynced = {"http_status": result.status_code, "status": body.get("status"), "left": body.get("left")}
                if result.status_code != 200:
                    error = f"HTTP {result.status_code}: {body.get('errors', body)!s:.300}"
        except Exception as failure:  # a retryable failure is reported, not fatal to the benchmark
            error = f"{type(failure).__name__}: {failure}"
        answer(
            {
                "wall": time.perf_counter() - wall_start,
                "started_at": started_at,
                "cpu": time.process_time() - cpu_start,
                **_usage_since(usage),
                "rss_before_mb": rss_before,
                "peak_rss_mb": _peak_rss_mb(),
                "audit_status": audit_status.status,
                "error": error,
                **resynced,
            }
        )


def _profiled(commands: TextIO, answers: TextIO, path: str) -> None:
    """``BENCH_PROFILE=file``: cProfile every thread (the pool's too) and dump the merged stats there."""
    import cProfile
    import pstats
    import threading

    profiles: list[cProfile.Profile] = []

    def start(*_: object) -> None:
        profile = cProfile.Profile(time.thread_time)  # CPU time: waiting for the GIL is not cost
        profiles.append(profile)
        profile.enable()  # replaces this hook in the new thread

    threading.setprofile(start)
    main_profile = cProfile.Profile(time.thread_time)
    main_profile.enable()
    try:
        main(commands, answers)
    finally:
        main_profile.disable()
        for profile in profiles:
            profile.disable()
        pstats.Stats(main_profile, *profiles).dump_stats(path)


if __name__ == "__main__":
    protocol = sys.stdout
    sys.stdout = sys.stderr  # anything the product prints must not corrupt the protocol
    if os.environ.get("BENCH_PROFILE"):
        _profiled(sys.stdin, protocol, os.environ["BENCH_PROFILE"])
    else:
        main(sys.stdin, protocol)
