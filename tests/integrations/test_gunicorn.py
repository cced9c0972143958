"""The gunicorn hooks: each worker's gate (holds, forwarding, stopping), and end to end
the example cache upgraded (release 1 -> 2) and rolled back (2 -> 1) with kill -USR2
under load, with no request refused, reset, timed out or answered otherwise than 2xx,
and no acknowledged write lost."""

from __future__ import annotations

import http.client
import io
import json
import logging
import logging.handlers
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cli_helpers import run
from gunicorn.config import Config  # type: ignore[import-untyped]
from integrations.loadclient import Tally, ask, load, lost_writes, read_value, wait_for_requests
from integrations.torn_reads import service_with

from statemigrate import ConfigurationError
from statemigrate.handoff import (
    HandoffError,
    HandoffTimeouts,
    hand_over,
    read_trial,
    receive_handoff,
    take_over,
)
from statemigrate.integrations import _gunicorn_worker
from statemigrate.integrations.gunicorn import SAFE_METHODS, Trial, WorkerGate, server_hooks

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gunicorn_cache"
KEYS = 100
DEADLINE = 60.0  # bounds every wait for a process: a hang fails, a slow machine passes


def test_the_hooks_are_settings_gunicorn_accepts() -> None:
    hooks = server_hooks("app_v1:service", timeouts=HandoffTimeouts(ready=5))
    config = Config()
    for name, hook in hooks.items():
        config.set(name, hook)  # gunicorn checks each hook's arity
    assert set(hooks) == {
        "when_ready", "pre_fork", "on_reload", "child_exit", "post_worker_init",
        "pre_request", "post_request", "worker_exit", "on_exit",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("service", "options"),
    [
        ("app_v1", {}),
        (":service", {}),
        ("app_v1:", {}),
        (42, {}),
        ("m:s", {"timeouts": 5}),
        ("m:s", {"safe_methods": "GET"}),
        ("m:s", {"safe_methods": ["GET", "GET /"]}),
    ],
)
def test_server_hooks_refuse_what_they_cannot_use(service: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        server_hooks(service, **options)


class Request:
    def __init__(self, method: str) -> None:
        self.method = method
        self.must_close = False


class Worker:
    """What the gate uses of a gunicorn worker."""

    def __init__(self, listener: socket.socket) -> None:
        self.pid = os.getpid()
        self.ppid = os.getppid()
        self.sockets: list[Any] = [listener]
        self.wait_fds: list[Any] = [listener, 1000]
        self.cfg = None
        self.wsgi: Callable[..., Any] = self.local

    def local(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        return [b"local"]


@pytest.fixture
def worker() -> Iterator[Worker]:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield Worker(listener)
    finally:
        listener.close()


@contextmanager
def sigterm_caught() -> Iterator[list[int]]:
    caught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        signal.signal(signal.SIGTERM, previous)


def _in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("safe_methods", "running", "held", "served"),
    [
        (SAFE_METHODS, "PUT", "POST", "GET"),  # reads go on during the pause
        ((), "GET", "HEAD", None),  # no method is safe: reads are held too
    ],
)
def test_the_pause_holds_what_may_change_the_state_and_waits_for_it_running(
    worker: Worker, safe_methods: Any, running: str, held: str, served: str | None
) -> None:
    gate = WorkerGate(worker, safe_methods=safe_methods)
    gate.hold(Request(running))  # running when the handoff starts
    paused = threading.Event()

    def pause() -> None:
        gate.pause()
        paused.set()

    pausing = _in_thread(pause)
    time.sleep(0.05)
    assert not paused.is_set()  # pause() waits for the running request
    gate.release()
    pausing.join()
    waiting = Request(held)
    holding = _in_thread(lambda: gate.hold(waiting))
    if served is not None:
        gate.hold(Request(served))
    time.sleep(0.05)
    assert holding.is_alive()
    gate.resume()  # the handoff failed: the held request goes on locally
    holding.join()
    assert not waiting.must_close and not gate.moved


def test_writes_running_past_timeouts_writes_fail_the_pause_and_let_the_writes_go(
    worker: Worker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write still running after ``writes`` seconds (a client trickling its body):
    the pause says it waits (past ``TELL_AFTER``, shortened here), then gives up with
    stage ``writes``; that pause is over, so a new write runs at once."""
    monkeypatch.setattr(_gunicorn_worker, "TELL_AFTER", 0.01)
    gate = WorkerGate(worker, timeouts=HandoffTimeouts(writes=0.05))
    gate.hold(Request("PUT"))  # running when the handoff starts, and never ending
    failed: list[HandoffError] = []

    def pause() -> None:
        with pytest.raises(HandoffError) as raised:
            gate.pause()
        failed.append(raised.value)

    with caplog.at_level(logging.INFO, logger="statemigrate.handoff"):
        # A daemon: a pause that never gives up must not keep the tests from ending.
        pausing = threading.Thread(target=pause, daemon=True)
        pausing.start()
        pausing.join(DEADLINE)
    (error,) = failed
    assert error.stage == "writes"
    assert error.detail.startswith("1 write request still running after 0.05 s")
    told = [r for r in caplog.records if "the pause waits for" in r.getMessage()]
    assert [r.levelno for r in told] == [logging.WARNING]
    assert "1 write request still running" in told[0].getMessage()
    writing = _in_thread(lambda: gate.hold(Request("POST")))
    writing.join(DEADLINE)
    assert not writing.is_alive()  # not held: the failed pause let the writes go


@pytest.mark.parametrize("precopy", ["fork", False])
@pytest.mark.parametrize(("safe_methods", "held"), [(SAFE_METHODS, False), ((), True)])
def test_a_read_that_moves_a_key_loses_it_unless_the_pause_holds_reads(
    worker: Worker, precopy: Any, safe_methods: frozenset[str], held: bool
) -> None:
    """A gthread worker reads the reference cache in one thread while the handoff runs
    in another; the read takes its key out and puts it back (an LRU's move to the end),
    and stops in between. Served during the pause (GET a safe method), it leaves the
    key out of what the successor gets; with ``safe_methods=()`` the pause waits for
    it, and the key moves with the state."""
    service, cache, entries = service_with({"a": "1", "b": "2"})
    gate = WorkerGate(worker, safe_methods=safe_methods)
    entries.stop_next_pop()

    def read() -> None:
        gate.hold(Request("GET"))
        try:
            assert cache.get("a") == "1"
        finally:
            gate.release()

    class Control:
        def pause(self) -> None:
            if held:
                entries.go_on.set()  # the pause must wait for the read to end
            gate.pause()

        def resume(self) -> None:
            gate.resume()

        def stop_accepting(self) -> None:
            gate.stop_accepting()

    reader = _in_thread(read)
    assert entries.taken.wait(DEADLINE)
    old, new = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    handing = _in_thread(
        lambda: hand_over(service, old, listeners={}, control=Control(), precopy=precopy)
    )
    successor, successor_cache, _ = service_with({})
    try:
        with sigterm_caught() as caught:
            with receive_handoff(new, expect=()) as inheritance:
                take_over(successor, inheritance)
            handing.join(DEADLINE)
    finally:
        entries.go_on.set()
        reader.join(DEADLINE)
        old.close()
        new.close()
    assert caught == [signal.SIGTERM] and gate.moved
    assert set(successor_cache.entries) == ({"a", "b"} if held else {"b"})


def test_the_example_holds_its_cache_reads_during_the_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The example's reads move the entry they read to the end of the cache, in a
    gthread worker's threads: its hooks hold them during the pause."""
    monkeypatch.setenv("CACHE_RELEASE_FILE", str(EXAMPLE / "RELEASE"))
    path = EXAMPLE / "gunicorn.conf.py"
    config: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), config)
    assert config["worker_class"] == "gthread"
    assert config["pre_request"].__self__.safe_methods == frozenset()


def test_once_moved_the_worker_accepts_nothing_and_stops(worker: Worker) -> None:
    moved: list[bool] = []
    gate = WorkerGate(worker, on_moved=lambda: moved.append(True))
    gate.install()
    gated = worker.sockets[0]
    assert worker.wait_fds == [gated, 1000]
    peer = socket.create_connection(gated.getsockname())
    conn, _ = gated.accept()  # accepting while the gate is open
    conn.close()
    gate.pause()
    held = Request("PUT")
    holding = _in_thread(lambda: gate.hold(held))
    with sigterm_caught() as caught:
        gate.stop_accepting()
        holding.join()
    assert caught == [signal.SIGTERM] and moved == [True]
    assert held.must_close  # answered (forwarded) with Connection: close
    late = socket.create_connection(gated.getsockname())
    with pytest.raises(BlockingIOError):
        gated.accept()  # the connection stays queued for the successor
    peer.close()
    late.close()


def _call(
    app: Callable[..., Any], method: str, body: bytes = b""
) -> tuple[str, dict[str, str], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": method,
        "RAW_URI": "/cache/a?x=1",
        "SERVER_PORT": "0",
        "REMOTE_ADDR": "10.0.0.7",
        "HTTP_HOST": "example",
        "HTTP_X_TRACE": "t1",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    data = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], data


def test_after_the_move_requests_are_forwarded_to_the_listener(worker: Worker) -> None:
    gate = WorkerGate(worker)
    gate.install()
    assert _call(worker.wsgi, "PUT", b"v")[2] == b"local"
    seen: list[bytes] = []

    def successor() -> None:
        conn, _ = worker.sockets[0]._listener.accept()
        with conn:
            data = b""
            while not data.endswith(b"v"):
                data += conn.recv(4096)
            seen.append(data)
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-From: new\r\n\r\nok")

    with sigterm_caught():
        gate.stop_accepting()
    serving = _in_thread(successor)
    status, headers, body = _call(worker.wsgi, "PUT", b"v")
    serving.join()
    assert (status, body, headers["X-From"], headers["Content-Length"]) == (
        "201 Created", b"ok", "new", "2",
    )  # fmt: skip
    request = seen[0].decode()
    assert request.startswith("PUT /cache/a?x=1 HTTP/1.1\r\n")
    for line in ("Host: example", "X-Trace: t1", "X-Forwarded-For: 10.0.0.7", "Content-Length: 1"):
        assert f"\r\n{line}\r\n" in request


def test_a_request_nobody_takes_is_answered_503(worker: Worker) -> None:
    gate = WorkerGate(worker)
    gate.install()
    with sigterm_caught():
        gate.stop_accepting()
    worker.sockets[0].close()  # nobody listens any more: the connection is refused
    status, _, _ = _call(worker.wsgi, "PUT", b"v")
    assert status == "503 Service Unavailable"


def _state(pid: int) -> str | None:
    """The process's state letter, or None once it is gone (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state = stat.rpartition(")")[2].split()[0]
    return None if state in {"Z", "X"} else state


def _wait_gone(pid: int) -> None:
    end = time.monotonic() + DEADLINE
    while _state(pid) is not None:
        assert time.monotonic() < end, f"process {pid} did not exit"
        time.sleep(0.02)


@dataclass
class Gunicorn:
    """A gunicorn started by the test from the example's configuration."""

    tmp: Path
    worker_class: str
    workers: int
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    masters: list[int] = field(default_factory=list)

    @property
    def pidfile(self) -> Path:
        return self.tmp / "gunicorn.pid"

    @property
    def log(self) -> Path:
        return self.tmp / "gunicorn.log"

    def master(self) -> int | None:
        try:
            text = self.pidfile.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def start(self, release: int, config: Path = EXAMPLE / "gunicorn.conf.py") -> None:
        (self.tmp / "RELEASE").write_text(f"{release}\n")
        env = {**os.environ, "CACHE_RELEASE_FILE": str(self.tmp / "RELEASE")}
        argv = [
            # The console script, as an operator runs it: a re-exec of "python -m
            # gunicorn" runs gunicorn/__main__.py as a script, whose folder then
            # shadows the standard library's http package.
            str(Path(sys.executable).with_name("gunicorn")),
            "-c", str(config),
            "--bind", "127.0.0.1:0",
            "--pid", str(self.pidfile),
            "--worker-class", self.worker_class,
            "--workers", str(self.workers),
            "--no-control-socket",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, cwd=EXAMPLE, env=env, stderr=log)
        end = time.monotonic() + DEADLINE
        while not self.port:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < end, self.log.read_text()
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", self.log.read_text())
            if found:
                self.port = int(found.group(1))
            time.sleep(0.02)
        self.masters.append(self.proc.pid)
        self.wait_serving(release)

    def wait_serving(self, release: int) -> None:
        end = time.monotonic() + DEADLINE
        while True:
            try:
                status, body = ask(self.port, "GET", "/cache/-")
            except OSError:
                status, body = 0, ""
            if status == 404 and json.loads(body) == {"key": "-"}:
                return
            assert time.monotonic() < end, self.log.read_text()
            time.sleep(0.05)

    def deploy(self, release: int, *, retire: bool = False) -> tuple[float, float]:
        """The operator's deploy: write the release, kill -USR2 the master, and wait
        until the old master is gone and the new one promoted. Returns the window.

        With ``retire``, stop the old master once the new generation has booted, as
        an operator does without the hooks."""
        old = self.master()
        assert old is not None
        (self.tmp / "RELEASE").write_text(f"{release}\n")
        began = time.monotonic()
        booted = self.log.read_text().count("Booting worker")
        os.kill(old, signal.SIGUSR2)
        if retire:
            end = time.monotonic() + DEADLINE
            while self.log.read_text().count("Booting worker") == booted:
                assert time.monotonic() < end, self.log.read_text()
                time.sleep(0.02)
            os.kill(old, signal.SIGTERM)
        if self.proc is not None and self.proc.pid == old:
            self.proc.wait(timeout=DEADLINE)  # our child: reap it
        _wait_gone(old)
        end = time.monotonic() + DEADLINE
        while self.master() in (None, old):  # promoted: gunicorn.pid.2 renamed
            assert time.monotonic() < end, self.log.read_text()
            time.sleep(0.02)
        new = self.master()
        assert new is not None
        self.masters.append(new)
        return began, time.monotonic()

    def stop(self) -> None:
        for pid in reversed(self.masters):
            if _state(pid) is not None:
                os.kill(pid, signal.SIGTERM)
        for pid in self.masters:
            try:
                _wait_gone(pid)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def gunicorn(
    tmp: Path,
    release: int,
    *,
    worker_class: str,
    workers: int = 1,
    config: Path = EXAMPLE / "gunicorn.conf.py",
) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp, worker_class, workers)
    try:
        server.start(release, config)
        yield server
    finally:
        server.stop()


