"""Loopback HTTP(S) servers and the dispatch loop shared by every emulated service.

Each request is resolved to a `Call` (operation name + handler), recorded, given the configured
latency and any injected fault, then answered. Servers are ThreadingHTTPServers speaking HTTP/1.1
keep-alive, so every response carries Content-Length (except 204, which must not).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from .faults import Fault, Faults
from .operations import WRITE_METHODS
from .records import CallInfo, Recorder
from .wire import DropConnection, HttpError, Request, Response

LOOPBACK = "127.0.0.1"
_log = logging.getLogger("emulator")


@dataclass(frozen=True)
class Call:
    """A resolved request: what it is called and how to answer it."""

    operation: str
    handler: Callable[[], Response]
    fault_response: Callable[[int, float | None], Response]  # the service's error envelope for a status
    client_id: str | None = None
    audience: str | None = None


Resolver = Callable[[Request], Call]


class Dispatcher:
    def __init__(self, resolve: Resolver, recorder: Recorder, faults: Faults, latency: Callable[[], float]) -> None:
        self._resolve = resolve
        self._recorder = recorder
        self._faults = faults
        self._latency = latency

    def serve(self, request: Request) -> Response:
        """Answers ``request``; raises DropConnection to close the connection unanswered."""
        call = self._resolve(request)
        with self._recorder.track(request, call.operation) as info:
            info.client_id, info.audience = call.client_id, call.audience
            faults = self._faults.take_all(call.operation, write=request.method in WRITE_METHODS)
            if (latency := self._latency()) > 0:
                time.sleep(latency)
            if failing := _fire([f for f in faults if not f.after_write]):
                return _fail(call, failing, info)
            response = _run(call)
            if failing := _fire([f for f in faults if f.after_write]):
                return _fail(call, failing, info)
            info.status = response.status
            info.response_body = response.body
            return response


def _fire(faults: list[Fault]) -> Fault | None:
    """Runs the faults' hooks and delays; returns the first that fails the request."""
    for fault in faults:
        if fault.hook is not None:
            try:
                fault.hook()
            except Exception:
                _log.exception("fault hook failed for %s", fault.operation)
        time.sleep(fault.delay)
    return next((fault for fault in faults if fault.fails), None)


def _run(call: Call) -> Response:
    try:
        return call.handler()
    except HttpError as error:
        return error.response
    except Exception:
        _log.exception("emulator bug while serving %s", call.operation)
        return call.fault_response(500, None)


def _fail(call: Call, fault: Fault, info: CallInfo) -> Response:
    info.faulted = True
    if fault.drop_connection or fault.status is None:
        raise DropConnection
    response = call.fault_response(fault.status, fault.retry_after)
    info.status = response.status
    info.response_body = response.body
    return response


_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 100


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive. The request head is parsed here rather than by ``http.server``,
    which hands the headers to the ``email`` package: that took a third of the emulator's CPU per
    request, and with the benchmark's calls arriving a dozen at a time, every one of them waited
    for the others' parsing. Each response goes out in one write."""

    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection's thread ends after this
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on small writes
    raw_requestline: bytes  # read by http.server before parse_request
    fields: dict[str, str]  # the request's headers, names in lower case (repeated ones joined by ", ")

    def parse_request(self) -> bool:
        self.command = ""  # until the request line is understood (send_error reads it)
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request line {self.requestline!r}")
            return False
        self.command, self.path, self.request_version = words
        fields: dict[str, str] = {}
        while (line := self.rfile.readline(_MAX_HEADER_LINE + 1)) not in (b"\r\n", b"\n", b""):
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if len(line) > _MAX_HEADER_LINE or len(fields) >= _MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            if not colon or not name.strip():
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad header line {line!r}")
                return False
            key, value = name.strip().lower(), value.strip()
            fields[key] = f"{fields[key]}, {value}" if key in fields else value
        self.fields = fields
        connection = fields.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if fields.get("expect", "").lower() == "100-continue":
            self.send_response_only(HTTPStatus.CONTINUE)
            self.end_headers()
        return True

    def version_string(self) -> str:
        return "apim-trust-sync-emulator"

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        server = cast(_Server, self.server)
        request = Request(
            method=self.command,
            target=self.path,
            headers=self.fields,
            body=self._read_body(),
        )
        try:
            response = server.dispatcher.serve(request)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    def _read_body(self) -> bytes:
        if "chunked" in self.fields.get("transfer-encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.fields.get("content-length") or 0))

    def _send(self, response: Response) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        head = [
            f"{self.protocol_version} {response.status} {reason}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        if response.status != 204:
            head.append(f"Content-Length: {len(response.body)}")
        if any(name.lower() == "connection" and value.lower() == "close" for name, value in response.headers.items()):
            self.close_connection = True
        body = response.body if self.command != "HEAD" and response.status != 204 else b""
        try:
            self.wfile.write("\r\n".join([*head, "", ""]).encode("latin-1") + body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes open keep-alive connections itself
    request_queue_size = 128  # the product opens up to MAX_CONCURRENCY (64) connections at once

    def __init__(self, dispatcher: Dispatcher, tls: ssl.SSLContext | None) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.dispatcher = dispatcher
        self._tls = tls
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection = cast(socket.socket, request)
        if self._tls is not None:
            # Handshake in the connection's own thread so that a slow client never blocks accept().
            connection.settimeout(30)
            try:
                connection = self._tls.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError):
                connection.close()
                return
        with self._lock:
            self._connections.add(connection)
        try:
            super().finish_request(connection, client_address)
        finally:
            with self._lock:
                self._connections.discard(connection)
            if connection is not request:
                connection.close()

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class LoopbackServer:
    """One listening socket on 127.0.0.1 (ephemeral port), served from a background thread."""

    def __init__(self, dispatcher: Dispatcher, tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server(dispatcher, tls)
        self._thread: threading.Thread | None = None
        self.scheme = "https" if tls is not None else "http"

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        if self._thread is None:
            # A short poll interval keeps stop() quick; the loop is otherwise idle in select().
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.02,), name=f"emulator-{self.port}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_connections()
        self._server.server_close()
