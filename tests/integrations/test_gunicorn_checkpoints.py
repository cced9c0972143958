"""The gunicorn hooks' checkpoints: slots and replacements as the master tells them, and
end to end a worker killed (kill -9), recycled or reloaded (HUP) whose replacement
serves its slot's last checkpoint, never the master's older copy, nor lets the store go
back to it."""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from integrations.loadclient import ask, read_value
from integrations.test_gunicorn import (
    DEADLINE,
    EXAMPLE,
    Gunicorn,
    HaltingArbiter,
    _owner,
    gunicorn,
    spread_writes,
)

from statemigrate import ConfigurationError, RestoreError, Service, StoreError, open_snapshot
from statemigrate.integrations._gunicorn_checkpoints import (
    SlotCheckpoints,
    place,
    replaced,
    retire_all,
    vacate,
)
from statemigrate.integrations.gunicorn import (
    WORKER_BOOT_ERROR,
    Checkpoints,
    WorkerGate,
    server_hooks,
)
from statemigrate.reference import KVCacheV1, KVCacheV2, build_registry
from statemigrate.stores import MemoryStore, TmpfsStore

EVERY = 0.2
COLD_MASTER = (
    "hooks_when_ready = when_ready\n"
    "def when_ready(server):\n"
    "    hooks_when_ready(server)\n"
    "    import app_v1\n"
    "    app_v1.cache.set('boot', 'master')\n"
    "    app_v1.service.start_cold('the test')\n"
)
"""A master whose copy holds one key, declared a cold start."""
KEYS = {f"c{i}": f"value-{i}" for i in range(20)}


# -- options ---------------------------------------------------------------------------------


def test_checkpoints_take_a_store_a_function_or_their_options() -> None:
    store = MemoryStore()
    for value in (store, lambda slot: store, Checkpoints(store, every=1.0)):
        hooks = server_hooks("app_v1:service", checkpoints=value)
        assert "on_reload" in hooks


@pytest.mark.parametrize(
    "value",
    [
        lambda: 42,
        lambda: "/dev/shm/cache",
        lambda: Checkpoints(MemoryStore(), every=0.0),
        lambda: Checkpoints(MemoryStore(), export="threads"),  # type: ignore[arg-type]
        lambda: Checkpoints(MemoryStore(), max_delta_ratio=0.0),
        lambda: Checkpoints(MemoryStore(), max_deltas=0),
        lambda: Checkpoints(MemoryStore(), max_backoff=-1.0),
        lambda: Checkpoints(MemoryStore(), export_timeout=float("nan")),
        lambda: Checkpoints(MemoryStore(), claim_after=0),
    ],
    ids=["number", "path", "every", "export", "ratio", "deltas", "backoff", "timeout", "claim"],
)
def test_checkpoints_refuse_what_they_cannot_use(value: Any) -> None:
    with pytest.raises(ConfigurationError):
        server_hooks("app_v1:service", checkpoints=value())


@pytest.mark.parametrize("export", ["fork", "inline"])
def test_a_worker_s_checkpointer_exports_as_the_checkpoints_say(export: str) -> None:
    """``export="inline"`` is the way out of a forked base that starves on saturated
    cores (docs/checkpoints.md): the worker's checkpointer must be given it."""
    service = Service("gunicorn-cache", registry=build_registry())
    service.register(KVCacheV2())
    service.start_cold("a test")
    slot = SlotCheckpoints(Checkpoints(MemoryStore(), every=60.0, export=export), 0)  # type: ignore[arg-type]
    worker = type("Worker", (), {"pid": 4242, "log": Log()})()
    slot.run(service, threading.Lock(), worker, now=False)
    checkpointer = slot.checkpointer
    assert checkpointer is not None
    try:
        assert checkpointer.export == export
    finally:
        checkpointer.stop(final=False)


def test_a_worker_s_checkpointer_compacts_and_retries_as_the_checkpoints_say() -> None:
    service = Service("gunicorn-cache", registry=build_registry())
    service.register(KVCacheV2())
    service.start_cold("a test")
    settings = Checkpoints(
        MemoryStore(),
        every=60.0,
        incremental=True,
        max_delta_ratio=0.2,
        max_deltas=7,
        max_backoff=90.0,
        export_timeout=30.0,
        claim_after=240.0,
    )
    slot = SlotCheckpoints(settings, 0)
    worker = type("Worker", (), {"pid": 4242, "log": Log()})()
    slot.run(service, threading.Lock(), worker, now=False)
    checkpointer = slot.checkpointer
    assert checkpointer is not None
    checkpointer.stop(final=False)
    assert (
        checkpointer.max_delta_ratio,
        checkpointer.max_deltas,
        checkpointer.max_backoff,
        checkpointer.export_timeout,
        checkpointer.claim_after,
    ) == (0.2, 7, 90.0, 30.0, 240.0)


