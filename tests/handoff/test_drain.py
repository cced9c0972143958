"""Drainer: connections that end before the deadline count as finished, the rest are cut."""

from __future__ import annotations

import socket
import threading

import pytest
from handoff_children.harness import wait_for

from statemigrate.handoff import Drainer, DrainReport


def serve_until_eof(drainer: Drainer, conn: socket.socket, received: list[bytes]) -> None:
    with conn, drainer.track(conn):
        while chunk := conn.recv(100):
            received.append(chunk)


@pytest.mark.slow
def test_drain_waits_for_finished_and_cuts_the_rest():
    drainer = Drainer()
    pairs = [socket.socketpair() for _ in range(3)]
    received: list[bytes] = []
    threads = [
        threading.Thread(target=serve_until_eof, args=(drainer, server, received))
        for server, _client in pairs
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: drainer.active == 3, 30, "three tracked connections")
    pairs[0][1].close()  # this client is done before draining starts
    wait_for(lambda: drainer.active == 2, 30, "one connection to end")
    result: dict[str, DrainReport] = {}
    drain = threading.Thread(target=lambda: result.update(report=drainer.drain(1.0)))
    drain.start()
    wait_for(lambda: drainer.draining, 30, "draining")
    pairs[1][1].sendall(b"late")  # still served while draining
    pairs[1][1].close()  # and ends on its own
    drain.join(timeout=60)
    for thread in threads:
        thread.join(timeout=60)
    assert result["report"].finished == 1
    assert result["report"].cut == 1
    assert drainer.active == 0
    assert pairs[2][1].recv(10) == b""  # the cut one sees end-of-file
    assert b"late" in b"".join(received)
    for _server, client in pairs:
        client.close()


def test_drain_with_nothing_open_returns_at_once():
    report = Drainer().drain(60.0)
    assert (report.finished, report.cut) == (0, 0)
