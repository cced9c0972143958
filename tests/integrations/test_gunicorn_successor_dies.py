"""The gunicorn hooks when the new generation of a kill -USR2 dies (its master killed
or stopped) before it serves on its own: the old generation serves on, with every
acknowledged write, and an old worker that must not serve waits without spinning."""

from __future__ import annotations

import http.client
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from integrations.loadclient import ask, read_value
from integrations.test_gunicorn import DEADLINE, Gunicorn, _state, _wait_gone, gunicorn
from integrations.test_gunicorn_checkpoints import KEYS, _config, _wait, _worker_or_0

# In the new generation only: the worker stops at ``where`` until the test writes the
# signal it sent to the new master into ``go``; after SIGTERM it goes on once gunicorn
# has told it to stop (``worker.alive``). ``before-ready``: the state restored, before
# READY (so before COMMIT and SERVING); ``before-retire``: after SERVING, before the
# old master is stopped; ``after-retire``: once the old master was told to stop.
HOLD = """
import os as _os, time as _time
from pathlib import Path as _Path
from statemigrate.handoff import _receive
from statemigrate.integrations import gunicorn as _adapter
_worker = []
_take_over = _adapter._Hooks._take_over
def _stash(self, service, predecessor, slot, worker):
    _worker.append(worker)
    return _take_over(self, service, predecessor, slot, worker)
def _hold():
    _Path({held!r}).write_text(str(_os.getpid()))
    while not _os.path.exists({go!r}) or not _Path({go!r}).read_text():
        _time.sleep(0.02)
    while _Path({go!r}).read_text() == 'term' and _worker[0].alive:
        _time.sleep(0.02)
if 'GUNICORN_PID' in _os.environ:
    _adapter._Hooks._take_over = _stash
    if {where!r} == 'before-ready':
        _ready = _receive.Inheritance._ready_steps
        def _held(self, **options):
            _hold()
            return (yield from _ready(self, **options))
        _receive.Inheritance._ready_steps = _held
    elif {where!r} == 'before-retire':
        _retire = _adapter._Hooks._maybe_retire
        def _held_retire(self, predecessor, slot, worker):
            _hold()
            _retire(self, predecessor, slot, worker)
        _adapter._Hooks._maybe_retire = _held_retire
    else:
        _retire = _adapter._Hooks._maybe_retire
        def _retire_held(self, predecessor, slot, worker):
            _retire(self, predecessor, slot, worker)
            _hold()
        _adapter._Hooks._maybe_retire = _retire_held
"""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except OSError:
        return 0


def _put_in_background(port: int, key: str, value: str) -> tuple[threading.Thread, list[int]]:
    """A write sent now, answered later: its status once answered (0: no answer)."""
    status: list[int] = []

    def put() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        try:
            connection.request("PUT", f"/cache/{key}", body=value)
            response = connection.getresponse()
            response.read()
            status.append(response.status)
        except OSError:
            status.append(0)
        finally:
            connection.close()

    thread = threading.Thread(target=put, daemon=True)
    thread.start()
    return thread, status


def _held_at(tmp: Path, where: str) -> Path:
    """The configuration (checkpoints on) whose new generation is held at ``where``."""
    extra = HOLD.format(held=str(tmp / "held"), go=str(tmp / "go"), where=where)
    return _config(tmp, tmp / "checkpoints", every=3600.0, extra=extra)