def test_a_worker_s_checkpointer_warns_of_checkpoints_longer_than_graceful_timeout() -> None:
    """The master kills a stopping worker after ``graceful_timeout``: the worker's
    checkpointer is told, so that a checkpoint taking longer is warned of before a
    stop cuts the final one."""
    service = Service("gunicorn-cache", registry=build_registry())
    service.register(KVCacheV2())
    service.start_cold("a test")
    slot = SlotCheckpoints(Checkpoints(MemoryStore(), every=60.0), 0)
    config = type("Cfg", (), {"graceful_timeout": 7})()
    worker = type("Worker", (), {"pid": 4242, "log": Log(), "cfg": config})()
    slot.run(service, threading.Lock(), worker, now=False)
    checkpointer = slot.checkpointer
    assert checkpointer is not None
    checkpointer.stop(final=False)
    assert checkpointer.stop_within == 7.0


def test_a_function_that_gives_no_store_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="slot 3"):
        Checkpoints(lambda slot: "/dev/shm/x").store_for(3)  # type: ignore[arg-type,return-value]


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def error(self, message: str, *args: object) -> None:
        self.lines.append(message % args)

    info = warning = error


def test_one_store_for_several_workers_halts_the_master_with_one_line(tmp_path: Path) -> None:
    hooks = server_hooks(
        "app_v1:service", directory=tmp_path / "sockets", checkpoints=MemoryStore()
    )
    server = HaltingArbiter(workers=2)
    with pytest.raises(SystemExit) as exited:
        hooks["when_ready"](server)
    assert exited.value.code == 1
    [line] = server.lines
    assert "one store for workers = 2" in line
    assert "a function slot -> store" in line and "workers = 1" in line


