"""E8: sd_notify, the fd store and LISTEN_FDS, against a fake NOTIFY_SOCKET."""

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
