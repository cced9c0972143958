"""SCM_RIGHTS: hostile messages refused with the fd table restored (E3); fds arrive CLOEXEC (E4)."""

from __future__ import annotations

import array
import errno
import os
import socket
from collections.abc import Iterator

import pytest

from statemigrate import HandoffError
from statemigrate.handoff._fdcheck import open_fds
from statemigrate.handoff._fdpass import (
    MAX_FDS,
    close_all,
    peer_credentials,
    receive_fds,
    require_same_user,
    send_fds,
)


@pytest.fixture
def null_fds() -> Iterator[list[int]]:
    """Descriptors to send: 254 of /dev/null, closed at the end."""
    fds = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) for _ in range(MAX_FDS + 1)]
    yield fds
    close_all(fds)


def raw_send(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def test_round_trip_delivers_the_same_open_files(pair, null_fds):
    a, b = pair
    r, w = os.pipe()
    try:
        send_fds(a, b"hello", [r, w], stage="test")
        data, fds = receive_fds(b, max_bytes=100, max_fds=2, stage="test")
        try:
            assert data == b"hello"
            assert len(fds) == 2
            got = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in fds]
            sent = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (r, w)]
            assert got == sent
            assert set(fds).isdisjoint({r, w})
        finally:
            close_all(fds)
    finally:
        close_all([r, w])


def test_253_fds_to_a_receiver_expecting_2_are_all_closed(pair, null_fds):
    a, b = pair
    baseline = open_fds()
    send_fds(a, b"x", null_fds[:MAX_FDS], stage="test")
    with pytest.raises(HandoffError, match="control data truncated") as caught:
        receive_fds(b, max_bytes=100, max_fds=2, stage="receive")
    assert caught.value.stage == "receive"
    assert open_fds() == baseline


def test_254_fds_fail_at_the_sender_with_einval(pair, null_fds):
    a, b = pair
    baseline = open_fds()
    with pytest.raises(HandoffError, match="254 descriptors") as caught:
        send_fds(a, b"x", null_fds, stage="transfer")
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.EINVAL
    assert caught.value.stage == "transfer"
    assert open_fds() == baseline


def test_sender_refuses_an_empty_payload(pair, null_fds):
    a, _b = pair
    with pytest.raises(ValueError, match="at least one data byte"):
        send_fds(a, b"", null_fds[:1], stage="test")


def test_fds_with_zero_data_bytes_are_refused_and_closed(pair, null_fds):
    a, b = pair
    baseline = open_fds()
    raw_send(a, b"", null_fds[:2])  # seqpacket delivers this; a stream socket would drop the fds
    with pytest.raises(HandoffError, match="without a single data byte"):
        receive_fds(b, max_bytes=100, max_fds=2, stage="test")
    assert open_fds() == baseline


def test_foreign_control_message_is_refused_and_fds_closed(pair, null_fds):
    a, b = pair
    # With SO_PASSCRED the kernel adds SCM_CREDENTIALS to every message: a control
    # message type the receiver did not ask for.
    b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    baseline = open_fds()
    raw_send(a, b"x", null_fds[:2])
    # Room for 20 descriptors, so the credentials fit and the fds arrive too.
    with pytest.raises(HandoffError, match="unexpected ancillary data.*closed 2 descriptors"):
        receive_fds(b, max_bytes=100, max_fds=20, stage="test")
    assert open_fds() == baseline


def test_truncated_payload_is_refused_and_fds_closed(pair, null_fds):
    a, b = pair
    baseline = open_fds()
    raw_send(a, b"y" * 200, null_fds[:2])
    with pytest.raises(HandoffError, match="larger than 100 bytes"):
        receive_fds(b, max_bytes=100, max_fds=2, stage="test")
    assert open_fds() == baseline


def test_receiver_expecting_none_closes_a_stray_fd(pair, null_fds):
    a, b = pair
    baseline = open_fds()
    raw_send(a, b"x", null_fds[:1])
    with pytest.raises(HandoffError):
        receive_fds(b, max_bytes=100, max_fds=0, stage="test")
    assert open_fds() == baseline


def test_end_of_file_is_an_empty_message(pair):
    a, b = pair
    a.close()
    assert receive_fds(b, max_bytes=100, max_fds=2, stage="test") == (b"", [])


def inheritable(fds: list[int]) -> list[int]:
    return [fd for fd in fds if os.get_inheritable(fd)]


def test_received_fds_are_close_on_exec(pair, null_fds):
    a, b = pair
    for fd in null_fds[:10]:
        os.set_inheritable(fd, True)  # the sender's flags must not matter
    send_fds(a, b"x", null_fds[:10], stage="test")
    _data, fds = receive_fds(b, max_bytes=10, max_fds=10, stage="test")
    try:
        assert len(fds) == 10
        assert inheritable(fds) == []
    finally:
        close_all(fds)


def test_negative_control_socket_recv_fds_leaves_fds_inheritable(pair, null_fds):
    """The check above would catch socket.recv_fds (CPython gh-107898), if it still misbehaves."""
    a, b = pair
    send_fds(a, b"x", null_fds[:3], stage="test")
    _data, fds, _flags, _addr = socket.recv_fds(b, 10, 3, socket.MSG_CMSG_CLOEXEC)
    try:
        leaked = inheritable(fds)
    finally:
        close_all(fds)
    if not leaked:
        pytest.skip("this Python's socket.recv_fds honours MSG_CMSG_CLOEXEC")
    assert len(leaked) == 3


def test_peer_credentials_of_a_socket_pair_name_us(pair):
    a, _b = pair
    creds = require_same_user(a, pid=os.getpid())
    assert (creds.pid, creds.uid, creds.gid) == (os.getpid(), os.geteuid(), os.getegid())


def test_unconnected_socket_has_no_peer():
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        with pytest.raises(HandoffError, match="no peer") as caught:
            peer_credentials(sock)
    assert caught.value.stage == "peer"


def test_wrong_expected_pid_is_refused(pair):
    a, _b = pair
    with pytest.raises(HandoffError, match="expected pid"):
        require_same_user(a, pid=os.getpid() + 100_000)
