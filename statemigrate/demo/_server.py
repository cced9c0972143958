"""The demo's cache server: HTTP over a reference cache, handing itself over on request.

Endpoints (HTTP/1.1, keep-alive)::

    GET    /kv/<key>             200 value | 404
    PUT    /kv/<key>[?ttl=S]     200 once applied (ttl: release 3 only)
    DELETE /kv/<key>             200 {"deleted": bool}
    POST   /batch                200 {"stored": n}; body: JSON object key -> value
    GET    /stats                200 {"entries", "generation", "release", "pid"}
    GET    /admin/export         200 {"release", "entries"}: the whole state
    POST   /admin/upgrade?to=R[&allow_lossy=1]
                                 hand over to release R; 200 with the report, or
                                 409 with the reason (this process goes on serving)

A request is acknowledged only after it was applied. During a handoff every cache
request waits (``pause``); reads wait too, because between COMMIT and the moment this
process learns of it its copy may already be older than what the successor
acknowledged. When the handoff succeeds this process stops accepting first, then
passes the waiting requests, and every later one arriving on a connection it already
has, to the successor through the shared listening address, and relays the answer
with ``Connection: close``: the client sees one ordinary answer and sends its next
request on a new connection, which the successor accepts. When the handoff fails the
waiting requests go on against the state that never left.

Run as ``python -m statemigrate.demo._server --release 1``. It binds 127.0.0.1 (port
0 unless ``--port``) on a cold start, or takes the listener from the process that
started it. It writes one JSON event per line on stdout (``ready``, ``failed``,
``exit``); every generation shares that stream.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from statemigrate._errors import HandoffError, StateMigrateError
from statemigrate._runtime._report import SnapshotReport
from statemigrate._runtime._service import Service
from statemigrate.handoff import (
    Drainer,
    Spawn,
    choose_targets,
    hand_over,
    receive_handoff,
    take_over,
)
from statemigrate.integrations._forward import forward, forwarding_address
from statemigrate.reference import KVCacheV1, KVCacheV3, build_registry

__all__ = ["CacheServer", "main"]

RELEASES = (1, 3)
"""The releases the demo runs: cache versions 1 and 3 of the reference component."""

_MAX_BODY = 64 << 20


def emit(**event: object) -> None:
    """Write one JSON event line; one write(2), so generations sharing a pipe never mix."""
    try:
        os.write(1, json.dumps(event).encode() + b"\n")
    except OSError:
        pass  # nobody listens any more: the events are informative only


class _Moved(Exception):
    """This process no longer owns the state."""


class CacheServer:
    """One generation of the demo service; a thread per connection."""

    def __init__(
        self, listener: socket.socket, *, release: int, generation: int, service: Service
    ) -> None:
        self.listener = listener
        self.release = release
        self.generation = generation
        self.service = service
        self.cache: KVCacheV1 | KVCacheV3 = service.components[0].obj  # type: ignore[assignment]
        self.drainer = Drainer()
        self.handed_over = threading.Event()
        # SIGTERM's handler only appends here: setting an Event from a handler can
        # deadlock with the main thread waiting on that same Event.
        self.stop_signals: list[int] = []
        # Held for the whole of a handoff: SIGTERM waits for it to end (see main).
        self.upgrading = threading.Lock()
        self._accepting = threading.Event()
        self._gate = threading.Condition()
        self._paused = False
        self._moved = False
        self._paused_at = 0.0
        self.pause_seconds = 0.0
        self._acceptor: threading.Thread | None = None

    # -- serving -----------------------------------------------------------------------

    def start(self) -> None:
        """Accept connections in a background thread."""
        # The listener's blocking flag is shared with the other generation; a timeout
        # makes "the other process took that connection" a timeout, never a hang.
        self.listener.settimeout(0.05)
        self._accepting.set()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while self._accepting.is_set():
            try:
                conn, address = self.listener.accept()
            except OSError:  # a timeout, or the socket closed at exit
                continue
            threading.Thread(target=self._serve, args=(conn, address), daemon=True).start()

    def _serve(self, conn: socket.socket, address: Any) -> None:
        try:
            with conn, self.drainer.track(conn):
                conn.settimeout(30.0)
                # Headers and body leave in two writes: without this, Nagle's algorithm
                # and the client's delayed ACK add 40 ms to every response.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _Handler(conn, address, self)  # type: ignore[arg-type]  # duck-typed server
        except OSError:
            pass  # the client went away, or draining cut the connection

    # -- the state, behind the gate ----------------------------------------------------

    def _enter(self) -> None:
        """Wait out a pause; raise _Moved once the state belongs to the successor."""
        self._gate.wait_for(lambda: not self._paused or self._moved)
        if self._moved:
            raise _Moved

    def get(self, key: str) -> str | None:
        with self._gate:
            self._enter()
            return self.cache.get(key)

    def put(self, items: dict[str, str], *, ttl: float | None = None) -> None:
        with self._gate:
            self._enter()
            for key, value in items.items():
                if isinstance(self.cache, KVCacheV3):
                    self.cache.set(key, value, ttl=ttl)
                else:
                    self.cache.set(key, value)

    def delete(self, key: str) -> bool:
        with self._gate:
            self._enter()
            return self.cache.delete(key)

    def stats(self) -> dict[str, object]:
        with self._gate:
            self._enter()
            return {
                "entries": len(self.cache),
                "generation": self.generation,
                "release": self.release,
                "pid": os.getpid(),
            }

    def export_entries(self) -> dict[str, object]:
        with self._gate:
            self._enter()
            if isinstance(self.cache, KVCacheV3):
                entries: dict[str, Any] = dict(self.cache.export_state()["entries"])
            else:
                entries = dict(self.cache.entries)
            return {"release": self.release, "generation": self.generation, "entries": entries}

    # -- handoff -----------------------------------------------------------------------

    def pause(self) -> None:
        with self._gate:
            self._paused = True
            self._paused_at = time.perf_counter()

    def resume(self) -> None:
        with self._gate:
            self._paused = False
            self._gate.notify_all()

    def stop_accepting(self) -> None:
        # Accepting stops before the held requests are let go: each is forwarded to the
        # listening address, and this process must not be the one to accept it.
        self._accepting.clear()
        if self._acceptor is not None:
            self._acceptor.join(timeout=10.0)
        with self._gate:
            self._moved = True
            self.pause_seconds = time.perf_counter() - self._paused_at
            self._gate.notify_all()

    def upgrade(self, release: int, *, allow_lossy: bool) -> tuple[int, dict[str, object]]:
        """Hand over to ``release``; return an HTTP status and the report as JSON data."""
        with self.upgrading:
            if self.handed_over.is_set():
                return 409, {"ok": False, "stage": "start", "reason": "already handed over"}
            return self._upgrade(release, allow_lossy=allow_lossy)

    def _upgrade(self, release: int, *, allow_lossy: bool) -> tuple[int, dict[str, object]]:
        argv = [sys.executable, "-m", "statemigrate.demo._server", "--release", str(release)]
        argv += ["--generation", str(self.generation + 1)]
        snapshots: list[SnapshotReport] = []
        try:
            report = hand_over(
                self.service,
                Spawn(argv),
                listeners={"http": self.listener},
                control=self,
                allow_lossy=allow_lossy,
                on_snapshot=snapshots.append,
            )
        except HandoffError as exc:
            failed = exc.report
            return 409, {
                "ok": False,
                "stage": exc.stage,
                "reason": exc.detail,
                "timings": dict(failed.timings) if failed else {},
            }
        self.handed_over.set()
        # A full snapshot in the pause reports its export. With pre-copy the pieces ran
        # the same plan, as record steps: name its steps from the versions chosen.
        sections = snapshots[0].sections if snapshots else ()
        if snapshots:
            steps = [step for section in sections for step in section.steps]
            versions = {s.component: s.version for s in sections}
        else:
            versions = choose_targets(self.service, report.readable, allow_lossy=allow_lossy)
            steps = [
                str(step)
                for entry in self.service.components
                for step in entry.registry.plan(
                    entry.component,
                    entry.spec.version,
                    versions[entry.component],
                    allow_lossy=allow_lossy,
                ).steps
            ]
        return 200, {
            "ok": True,
            "from": self.release,
            "to": release,
            "successor_pid": report.successor_pid,
            "readable": {k: list(v) for k, v in report.readable.items()},
            "snapshot_size": report.snapshot_size,
            "snapshot_versions": versions,
            "steps": steps,
            "timings": dict(report.timings),
            "pause": self.pause_seconds,
            "rounds": [r.to_plain() for r in report.rounds],
            "final": report.final,
            "fallback": report.fallback,
            "fork": report.fork_seconds,
        }


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; the cache lives in ``self.server``."""

    protocol_version = "HTTP/1.1"
    server: CacheServer  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the demo's own output

    def _reply(self, status: int, body: bytes = b"", *, content: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self, body: bytes) -> None:
        """Answer with what the successor answers to this very request."""
        try:
            answer = forward(
                forwarding_address(self.server.listener),
                self.command,
                self.path,
                self.headers.items(),
                body,
                client=self.client_address[0],
            )
        except HandoffError as exc:
            status, reason, headers, data = 502, "Bad Gateway", [], f"{exc}\n".encode()
        else:
            status, reason = answer.status, answer.reason
            headers, data = answer.headers, answer.body
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in {"server", "date"}:  # send_response wrote its own
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")  # the next request goes to the successor
        self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, data: object) -> None:
        self._reply(status, json.dumps(data).encode(), content="application/json")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= _MAX_BODY:
            raise ValueError(f"body of {length} bytes refused")
        return self.rfile.read(length)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._body()  # always read: the connection may carry another request
        method, path = self.command, url.path
        try:
            self._route(method, path, query, body)
        except _Moved:
            self._forward(body)
        except (ValueError, KeyError, StateMigrateError) as exc:
            self._reply(400, f"{exc}\n".encode())

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        server = self.server
        if path.startswith("/kv/"):
            key = unquote(path[4:])
            if method == "GET":
                value = server.get(key)
                if value is None:
                    self._reply(404)
                else:
                    self._reply(200, value.encode())
            elif method == "PUT":
                ttl = float(query["ttl"]) if "ttl" in query else None
                if ttl is not None and server.release < 2:
                    raise ValueError(f"release {server.release} has no expiry")
                server.put({key: body.decode()}, ttl=ttl)
                self._reply(200, b"stored\n")
            elif method == "DELETE":
                self._json(200, {"deleted": server.delete(key)})
            else:
                self._reply(405)
        elif path == "/batch" and method == "POST":
            items = json.loads(body)
            if not isinstance(items, dict) or not all(isinstance(v, str) for v in items.values()):
                raise ValueError("a batch is a JSON object of string values")
            server.put(items)
            self._json(200, {"stored": len(items)})
        elif path == "/stats" and method == "GET":
            self._json(200, server.stats())
        elif path == "/admin/export" and method == "GET":
            self._json(200, server.export_entries())
        elif path == "/admin/upgrade" and method == "POST":
            release = int(query["to"].lstrip("v"))
            if release not in RELEASES:
                raise ValueError(f"unknown release {release}; the demo has {RELEASES}")
            status, report = server.upgrade(release, allow_lossy=query.get("allow_lossy") == "1")
            self.close_connection = True
            self._json(status, report)
        else:
            self._reply(404)

    do_GET = do_PUT = do_DELETE = do_POST = _dispatch