def _pauses(log: Path) -> list[str]:
    """Each handoff's pause, from the old workers' reports: export, transfer and ready
    (the writes are held from the export's start until COMMIT)."""
    pauses = []
    for line in log.read_text().splitlines():
        if "handoff ready:" in line:
            timings = dict(re.findall(r"(\w+)=([\d.]+)ms", line))
            held = sum(float(timings[phase]) for phase in ("export", "transfer", "ready"))
            pauses.append(f"{held:.1f}ms")
    return pauses


def _report(tally: Tally, windows: dict[str, tuple[float, float]], log: Path) -> None:
    print(f"\n{tally.line()}")
    for name, (since, until) in windows.items():
        print(f"  {name} ({until - since:.2f} s): {tally.latency_summary(since, until)}")
    print(f"  pause per handoff: {', '.join(_pauses(log))}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("worker_class", "keep_alive"),
    # Each worker class once, and each kind of connection once.
    [("gthread", True), ("sync", False)],
    ids=["gthread-keepalive", "sync-fresh"],
)
def test_upgrade_and_rollback_under_load(
    tmp_path: Path, worker_class: str, keep_alive: bool
) -> None:
    with gunicorn(tmp_path, 1, worker_class=worker_class) as server:
        port = server.port
        windows: dict[str, tuple[float, float]] = {}
        # Requests run through each deploy whatever the counts between: these only
        # make sure each generation serves some before the next step.
        with load(port, clients=4, keep_alive=keep_alive, keys=KEYS) as tally:
            wait_for_requests(tally, 100)
            windows["upgrade 1 -> 2"] = server.deploy(2)
            wait_for_requests(tally, 100)
            assert json.loads(ask(port, "GET", "/cache/k1")[1])["release"] == 2
            windows["rollback 2 -> 1"] = server.deploy(1)
            wait_for_requests(tally, 100)
        _report(tally, windows, server.log)
        assert tally.failures() == {"refused": 0, "reset": 0, "timed_out": 0, "non_2xx": 0}
        assert tally.acknowledged
        assert lost_writes(port, tally) == []
        # The preloaded cache went through v2 and back, entry by entry.
        assert [read_value(port, f"k{i}") for i in range(KEYS)] == [f"v{i}" for i in range(KEYS)]
        assert json.loads(ask(port, "GET", "/cache/k1")[1])["release"] == 1
        assert len(server.masters) == 3