@pytest.mark.slow
def test_gunicorn_refuses_one_store_for_two_workers_in_one_line(tmp_path: Path) -> None:
    """As a user meets it, following docs/gunicorn.md: gunicorn exits with status 1
    and one line saying what to change, not a traceback, and removes its pid file."""
    config = tmp_path / "one-store.conf.py"
    config.write_text(
        f"exec(open({str(EXAMPLE / 'gunicorn.conf.py')!r}).read())\n"
        "from statemigrate.stores import TmpfsStore\n"
        "globals().update(server_hooks(\n"
        f"    f'app_v{{release}}:service', directory={str(tmp_path / 'sockets')!r},\n"
        f"    checkpoints=TmpfsStore({str(tmp_path / 'store')!r}),\n"
        "))\n"
    )
    (tmp_path / "store").mkdir(mode=0o700)
    (tmp_path / "RELEASE").write_text("1\n")
    pidfile = tmp_path / "gunicorn.pid"
    argv = [
        str(Path(sys.executable).with_name("gunicorn")), "-c", str(config),
        "--bind", "127.0.0.1:0", "--pid", str(pidfile), "--workers", "2",
        "--no-control-socket",
    ]  # fmt: skip
    env = {**os.environ, "CACHE_RELEASE_FILE": str(tmp_path / "RELEASE")}
    # The timeout only stops a hang.
    done = subprocess.run(
        argv, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    refused = [line for line in output.splitlines() if "one store" in line]
    assert len(refused) == 1, output
    reason = r"\[ERROR\] Reason: statemigrate: checkpoints: one store for workers = 2"
    assert re.search(reason, refused[0])
    assert "Booting worker" not in output
    assert not pidfile.exists()


@pytest.mark.parametrize(
    ("store_for", "fragments"),
    [
        # a store that cannot be opened: its directory's parent is missing
        (lambda tmp_path: lambda slot: TmpfsStore(tmp_path / "missing" / str(slot)), ()),
        # a function that raises
        (lambda tmp_path: lambda slot: slot / 0, ("ZeroDivisionError", "slot 0")),
    ],
    ids=["store-cannot-open", "function-raises"],
)
def test_a_worker_that_cannot_keep_checkpoints_fails_its_boot_with_one_line(
    tmp_path: Path, store_for: Any, fragments: tuple[str, ...]
) -> None:
    service = Service("gunicorn-cache", registry=build_registry())
    hooks = server_hooks(
        service, directory=tmp_path / "sockets", checkpoints=store_for(tmp_path)
    )
    (tmp_path / "sockets").mkdir(mode=0o700)
    listener = socket.create_server(("127.0.0.1", 0))
    worker = type(
        "Worker",
        (),
        {"pid": os.getpid(), "ppid": os.getppid(), "sockets": [listener], "cfg": None,
         "wsgi": None, "log": Log()},
    )()  # fmt: skip
    try:
        with pytest.raises(SystemExit) as exited:
            hooks["post_worker_init"](worker)
    finally:
        listener.close()
    assert exited.value.code == WORKER_BOOT_ERROR
    assert len(worker.log.lines) == 1
    assert "cannot keep checkpoints" in worker.log.lines[0]
    for fragment in fragments:
        assert fragment in worker.log.lines[0]


def test_max_requests_without_checkpoints_is_told_to_keep_them(tmp_path: Path) -> None:
    hooks = server_hooks("app_v1:service", directory=tmp_path / "sockets")
    cfg = type(
        "Cfg", (), {"workers": 1, "reuse_port": False, "max_requests": 100, "preload_app": False}
    )()
    server = type("Arbiter", (), {"cfg": cfg, "log": Log()})()
    hooks["when_ready"](server)
    assert len(server.log.lines) == 1
    assert "max_requests=100" in server.log.lines[0]
    assert "checkpoints=" in server.log.lines[0]


@pytest.mark.parametrize("configured", [True, False], ids=["checkpoints", "none"])
def test_the_window_of_retiring_is_worded_by_whether_checkpoints_are_configured(
    tmp_path: Path, configured: bool
) -> None:
    """The watch of the new master learns from the hooks whether the workers' final
    checkpoints hold their state."""
    hooks = server_hooks(
        "app_v1:service",
        directory=tmp_path / "sockets",
        checkpoints=MemoryStore() if configured else None,
    )
    cfg = type(
        "Cfg", (), {"workers": 1, "reuse_port": False, "max_requests": 0, "preload_app": False}
    )()
    server: Any = type(
        "Arbiter",
        (),
        {"cfg": cfg, "log": Log(), "reap_workers": lambda self: None, "halt": lambda self: None},
    )()
    hooks["when_ready"](server)
    assert getattr(server.reap_workers, "statemigrate_watching_new_master", False)
    assert server.halt.__self__.checkpoints is configured  # the watch's wrapper


def test_a_replacement_that_cannot_read_a_newer_release_s_checkpoint_says_the_way_out() -> None:
    """What a rollback by HUP meets: release 1's worker, release 2's checkpoint. The
    start-up's way out is said once."""
    from statemigrate import Registry
    from statemigrate.reference._schemas import COMPONENT, SCHEMAS

    store = MemoryStore()
    newer = Service("gunicorn-cache", registry=build_registry())
    cache = KVCacheV2()
    newer.register(cache)
    cache.set("newer", "by-release-2", ttl=600.0)
    newer.commit(store)
    release_1 = Registry()  # version 1 alone: it cannot read version 2
    release_1.add_schema(COMPONENT, 1, SCHEMAS[1])
    older = Service("gunicorn-cache", registry=release_1)
    older.register(KVCacheV1())
    worker = type("Worker", (), {"pid": 4242, "log": Log()})()
    SlotCheckpoints(Checkpoints(store), 0).restore_replaced(older, worker, ())
    refused = [line for line in worker.log.lines if "cannot be restored" in line]
    assert len(refused) == 1
    assert refused[0].count("a newer release wrote it") == 1
    assert "start the release that wrote it" in refused[0]
    way_out = "`statemigrate migrate SNAPSHOT -o OUT --to kvcache=1 --allow-lossy-for kvcache"
    assert way_out in refused[0]
    assert older.status.ready  # the master's copy is served


@pytest.mark.parametrize("stored", [None, b"not a snapshot"], ids=["empty", "unreadable"])
def test_a_worker_that_starts_cold_at_boot_names_its_slot(stored: bytes | None) -> None:
    """As a worker that restored its checkpoint does: the service's own line does not."""
    store = MemoryStore()
    if stored is not None:
        store.commit(stored)
    service = Service("gunicorn-cache", registry=build_registry(), on_restore_failure="serve_cold")
    service.register(KVCacheV2())
    worker = type("Worker", (), {"pid": 4242, "log": Log()})()
    assert SlotCheckpoints(Checkpoints(lambda slot: store), 3).restore_at_boot(service, worker)
    assert service.status.state == "cold_start"
    assert worker.log.lines == [f"worker 4242 (slot 3): starts cold: {service.status.reason}"]
    if stored is None:
        assert service.status.reason == f"no snapshot to restore in {store!r}"


class LevelLog(Log):
    def warning(self, message: str, *args: object) -> None:
        self.lines.append("WARNING " + message % args)


def _slot_worker(workers: int) -> Any:
    cfg = type("Cfg", (), {"workers": workers, "graceful_timeout": 30})()
    return type("Worker", (), {"pid": 4242, "log": LevelLog(), "cfg": cfg})()


def test_a_slot_starting_cold_beside_one_whose_store_holds_state_is_warned_of(
    tmp_path: Path,
) -> None:
    """workers raised from 1 to 2: slot 1 starts cold while slot 0's store holds the
    state, and reads then differ with the worker that takes them."""
    settings = Checkpoints(lambda slot: TmpfsStore(tmp_path / str(slot)))
    settings.store_for(0).commit(b"x" * 10)
    service = Service("gunicorn-cache", registry=build_registry())
    service.register(KVCacheV2())
    worker = _slot_worker(2)
    assert SlotCheckpoints(settings, 1).restore_at_boot(service, worker)
    assert service.status.state == "cold_start"
    [line] = worker.log.lines
    assert line.startswith(
        f"WARNING worker 4242 (slot 1): starts cold ({service.status.reason}) while 1 other"
        f" slot's store holds state: slot 0 in <TmpfsStore '{tmp_path}/0'> (10 bytes);"
        " each worker holds its own copy of the state"
    )


def test_slots_past_a_lowered_worker_count_whose_stores_hold_state_are_named(
    tmp_path: Path,
) -> None:
    """workers lowered from 3 to 1: slot 0's worker names slots 1 and 2, whose
    checkpoints no worker serves; slot 3's store, empty, ends the search."""
    settings = Checkpoints(lambda slot: TmpfsStore(tmp_path / str(slot)))
    for slot in (1, 2, 4):
        settings.store_for(slot).commit(b"x" * slot)
    worker = _slot_worker(1)
    SlotCheckpoints(settings, 0).warn_unserved(worker)
    assert worker.log.lines == [
        "WARNING worker 4242 (slot 0): 2 slots past workers = 1 hold checkpoints that no"
        f" worker serves: slot 1 in <TmpfsStore '{tmp_path}/1'> (1 bytes), slot 2 in"
        f" <TmpfsStore '{tmp_path}/2'> (2 bytes); their state (acknowledged writes) is not"
        " served, and stays in those stores: a start with workers = 3 or more restores it"
        " in its slot again, and no way of folding one worker's state into another's exists"
    ]
    served = _slot_worker(3)
    SlotCheckpoints(settings, 0).warn_unserved(served)  # slot 4's alone, past an empty one
    other = _slot_worker(1)
    SlotCheckpoints(settings, 1).warn_unserved(other)  # said by slot 0's worker only
    assert served.log.lines == other.log.lines == []


@pytest.mark.usefixtures("descriptors_above_fd_setsize")
def test_a_replacement_waits_for_its_old_worker_on_a_descriptor_above_fd_setsize() -> None:
    """A master holding a thousand descriptors forks a replacement whose wait for the
    old worker's exit (a pidfd) is above 1024, which ``select.select`` refuses."""
    store = MemoryStore()
    old = Service("gunicorn-cache", registry=build_registry())
    old.register(KVCacheV2())
    old.commit(store)
    replacement = Service("gunicorn-cache", registry=build_registry())
    replacement.register(KVCacheV2())
    worker = type("Worker", (), {"pid": 4242, "log": Log(), "notify": lambda self: None})()
    # Not reaped until the wait is over: a pidfd opens on the process, exited or not.
    old_worker = subprocess.Popen(["true"])
    try:
        SlotCheckpoints(Checkpoints(store), 0).restore_replaced(
            replacement, worker, (old_worker.pid,)
        )
    finally:
        old_worker.wait()
    assert replacement.status.ready
    [line] = [line for line in worker.log.lines if "restored its latest checkpoint" in line]
    # Its age tells a checkpoint written just now from one a failed final checkpoint
    # left behind.
    assert re.search(r"\(generation \d+, written \d+\.\d s ago\)$", line), line


# -- the master's view: slots and replacements ------------------------------------------------


class Arbiter:
    """The master's side as gunicorn calls the hooks: pre_fork, child_exit, on_reload."""

    def __init__(self) -> None:
        self.WORKERS: dict[int, Any] = {}
        self.pid = 1

    def fork(self) -> Any:
        worker = type("Worker", (), {})()
        place(self, worker)
        self.pid += 1
        self.WORKERS[self.pid] = worker
        return worker

    def reap(self, pid: int) -> None:
        vacate(self, self.WORKERS.pop(pid))

    def slots(self) -> dict[int, int]:
        return {pid: w.statemigrate_slot for pid, w in self.WORKERS.items()}


def test_a_worker_forked_again_for_a_slot_replaces_the_one_before() -> None:
    arbiter = Arbiter()
    first = [arbiter.fork(), arbiter.fork()]
    assert [w.statemigrate_slot for w in first] == [0, 1]
    assert [replaced(w) for w in first] == [None, None]  # the first round
    arbiter.reap(2)  # slot 0's worker died
    again = arbiter.fork()
    assert (again.statemigrate_slot, replaced(again)) == (0, ())


def test_a_replacement_takes_the_slot_of_the_worker_that_died() -> None:
    arbiter = Arbiter()
    arbiter.fork()
    arbiter.fork()
    arbiter.reap(2)  # TTOU stopped slot 0's worker, and no worker replaces it
    arbiter.reap(3)  # then slot 1's worker dies
    again = arbiter.fork()
    assert (again.statemigrate_slot, replaced(again)) == (1, ())
    added = arbiter.fork()  # TTIN: slot 0's state, stopped by TTOU
    assert (added.statemigrate_slot, replaced(added)) == (0, ())


def test_after_hup_each_new_worker_takes_a_slot_and_waits_for_its_old_worker() -> None:
    arbiter = Arbiter()
    arbiter.fork()
    arbiter.fork()
    retire_all(arbiter)  # on_reload: gunicorn forks the new workers, then stops these
    new = [arbiter.fork(), arbiter.fork()]
    assert [(w.statemigrate_slot, replaced(w)) for w in new] == [(0, (2,)), (1, (3,))]


def test_after_ttou_then_hup_the_new_worker_takes_the_old_one_s_slot() -> None:
    arbiter = Arbiter()
    arbiter.fork()
    arbiter.fork()
    arbiter.reap(2)  # TTOU
    retire_all(arbiter)
    new = arbiter.fork()
    assert (new.statemigrate_slot, replaced(new)) == (1, (3,))


# -- the gate: a checkpoint's pause and a handoff's ----------------------------------------------


def _request(gate: WorkerGate, request: Any) -> None:
    """A request's way through the gate: pre_request, then post_request."""
    gate.hold(request)
    gate.release()


def test_pauses_nest_a_write_waits_for_the_last_resume() -> None:
    worker = type("Worker", (), {"sockets": [], "pid": 0, "ppid": 0, "wsgi": None, "cfg": None})()
    gate = WorkerGate(worker)
    gate.pause()  # a handoff's
    gate.pause()  # a checkpoint's, at the same time
    gate.resume()  # the checkpoint's snapshot is taken
    write = type("Request", (), {"method": "PUT", "must_close": False})()
    holding = threading.Thread(target=_request, args=(gate, write))
    holding.start()
    holding.join(0.1)
    assert holding.is_alive()  # the handoff still holds the writes
    gate.resume()
    holding.join()
    assert gate._running == 0


def test_a_checkpoint_s_hold_waits_for_running_reads_and_holds_new_ones() -> None:
    """Reads may change the state (the example cache moves a key read to the end)."""
    worker = type("Worker", (), {"sockets": [], "pid": 0, "ppid": 0, "wsgi": None, "cfg": None})()
    gate = WorkerGate(worker)
    running = type("Request", (), {"method": "GET", "must_close": False})()
    gate.hold(running)
    held = threading.Event()

    def snapshot() -> None:
        with gate.still():
            held.set()

    checkpoint = threading.Thread(target=snapshot)
    checkpoint.start()
    checkpoint.join(0.1)
    assert not held.is_set()  # waits for the read running
    gate.release()
    checkpoint.join()
    assert held.is_set()
    with gate.still():
        read = type("Request", (), {"method": "GET", "must_close": False})()
        reading = threading.Thread(target=_request, args=(gate, read))
        reading.start()
        reading.join(0.1)
        assert reading.is_alive()  # held for the snapshot
    reading.join()
    assert gate._running == 0


# -- end to end ---------------------------------------------------------------------------------


def _config(tmp: Path, root: Path, *, every: float = EVERY, extra: str = "") -> Path:
    root.mkdir(exist_ok=True)
    config = tmp / "checkpoints.conf.py"
    config.write_text(
        f"exec(open({str(EXAMPLE / 'gunicorn.conf.py')!r}).read())\n"
        "from statemigrate.integrations.gunicorn import Checkpoints\n"
        "from statemigrate.stores import TmpfsStore\n"
        "globals().update(server_hooks(\n"
        "    f'app_v{release}:service', allow_lossy=True,\n"
        f"    checkpoints=Checkpoints(lambda slot: TmpfsStore(f'{root}/slot-{{slot}}'),"
        f" every={every}),\n"
        "))\n" + extra
    )
    return config


def _recipe(tmp: Path, root: Path) -> Path:
    """The recipe the documentation gave before the hooks kept checkpoints: restore in
    the master, a checkpointer per worker on one store."""
    root.mkdir(exist_ok=True)
    config = tmp / "recipe.conf.py"
    config.write_text(
        f"exec(open({str(EXAMPLE / 'gunicorn.conf.py')!r}).read())\n"
        "import os\n"
        "import statemigrate as sm\n"
        "hooks = server_hooks(f'app_v{release}:service', allow_lossy=True)\n"
        "globals().update(hooks)\n"
        "running = {}\n"
        f"def store(): return sm.TmpfsStore({str(root / 'slot-0')!r})\n"
        "def when_ready(server):\n"
        "    hooks['when_ready'](server)\n"
        "    import app_v1\n"
        "    if 'GUNICORN_PID' not in os.environ:\n"
        "        app_v1.service.start_from(store())\n"
        "def post_worker_init(worker):\n"
        "    hooks['post_worker_init'](worker)\n"
        "    import app_v1\n"
        "    running['c'] = sm.Checkpointer(\n"
        f"        app_v1.service, store(), every={EVERY}, quiesce=app_v1.lock\n"
        "    ).start()\n"
        "def worker_exit(server, worker):\n"
        "    hooks['worker_exit'](server, worker)\n"
        "    if 'c' in running:\n"
        "        running['c'].stop()\n"
    )
    return config


def _stored(
    root: Path, release: int = 1, slot: int = 0, keys: Iterable[str] = KEYS
) -> tuple[str, dict[str, str | None]] | None:
    """A slot's latest checkpoint, read by ``release``: its snapshot id and the values
    of ``keys``."""
    # The store's own reader: between the two renames of a commit it reads the
    # snapshot before.
    with TmpfsStore(root / f"slot-{slot}") as store:
        try:
            data = store.open()
        except StoreError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
    service = Service("gunicorn-cache", registry=build_registry())
    cache = KVCacheV1() if release == 1 else KVCacheV2()
    service.register(cache)
    report = service.restore(data)
    return report.snapshot_id, {key: cache.get(key) for key in keys}


def _writer(root: Path, slot: int = 0) -> int:
    """The pid of the process that committed a slot's latest checkpoint."""
    with TmpfsStore(root / f"slot-{slot}") as store:
        return open_snapshot(store.open()).header.producer.pid


def _worker(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/cache/-")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    return int(response.getheader("X-Worker", "0"))


def _wait(what: str, server: Gunicorn, done: Any) -> Any:
    end = time.monotonic() + DEADLINE
    while True:
        result = done()
        if result:
            return result
        assert time.monotonic() < end, f"{what}\n{server.log.read_text()}"
        time.sleep(0.05)


def _kill_after_checkpoint(server: Gunicorn, root: Path, release: int = 1) -> Outcome:
    """Write ``KEYS``, wait for a checkpoint holding them, ``kill -9`` the worker, and
    wait for its replacement to serve and to commit a checkpoint of its own, noting
    each state the store holds on the way."""
    port = server.port
    for key, value in KEYS.items():
        assert ask(port, "PUT", f"/cache/{key}", value)[0] == 200
    _wait("a checkpoint of every key", server, lambda: _complete(root, release))
    pid = _worker(port)
    os.kill(pid, signal.SIGKILL)
    _wait("the worker's death", server, lambda: _dead(pid))
    # The slot's checkpoint once the worker can commit no more: on a loaded machine it
    # may have committed again between the wait above and the kill, and its replacement
    # may have committed already too (it checkpoints at once), so the replacement's
    # checkpoint is told by who wrote it, not by being another one.
    last = _stored(root, release)
    assert last is not None and last[1] == KEYS
    outcome = Outcome()

    def watch() -> tuple[str, dict[str, str | None]]:
        latest = _stored(root, release)
        assert latest is not None
        if latest[1] != KEYS:
            outcome.regressed = True
        return latest

    def replacement_serving() -> int:
        watch()
        worker = _worker_or_0(port)
        return worker if worker not in (0, pid) else 0

    _wait("a replacement serving", server, replacement_serving)
    outcome.served = {key: read_value(port, key) for key in KEYS}

    def replacement_committed() -> bool:
        # Who wrote the slot's checkpoint, read first: values read before it could be
        # the dead worker's even when the writer read after them is the replacement.
        if _writer(root) == pid:
            watch()
            return False
        _, outcome.stored = watch()
        return True

    _wait("a checkpoint of the replacement", server, replacement_committed)
    return outcome


def _dead(pid: int) -> bool:
    """Whether ``pid`` has exited: gone, or a zombie its parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@dataclass
class Outcome:
    """What a worker's replacement served and checkpointed."""

    served: dict[str, str | None] = field(default_factory=dict)
    stored: dict[str, str | None] = field(default_factory=dict)
    regressed: bool = False
    """Whether the store held less than every key once it had held them all."""


def _complete(root: Path, release: int = 1) -> str | None:
    """The snapshot id of slot 0's latest checkpoint if it holds every key (and
    ``release`` reads it)."""
    try:
        latest = _stored(root, release)
    except RestoreError:
        return None  # another release's
    if latest is None or latest[1] != KEYS:
        return None
    return latest[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("worker_class", "master"),
    [("gthread", COLD_MASTER), ("sync", COLD_MASTER), ("gthread", "")],
    ids=["gthread", "sync", "gthread-restored-at-boot"],
)
def test_a_worker_killed_is_replaced_by_one_serving_its_last_checkpoint(
    tmp_path: Path, worker_class: str, master: str
) -> None:
    """With a master whose copy is the service's own, and with one that left the
    restore to the hooks (each worker restores its slot at boot)."""
    root = tmp_path / "checkpoints"
    config = _config(tmp_path, root, extra=master)
    with gunicorn(tmp_path, 1, worker_class=worker_class, config=config) as server:
        outcome = _kill_after_checkpoint(server, root)
        assert outcome.served == KEYS
        assert outcome.stored == KEYS
        assert not outcome.regressed
        assert "replaces a worker of its slot: restored its latest checkpoint" in (
            server.log.read_text()
        )


@pytest.mark.slow
def test_with_two_workers_a_worker_killed_is_replaced_by_one_serving_its_own_slot(
    tmp_path: Path,
) -> None:
    root = tmp_path / "checkpoints"
    # The master's copy is the service's own (a cold start): no worker restores at boot.
    config = _config(tmp_path, root, extra=COLD_MASTER)
    with gunicorn(tmp_path, 1, worker_class="gthread", workers=2, config=config) as server:
        port = server.port
        written = spread_writes(port, "w", at_least=20)

        def checkpointed() -> bool:
            found = {key for slot in (0, 1) for key, value in _values(root, slot, written)}
            return found == set(written)

        _wait("a checkpoint of every key, in one slot or the other", server, checkpointed)
        killed = next(iter(written.values()))
        os.kill(killed, signal.SIGKILL)
        owners = {key: _owner(port, key) for key in written}  # asks until a worker has it
        survivor = {pid for pid in written.values() if pid != killed}
        assert {owners[k] for k, pid in written.items() if pid in survivor} == survivor
        moved = {owners[k] for k, pid in written.items() if pid == killed}
        assert len(moved) == 1 and not moved & (survivor | {killed})
        assert "replaces a worker of its slot: restored" in server.log.read_text()


def _values(root: Path, slot: int, keys: Iterable[str]) -> list[tuple[str, str]]:
    """The keys present in a slot's latest checkpoint, with their values."""
    if not (root / f"slot-{slot}").exists():
        return []
    latest = _stored(root, slot=slot, keys=keys)
    if latest is None:
        return []
    return [(key, value) for key, value in latest[1].items() if value is not None]


@pytest.mark.slow
def test_after_an_upgrade_a_worker_killed_is_replaced_by_one_serving_its_checkpoint(
    tmp_path: Path,
) -> None:
    root = tmp_path / "checkpoints"
    with gunicorn(tmp_path, 1, worker_class="gthread", config=_config(tmp_path, root)) as server:
        for key, value in KEYS.items():
            assert ask(server.port, "PUT", f"/cache/{key}", value)[0] == 200
        server.deploy(2)  # the new worker takes the state over, then checkpoints it
        outcome = _kill_after_checkpoint(server, root, release=2)
        assert outcome.served == KEYS
        assert outcome.stored == KEYS
        assert not outcome.regressed
        assert json.loads(ask(server.port, "GET", "/cache/c1")[1])["release"] == 2


@pytest.mark.slow
def test_after_a_rollback_a_worker_killed_soon_is_replaced_by_one_serving_its_state(
    tmp_path: Path,
) -> None:
    """A worker that took its state over checkpoints it at once, not ``every`` seconds
    later: its slot's store soon holds a checkpoint its release reads, where it held
    only the newer release's, which a replacement could not restore."""
    root = tmp_path / "checkpoints"
    config = _config(tmp_path, root, every=3600.0)
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        for key, value in KEYS.items():
            assert ask(server.port, "PUT", f"/cache/{key}", value)[0] == 200
        server.deploy(2)
        server.deploy(1)
        outcome = _kill_after_checkpoint(server, root, release=1)
        assert outcome.served == KEYS
        assert outcome.stored == KEYS  # the replacement restored, and checkpointed at once
        assert not outcome.regressed
        assert json.loads(ask(server.port, "GET", "/cache/c1")[1])["release"] == 1
        # Each checkpoint's INFO line, through gunicorn's error log.
        assert re.search(r"\] \[\d+\] \[INFO\] checkpoint: ", server.log.read_text())


@pytest.mark.slow
def test_with_the_former_recipe_a_worker_killed_loses_every_checkpointed_key(
    tmp_path: Path,
) -> None:
    """Negative control: the replacement serves the master's copy, and its checkpoints
    replace the dead worker's."""
    root = tmp_path / "checkpoints"
    with gunicorn(tmp_path, 1, worker_class="gthread", config=_recipe(tmp_path, root)) as server:
        outcome = _kill_after_checkpoint(server, root)
        assert set(outcome.served.values()) == {None}
        assert set(outcome.stored.values()) == {None}
        assert outcome.regressed


@pytest.mark.slow
def test_a_worker_recycled_by_max_requests_hands_its_state_to_the_next(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    # Long between checkpoints: only the final one of the recycled worker has the keys.
    config = _config(tmp_path, root, every=3600.0, extra="max_requests = 30\n")
    with gunicorn(tmp_path, 1, worker_class="sync", config=config) as server:
        port = server.port
        pid = _worker(port)
        for key, value in KEYS.items():
            assert ask(port, "PUT", f"/cache/{key}", value)[0] == 200
        n = 0
        while _worker(port) == pid:  # requests until the worker is recycled
            n += 1
            assert n < 200, server.log.read_text()
        assert {key: read_value(port, key) for key in KEYS} == KEYS
        assert _complete(root)


@pytest.mark.slow
def test_after_hup_the_new_worker_serves_the_old_one_s_state(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    config = _config(tmp_path, root, every=3600.0)
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        port = server.port
        pid = _worker(port)
        for key, value in KEYS.items():
            assert ask(port, "PUT", f"/cache/{key}", value)[0] == 200
        master = server.master()
        assert master is not None
        os.kill(master, signal.SIGHUP)
        _wait("a new worker serving", server, lambda: _worker(port) != pid)
        assert {key: read_value(port, key) for key in KEYS} == KEYS
        assert "waiting for worker" in server.log.read_text()


@pytest.mark.slow
def test_hup_after_a_release_change_keeps_the_preloaded_application_s_service(
    tmp_path: Path,
) -> None:
    """With preload_app, HUP goes on serving the application loaded at start, whatever
    release the configuration names now: the hooks keep restoring into its service, and
    say loudly, once, that the new one is refused."""
    root = tmp_path / "checkpoints"
    config = _config(tmp_path, root, every=3600.0)
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        port = server.port
        pid = _worker(port)
        for key, value in KEYS.items():
            assert ask(port, "PUT", f"/cache/{key}", value)[0] == 200
        (tmp_path / "RELEASE").write_text("2\n")
        master = server.master()
        assert master is not None
        os.kill(master, signal.SIGHUP)
        _wait("a new worker serving", server, lambda: _worker_or_0(port) not in (0, pid))
        assert {key: read_value(port, key) for key in KEYS} == KEYS
        assert json.loads(ask(port, "GET", "/cache/c1")[1])["release"] == 1
        errors = [line for line in server.log.read_text().splitlines() if "[ERROR]" in line]
        assert len(errors) == 1, errors
        assert "'app_v1:service'" in errors[0] and "'app_v2:service'" in errors[0]
        assert "kill -USR2" in errors[0]


@pytest.mark.slow
def test_a_checkpoint_the_replacement_cannot_restore_is_kept_and_the_master_s_copy_served(
    tmp_path: Path,
) -> None:
    root = tmp_path / "checkpoints"
    # The master's copy holds one key; checkpoints are rare enough for the test to
    # place its own.
    config = _config(tmp_path, root, every=3600.0, extra=COLD_MASTER)
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        port = server.port
        assert ask(port, "PUT", "/cache/written", "by-release-1")[0] == 200
        # Release 2's checkpoint, which release 1 reads only through a lossy downgrade.
        newer = Service("gunicorn-cache", registry=build_registry())
        cache = KVCacheV2()
        newer.register(cache)
        cache.set("newer", "by-release-2", ttl=600.0)
        with TmpfsStore(root / "slot-0") as store:
            newer.commit(store)
        pid = _worker(port)
        os.kill(pid, signal.SIGKILL)
        _wait("a replacement serving", server, lambda: _worker_or_0(port) not in (0, pid))
        assert read_value(port, "boot") == "master"
        assert read_value(port, "written") is None  # in no checkpoint it could read
        assert read_value(port, "newer") is None
        log = server.log.read_text()
        assert "cannot be restored, serving the master's copy" in log
        kept = (root / "slot-0" / "unrestored").read_bytes()
        again = Service("gunicorn-cache", registry=build_registry())
        holder = KVCacheV2()
        again.register(holder)
        again.restore(kept)
        assert holder.get("newer") == "by-release-2"
        reader = Service("gunicorn-cache", registry=build_registry())
        reader.register(KVCacheV1())
        with pytest.raises(RestoreError):
            reader.restore(kept)


def _worker_or_0(port: int) -> int:
    try:
        return _worker(port)
    except OSError:
        return 0