def _new_master_dies(
    server: Gunicorn, sig: signal.Signals, release: int
) -> tuple[int, int, list[int]]:
    """Deploy ``release`` and signal the new master while its worker is held; return
    the old master, the old worker and the status of a write sent meanwhile, once the
    old generation serves again."""
    tmp, port = server.tmp, server.port
    held, go = tmp / "held", tmp / "go"
    for key, value in KEYS.items():
        assert ask(port, "PUT", f"/cache/{key}", value)[0] == 200
    old, old_worker = server.master(), _worker_or_0(port)
    assert old is not None
    (tmp / "RELEASE").write_text(f"{release}\n")
    os.kill(old, signal.SIGUSR2)
    new_worker = _wait("the new worker held", server, lambda: held.exists() and held.read_text())
    new_master = _parent(int(new_worker))
    assert new_master not in (0, old)
    server.masters.append(new_master)  # stopped at the end, if it lives on
    # Held by the old worker (the pause) or queued on the listener: answered later.
    writer, status = _put_in_background(port, "late", "written-late")
    os.kill(new_master, sig)
    if sig == signal.SIGKILL:
        # Dead, its children re-parented: kill() returns before that is done.
        _wait_gone(new_master)
    go.write_text("term" if sig == signal.SIGTERM else "kill")
    writer.join(DEADLINE)
    assert not writer.is_alive()

    def old_generation_serving() -> int:
        worker = _worker_or_0(port)
        return worker if worker and _parent(worker) == old else 0

    _wait("the old generation serving", server, old_generation_serving)
    return old, old_worker, status