def _owner(port: int, key: str, tries: int = 400) -> int:
    """The pid of the worker holding ``key``: ask on fresh connections until one has it."""
    for _ in range(tries):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", f"/cache/{key}")
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        if response.status == 200:
            return int(response.getheader("X-Worker", "0"))
    raise AssertionError(f"no worker holds {key}")


def spread_writes(port: int, prefix: str, *, at_least: int = 0) -> dict[str, int]:
    """PUT keys, each on a fresh connection, until both workers hold some (and at
    least ``at_least`` are written); return each key's worker pid."""
    written: dict[str, int] = {}
    n = 0
    while len(set(written.values())) < 2 or n < at_least:
        n += 1
        assert n < 2000, "one worker took every connection"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("PUT", f"/cache/{prefix}{n}", body=f"x{n}")
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        assert response.status == 200
        written[f"{prefix}{n}"] = int(response.getheader("X-Worker", "0"))
    return written


@pytest.mark.slow
def test_each_worker_hands_its_state_to_the_same_slot(tmp_path: Path) -> None:
    with gunicorn(tmp_path, 1, worker_class="gthread", workers=2) as server:
        port = server.port
        written = spread_writes(port, "s")
        server.deploy(2)
        moved = {key: _owner(port, key) for key in written}
        # Every key of one old worker is in one new worker, a different one for each.
        pairs = {(written[key], moved[key]) for key in written}
        assert len(pairs) == 2
        assert len({new for _, new in pairs}) == 2
        assert not {new for _, new in pairs} & set(written.values())
        # Each old worker logged its handoff's report once.
        ready = re.findall(r"\[(\d+)\] \[INFO\] .*handoff ready: ", server.log.read_text())
        assert sorted(map(int, ready)) == sorted(set(written.values())), ready