def build_service(release: int) -> Service:
    """The demo's service for one release: one ``kvcache`` component, unbounded."""
    service = Service(
        "statemigrate-demo", code_version=f"release-{release}", registry=build_registry()
    )
    service.register(KVCacheV3() if release == 3 else KVCacheV1())
    return service


def _listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1024)
    except OSError:
        listener.close()
        raise
    return listener


def main(argv: list[str] | None = None) -> int:
    """Run one generation until it hands over (and drains) or gets SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m statemigrate.demo._server")
    parser.add_argument("--release", type=int, choices=RELEASES, default=1)
    parser.add_argument("--generation", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--drain", type=float, default=5.0)
    args = parser.parse_args(argv)

    try:
        inheritance = receive_handoff(expect={"http"})
        service = build_service(args.release)
        if inheritance is None:
            listener = _listen(args.port)
    except (StateMigrateError, OSError) as exc:
        # One line, which the demo quotes as the reason it stopped; no traceback.
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        emit(event="failed", generation=args.generation, pid=os.getpid(), reason=str(exc))
        return 1
    restored: dict[str, object] = {}
    if inheritance is not None:
        try:
            with inheritance:
                report = take_over(service, inheritance)
        except StateMigrateError as exc:
            emit(event="failed", generation=args.generation, pid=os.getpid(), reason=str(exc))
            return 1
        listener = inheritance.listeners["http"]
        restored = {
            "steps": [step for c in report.restore.components for step in c.steps],
            "timings": dict(report.restore.timings),
            "rounds": [r.to_plain() for r in report.rounds],
        }
    server = CacheServer(
        listener, release=args.release, generation=args.generation, service=service
    )
    server.start()
    signal.signal(signal.SIGTERM, lambda signum, frame: server.stop_signals.append(signum))
    emit(
        event="ready",
        generation=args.generation,
        release=args.release,
        pid=os.getpid(),
        port=listener.getsockname()[1],
        entries=len(server.cache),
        **restored,
    )
    while not (server.stop_signals or server.handed_over.wait(0.2)):
        pass
    # A SIGTERM during a handoff waits for it to end: leaving now would abandon a
    # successor that may be about to take over, and the state with it.
    with server.upgrading:
        pass
    server._accepting.clear()
    drained = server.drainer.drain(args.drain if server.handed_over.is_set() else 0.0)
    listener.close()
    emit(
        event="exit",
        generation=args.generation,
        pid=os.getpid(),
        handed_over=server.handed_over.is_set(),
        finished=drained.finished,
        cut=drained.cut,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