def _serves_every_acknowledged_write(server: Gunicorn, old: int, status: list[int]) -> None:
    assert _state(old) is not None, "the old master was stopped"
    assert {key: read_value(server.port, key) for key in KEYS} == KEYS
    if status == [200]:  # acknowledged, by whichever worker: not lost
        assert read_value(server.port, "late") == "written-late"
    else:
        assert status in ([503], [0]), status
    assert "every worker has taken over: stopping" not in server.log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_a_new_master_dying_before_its_worker_serves_leaves_the_old_worker_serving(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Killed or stopped after its worker restored the state, before SERVING: the
    worker does not confirm, and the old worker takes its state back."""
    config = _held_at(tmp_path, "before-ready")
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        old, old_worker, status = _new_master_dies(server, sig, 2)
        _serves_every_acknowledged_write(server, old, status)
        assert status == [200]  # held by the old worker, which applied it
        assert _worker_or_0(server.port) == old_worker
        assert "will not serve after all" in server.log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_a_new_master_dying_after_its_worker_took_over_leaves_a_worker_of_the_old_serving(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Killed or stopped after its worker confirmed SERVING, before the old master is
    stopped: the old master's next worker restores the successor's final checkpoint
    (the same release: see docs/gunicorn.md for an upgrade)."""
    config = _held_at(tmp_path, "before-retire")
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        old, _, status = _new_master_dies(server, sig, 1)
        _serves_every_acknowledged_write(server, old, status)
        assert "is gone before it served on its own: serving again" in server.log.read_text()


def _took_over(server: Gunicorn) -> int:
    """The pid of the new worker once it has taken the state over."""
    found = re.search(
        r"\[(\d+)\] \[INFO\] worker \d+ \(slot 0\): took over", server.log.read_text()
    )
    return int(found.group(1)) if found else 0


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.slow
def test_an_old_worker_that_must_not_serve_waits_without_spinning(tmp_path: Path) -> None:
    """With the old master kept (retire_old_master=False), its worker forked after the
    state moved must not serve; while nobody accepts (the new worker stopped), a
    connection queued on the listener must not make it spin."""
    root = tmp_path / "checkpoints"
    extra = (
        "globals().update(server_hooks(f'app_v{release}:service', allow_lossy=True,"
        f" retire_old_master=False, checkpoints=lambda slot: __import__("
        f"'statemigrate.stores', fromlist=['x']).TmpfsStore(f'{root}/slot-{{slot}}')))\n"
    )
    config = _config(tmp_path, root, extra=extra)
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        port = server.port
        old = server.master()
        assert old is not None
        (tmp_path / "RELEASE").write_text("2\n")
        os.kill(old, signal.SIGUSR2)
        new_worker = _wait("the new worker taking over", server, lambda: _took_over(server))
        server.masters.append(_parent(new_worker))

        def old_replacement() -> int:
            log = server.log.read_text()
            found = re.findall(r"\[(\d+)\] \[INFO\] worker \d+ \(slot 0\): this gen", log)
            return int(found[-1]) if found else 0

        replacement = _wait("the old master's idle worker", server, old_replacement)
        assert _parent(replacement) == old
        os.kill(new_worker, signal.SIGSTOP)
        try:
            writer, status = _put_in_background(port, "queued", "v")
            ticks, clock = _cpu_ticks(replacement), time.monotonic()
            time.sleep(3.0)
            spent = (_cpu_ticks(replacement) - ticks) / os.sysconf("SC_CLK_TCK")
            elapsed = time.monotonic() - clock
        finally:
            os.kill(new_worker, signal.SIGCONT)
        writer.join(DEADLINE)
        assert status == [200]
        # A busy loop takes a whole core; waiting takes next to nothing.
        assert spent < elapsed / 4, (spent, elapsed)
        assert read_value(port, "queued") == "v"


@pytest.mark.slow
def test_a_new_master_dying_while_the_old_one_retires_makes_the_old_exit_with_failure(
    tmp_path: Path,
) -> None:
    """The window of retiring: the new workers took the state over and stopped the old
    master, then the new master dies. Nothing serves; the old master exits with status
    1, not 0, so that a supervisor restarting on failure starts the service again, and
    the new start restores the new worker's final checkpoint. The dead new master's
    ``gunicorn.pid.2`` is removed."""
    config = _held_at(tmp_path, "after-retire")
    held, go = tmp_path / "held", tmp_path / "go"
    with gunicorn(tmp_path, 1, worker_class="gthread", config=config) as server:
        for key, value in KEYS.items():
            assert ask(server.port, "PUT", f"/cache/{key}", value)[0] == 200
        old = server.master()
        assert server.proc is not None and old == server.proc.pid
        (tmp_path / "RELEASE").write_text("1\n")
        os.kill(old, signal.SIGUSR2)
        new_worker = int(
            _wait("the new worker held", server, lambda: held.exists() and held.read_text())
        )
        new_master = _parent(new_worker)
        assert new_master not in (0, old)
        server.masters.append(new_master)
        pid2 = tmp_path / "gunicorn.pid.2"
        assert pid2.read_text().strip() == str(new_master)
        os.kill(new_master, signal.SIGKILL)
        _wait_gone(new_master)
        go.write_text("kill")
        assert server.proc.wait(timeout=DEADLINE) == 1, server.log.read_text()
        _wait_gone(new_worker)  # after its final checkpoint
        log = server.log.read_text()
        assert "exiting with status 1, not 0" in log
        assert not pid2.exists(), log
    # What systemd's Restart=on-failure does: the same command again.
    again = Gunicorn(tmp_path, "gthread", 1)
    try:
        again.start(1, config)
        assert {key: read_value(again.port, key) for key in KEYS} == KEYS
    finally:
        again.stop()


@pytest.mark.parametrize(
    ("marked", "level"), [("4310 4300\n", "INFO"), ("", "WARNING")], ids=["routine", "unknown"]
)
def test_an_upgraded_generation_s_idle_worker_says_so_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, marked: str, level: str
) -> None:
    """After every deploy the old master forks a worker for the slot its moved worker
    left, which must not serve: routine, so INFO; a mark that names nobody is not."""
    import logging
    from types import SimpleNamespace

    from statemigrate.integrations._gunicorn_directory import HandoffDirectory
    from statemigrate.integrations._gunicorn_generations import next_generation_gone

    log = logging.getLogger("test.gunicorn.worker")
    caplog.set_level(logging.INFO, logger=log.name)
    mark = tmp_path / "4242.moved"
    mark.write_text(marked)
    worker = SimpleNamespace(pid=4250, ppid=4242, alive=False, log=log)  # being stopped
    assert not next_generation_gone(mark, worker, 0, HandoffDirectory(tmp_path))
    [record] = caplog.records
    assert record.levelname == level
    assert "this generation was upgraded; not serving while the next one" in record.getMessage()