@pytest.mark.slow
def test_a_refused_rollback_leaves_the_old_generation_serving(tmp_path: Path) -> None:
    # The example's configuration without allow_lossy: 2 -> 1 drops the expiry times,
    # so the release 2 worker refuses to export, and the new master halts.
    config = tmp_path / "strict.conf.py"
    config.write_text(
        f"exec(open({str(EXAMPLE / 'gunicorn.conf.py')!r}).read())\n"
        "globals().update(server_hooks(f'app_v{release}:service', allow_lossy=False))\n"
    )
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        port = server.port
        with load(port, clients=4, keep_alive=True, keys=KEYS) as tally:
            wait_for_requests(tally, 300)
            server.deploy(2)
            wait_for_requests(tally, 300)
            master = server.master()
            (tmp_path / "RELEASE").write_text("1\n")
            assert master is not None
            os.kill(master, signal.SIGUSR2)
            end = time.monotonic() + DEADLINE
            while "deploy failed" not in server.log.read_text():
                assert time.monotonic() < end, server.log.read_text()
                time.sleep(0.02)
            wait_for_requests(tally, 300)
        _report(tally, {}, server.log)
        log = server.log.read_text()
        assert "Reason: Worker failed to boot." in log
        assert "only steps declared lossy" in log
        # The old master says so, once: the new one halted after logging why.
        failed = re.findall(rf"\[{master}\] \[ERROR\] deploy failed \(kill -USR2\): .*", log)
        assert len(failed) == 1 and "exited with status 3" in failed[0], failed
        assert "a worker failed to boot: its lines and its workers' in this log" in failed[0]
        assert server.master() == master
        assert tally.failures() == {"refused": 0, "reset": 0, "timed_out": 0, "non_2xx": 0}
        assert lost_writes(port, tally) == []
        assert [read_value(port, f"k{i}") for i in range(KEYS)] == [f"v{i}" for i in range(KEYS)]
        assert json.loads(ask(port, "GET", "/cache/k1")[1])["release"] == 2


