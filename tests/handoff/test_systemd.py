"""E8: sd_notify, the fd store and LISTEN_FDS, against a fake NOTIFY_SOCKET; malformed
LISTEN_* variables refused without touching a descriptor."""

from __future__ import annotations

import array
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from handoff_children.harness import HERE, script

from statemigrate import HandoffError
from statemigrate.handoff import fd_store, fd_store_remove, sd_notify


class FakeManager:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(10)

    def receive(self) -> tuple[str, list[int]]:
        """One datagram: its text and the descriptors that came with it (ours to close)."""
        size = socket.CMSG_SPACE(253 * array.array("i").itemsize)
        data, ancdata, flags, _ = self.sock.recvmsg(4096, size, socket.MSG_CMSG_CLOEXEC)
        assert not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
        fds: list[int] = []
        for level, kind, payload in ancdata:
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            fds.extend(array.array("i", payload[: len(payload) - len(payload) % 4]))
        return data.decode(), fds

    def pending(self) -> int:
        count = 0
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
                count += 1
        except BlockingIOError:
            return count
        finally:
            self.sock.settimeout(10)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path, monkeypatch) -> Iterator[FakeManager]:
    path = str(tmp_path / "notify")
    fake = FakeManager(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield fake
    fake.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False
    assert fd_store("http", [0]) is False


def test_notify_messages_arrive_whole(manager):
    assert sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving") is True
    assert manager.receive() == (f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving", [])
    assert sd_notify("STOPPING=1") is True
    assert manager.receive() == ("STOPPING=1", [])


def test_abstract_notify_socket(monkeypatch):
    name = f"statemigrate-test-{os.getpid()}"
    fake = FakeManager("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("READY=1")
        assert fake.receive() == ("READY=1", [])
    finally:
        fake.close()


def test_unusable_notify_socket_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    with pytest.raises(HandoffError, match="not a Unix socket address"):
        sd_notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    with pytest.raises(HandoffError, match="cannot reach NOTIFY_SOCKET") as caught:
        sd_notify("READY=1")
    assert caught.value.stage == "notify"


def test_fd_store_sends_name_and_all_fds_in_one_datagram(manager):
    with (
        socket.create_server(("127.0.0.1", 0)) as v4,
        socket.create_server(("::1", 0), family=socket.AF_INET6) as v6,
    ):
        assert fd_store("http", [v4.fileno(), v6.fileno()])
        text, fds = manager.receive()
        try:
            assert text == "FDSTORE=1\nFDNAME=http"
            assert len(fds) == 2
            stored = [os.fstat(fd).st_ino for fd in fds]
            assert stored == [os.fstat(v4.fileno()).st_ino, os.fstat(v6.fileno()).st_ino]
        finally:
            for fd in fds:
                os.close(fd)
    assert manager.pending() == 0  # exactly one datagram


def test_fd_store_remove(manager):
    assert fd_store_remove("snapshot")
    assert manager.receive() == ("FDSTOREREMOVE=1\nFDNAME=snapshot", [])


def test_fd_store_checks_its_arguments(manager):
    with pytest.raises(HandoffError, match="no descriptors"):
        fd_store("http", [])
    with pytest.raises(HandoffError, match="must be 1-64 characters"):
        fd_store("a:b", [0])
    assert manager.pending() == 0


def run_child(scenario: str, notify: str, tmp_path: Path) -> dict[str, object]:
    output = tmp_path / f"{scenario}.json"
    subprocess.run(
        [sys.executable, script("systemd_child.py"), scenario, notify, str(output)],
        cwd=HERE,
        check=True,
        timeout=60,
        close_fds=True,
    )
    return json.loads(output.read_text())


@pytest.mark.slow
def test_listen_fds_takes_named_fds_and_drops_unknown_names(manager, tmp_path):
    result = run_child("names", os.environ["NOTIFY_SOCKET"], tmp_path)
    assert result["listeners"] == {"http": [3]}
    assert result["listening"] == [1]
    assert result["memfds"] == {"snapshot": [4]}
    assert result["snapshot"] == ["snapshot"]
    assert result["removed"] == ["junk"]
    assert result["table"] == [0, 1, 2, 3, 4]  # fd 5 ("junk") closed
    assert result["inheritable"] == []  # close-on-exec now
    assert result["env_left"] == []
    assert manager.receive() == ("FDSTOREREMOVE=1\nFDNAME=junk", [])
    assert manager.pending() == 0


def test_listen_fds_ignores_fds_meant_for_another_pid(manager, tmp_path):
    result = run_child("wrong-pid", os.environ["NOTIFY_SOCKET"], tmp_path)
    assert result["got"] is None
    assert result["table"] == [0, 1, 2, 3, 4, 5]  # untouched
    assert result["inheritable"] == [3, 4, 5]
    assert result["env_left"] == []  # unset all the same
    assert manager.pending() == 0


def test_listen_fds_refuses_a_wrong_type_and_closes_everything(manager, tmp_path):
    result = run_child("bad-type", os.environ["NOTIFY_SOCKET"], tmp_path)
    assert result["error"] == "listen_fds"
    assert "listener 'http': fd 4" in str(result["detail"])
    assert result["table"] == [0, 1, 2]
    assert result["env_left"] == []


def test_listen_fds_without_names_calls_them_unknown(manager, tmp_path):
    result = run_child("unnamed", os.environ["NOTIFY_SOCKET"], tmp_path)
    assert result["listeners"] == {} and result["memfds"] == {}
    assert result["removed"] == ["unknown"]
    assert result["table"] == [0, 1, 2]
    assert manager.receive() == ("FDSTOREREMOVE=1\nFDNAME=unknown", [])


# A process that systemd passed one listener (fd 3) and that opened fd 4 itself; it
# runs listen_fds() with the LISTEN_* variables given as JSON ("self" = its own pid;
# "close_own" closes fd 4 first), under a 1 GiB address-space limit, and prints what
# happened as JSON.
MALFORMED_CHILD = r"""
import fcntl, json, os, resource, socket, sys
listener = socket.create_server(("127.0.0.1", 0))
os.set_inheritable(listener.detach(), True)
own = os.open(os.devnull, os.O_RDONLY)
assert own == 4
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
variables = json.loads(sys.argv[1])
if variables.pop("close_own", None):
    os.close(own)
if variables.get("LISTEN_PID") == "self":
    variables["LISTEN_PID"] = str(os.getpid())
os.environ.update(variables)
from statemigrate import HandoffError
from statemigrate.handoff import listen_fds

def table():
    fds = []
    for fd in range(3, 8):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            continue
        fds.append(fd)
    return fds

try:
    got = listen_fds(listeners={"http"})
except HandoffError as exc:
    result = {"outcome": "HandoffError", "stage": exc.stage, "message": str(exc)}
except BaseException as exc:
    result = {"outcome": type(exc).__name__, "message": str(exc)[:200]}
else:
    result = {"outcome": None if got is None else sorted(got.listeners)}
result["table"] = table()
result["env_left"] = sorted(k for k in os.environ if k.startswith("LISTEN_"))
print(json.dumps(result))
"""


def run_malformed(variables: dict[str, str]) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    done = subprocess.run(
        [sys.executable, "-c", MALFORMED_CHILD, json.dumps(variables)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        close_fds=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_listen_fds_child_takes_a_well_formed_listener():
    """The harness of the cases below, with variables that are right."""
    result = run_malformed({"LISTEN_FDS": "1", "LISTEN_PID": "self", "LISTEN_FDNAMES": "http"})
    assert result["outcome"] == ["http"]
    assert result["table"] == [3, 4]
    assert result["env_left"] == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variables", "message"),
    [
        # More descriptors counted than passed: fd 4 is the process's own.
        ({"LISTEN_FDS": "2"}, "LISTEN_FDS=2: fd 4 is close-on-exec, so it was not passed"),
        ({"LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:http"}, "LISTEN_FDS=2: fd 4"),
        ({"LISTEN_FDS": "3"}, "LISTEN_FDS=3: fd 4 is close-on-exec"),
        ({"LISTEN_FDS": "65536"}, "LISTEN_FDS=65536: fd 4 is close-on-exec"),
        ({"LISTEN_FDS": "1000000000"}, "LISTEN_FDS='1000000000' is not a count"),
        ({"LISTEN_FDS": "9" * 5000}, "(5000 characters) is not a count"),
        ({"LISTEN_FDS": "-1"}, "LISTEN_FDS='-1' is not a count of descriptors from 0 to 65536"),
        ({"LISTEN_FDS": "³"}, "LISTEN_FDS='³' is not a count"),
        ({"LISTEN_FDS": ""}, "LISTEN_FDS='' is not a count"),
        ({"LISTEN_FDS": "1", "LISTEN_PID": "²"}, "LISTEN_PID='²' is not a pid"),
        ({"LISTEN_FDS": "1", "LISTEN_PID": "0"}, "LISTEN_PID='0' is not a pid"),
        ({"LISTEN_FDS": "1", "LISTEN_PID": "x"}, "LISTEN_PID='x' is not a pid"),
        ({"LISTEN_FDS": "1", "LISTEN_PID": "9" * 30}, "LISTEN_PID='999999999999"),
    ],
)
def test_malformed_listen_variables_touch_no_descriptor(variables, message):
    result = run_malformed({"LISTEN_PID": "self", **variables})
    assert result["outcome"] == "HandoffError", result
    assert result["stage"] == "listen_fds"
    assert message in str(result["message"]), result["message"]
    assert "\n" not in str(result["message"]) and len(str(result["message"])) < 200
    assert result["table"] == [3, 4]  # neither the passed listener nor our own fd closed
    assert result["env_left"] == []


@pytest.mark.slow
def test_a_listen_pid_of_another_process_is_not_for_us():
    result = run_malformed({"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid())})
    assert result["outcome"] is None
    assert result["table"] == [3, 4]


@pytest.mark.slow
def test_a_count_beyond_the_open_descriptors_is_refused():
    result = run_malformed({"LISTEN_FDS": "2", "LISTEN_PID": "self", "close_own": "yes"})
    assert result["outcome"] == "HandoffError", result
    assert "LISTEN_FDS=2: fd 4 is not open (Bad file descriptor)" in str(result["message"])
    assert result["table"] == [3]  # the passed listener is left alone too