@pytest.mark.slow
def test_without_the_hooks_an_upgrade_loses_the_cache(tmp_path: Path) -> None:
    """Negative control: the same deploy with gunicorn's own hooks only."""
    config = tmp_path / "plain.conf.py"
    config.write_text(
        f"exec(open({str(EXAMPLE / 'gunicorn.conf.py')!r}).read())\n"
        "for name in list(server_hooks('app_v1:service')):\n"
        "    del globals()[name]\n"
    )
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        assert ask(server.port, "PUT", "/cache/k1", "v1")[0] == 200
        server.deploy(2, retire=True)
        server.wait_serving(2)
        assert read_value(server.port, "k1") is None


def _gunicorn_log(tmp: Path, loglevel: str = "info") -> Any:
    """gunicorn's own logger, its error log written to a file."""
    from gunicorn.glogging import Logger  # type: ignore[import-untyped]

    config = Config()
    config.set("errorlog", str(tmp / "error.log"))
    config.set("loglevel", loglevel)
    return Logger(config)


@pytest.fixture
def library_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """The "statemigrate" logger with no handler, restored afterwards."""
    library = logging.getLogger("statemigrate")
    monkeypatch.setattr(library, "handlers", [])
    level = library.level
    try:
        yield library
    finally:
        library.setLevel(level)


def test_library_records_go_to_gunicorn_s_error_log_unless_logging_is_configured(
    tmp_path: Path, library_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No handler on the root logger either, as in an application that configured no
    # logging: pytest's own ones are added for the test's body.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    log = _gunicorn_log(tmp_path)
    hooks = server_hooks("app_v1:service", directory=tmp_path / "sockets")
    cfg = type(
        "Cfg", (), {"workers": 1, "reuse_port": False, "max_requests": 0, "preload_app": False}
    )()
    server = type("Arbiter", (), {"cfg": cfg, "log": log})()
    hooks["when_ready"](server)
    hooks["when_ready"](server)  # once only, however often the hooks run
    logging.getLogger("statemigrate").info("checkpoint: %s", "committed")
    logging.getLogger("statemigrate.handoff").warning("a warning")
    logging.getLogger("statemigrate").debug("not at gunicorn's level")
    lines = (tmp_path / "error.log").read_text().splitlines()
    pid = os.getpid()
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"\[.+\] \[{pid}\] \[INFO\] checkpoint: committed", lines[0])
    assert re.fullmatch(rf"\[.+\] \[{pid}\] \[WARNING\] a warning", lines[1])

    # An application that configures its own logging gets the records there only.
    mine = logging.handlers.BufferingHandler(100)
    library_logger.addHandler(mine)
    hooks["when_ready"](server)
    logging.getLogger("statemigrate").warning("to the application's handler")
    assert len((tmp_path / "error.log").read_text().splitlines()) == 2
    assert [r.getMessage() for r in mine.buffer] == ["to the application's handler"]


# -- trials ---------------------------------------------------------------------------------


def test_server_hooks_refuse_a_trial_that_is_not_a_trial() -> None:
    with pytest.raises(ConfigurationError, match="trial"):
        server_hooks("app_v1:service", trial="/run/cache/trial")  # type: ignore[arg-type]


class HaltingArbiter:
    """What the hooks use of gunicorn's arbiter as it starts, ``halt()`` as gunicorn's:
    the reason in its log, then an exit with the status given."""

    def __init__(self, workers: int) -> None:
        self.cfg = type(
            "Cfg",
            (),
            {"workers": workers, "reuse_port": False, "max_requests": 0, "preload_app": False},
        )()
        self.lines: list[str] = []
        self.log = SimpleNamespace(error=self.error, warning=self.error, info=self.error)

    def error(self, message: str, *args: object) -> None:
        self.lines.append(message % args)

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        self.error("Reason: %s", reason)
        raise SystemExit(exit_status)


def test_a_trial_needs_a_single_worker(tmp_path: Path) -> None:
    hooks = server_hooks(
        "app_v1:service", directory=tmp_path / "sockets", trial=Trial(directory=tmp_path / "t")
    )
    server = HaltingArbiter(workers=2)
    with pytest.raises(SystemExit) as exited:
        hooks["when_ready"](server)
    assert exited.value.code == 1
    [line] = server.lines
    assert line.startswith("Reason: statemigrate: trial: a trial needs workers = 1")


@pytest.mark.slow
def test_after_usr2_the_new_worker_is_on_trial_and_can_be_promoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = tmp_path / "trial"
    config = tmp_path / "trial.conf.py"
    config.write_text(
        f"exec(open({str(EXAMPLE / 'gunicorn.conf.py')!r}).read())\n"
        "from statemigrate.integrations.gunicorn import Trial\n"
        "globals().update(server_hooks(\n"
        f"    f'app_v{{release}}:service', allow_lossy=True,\n"
        f"    trial=Trial(directory={str(trial)!r}),\n"
        "))\n"
    )
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        port = server.port
        assert ask(port, "PUT", "/cache/k1", "v1")[0] == 200
        first = server.master()
        server.deploy(2)
        worker = _owner(port, "k1")
        end = time.monotonic() + DEADLINE
        while True:  # the old worker writes the record; the new one describes itself
            record = read_trial(trial) if trial.exists() else None
            if record is not None and record.trial is not None and record.trial.versions:
                break
            assert time.monotonic() < end, server.log.read_text()
            time.sleep(0.02)
        assert record.state == "trial"
        assert record.trial.pid == worker
        assert record.trial.versions == {"kvcache": 2}
        assert record.trial.code_version == "release-2"
        assert record.permanent.versions == {"kvcache": 1}
        assert record.permanent.code_version == "release-1"
        assert record.permanent.pid != first and "-c" in record.permanent.argv

        # No hot revert under gunicorn: refused with the reason, and the trial serves on.
        refused = run(capsys, "trial", "revert", "--dir", str(trial), "--wait", "30")
        assert refused.code != 0
        assert "do not hand back" in refused.err and refused.err.count("\n") == 1
        still = read_trial(trial)
        assert still is not None and still.state == "trial" and still.trial is not None
        assert still.trial.pid == worker

        promoted = run(capsys, "trial", "promote", "--dir", str(trial))
        assert promoted.code == 0, promoted.err
        done = read_trial(trial)
        assert done is not None and (done.state, done.outcome) == ("permanent", "promoted")
        assert json.loads(ask(port, "GET", "/cache/k1")[1]) == {
            "key": "k1", "value": "v1", "release": 2,
        }  # fmt: skip
