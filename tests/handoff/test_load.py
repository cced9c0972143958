"""F1/F2/F4: handoffs under load refuse nothing and lose no acknowledged write; draining."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from typing import Any

import pytest
from handoff_children.harness import (
    HERE,
    Clients,
    ServerChain,
    query,
    readline,
    reap,
    script,
    wait_for,
)
from handoff_children.lineserver import LineServer

from statemigrate.handoff import DrainReport, Spawn, send_handoff

SOAK = bool(os.environ.get("STATEMIGRATE_SOAK"))
HANDOFFS = 100 if SOAK else 5
REQUESTS = 100_000 if SOAK else 20_000
CLIENTS = 16


def run_load(
    chain: ServerChain, *, handoffs: int, requests: int
) -> tuple[Clients, list[dict[str, Any]]]:
    """Hammer the chain with 16 clients; hand over ``handoffs`` times along the way."""
    clients = Clients(chain.address, threads=CLIENTS).start()
    exits = []
    try:
        for generation in range(1, handoffs + 1):
            goal = requests * generation // (handoffs + 1)

            def reached(goal: int = goal) -> bool:
                return clients.ok >= goal

            wait_for(reached, 120, f"{goal} requests")
            exits.append(chain.hand_over(generation))
        wait_for(lambda: clients.ok >= requests, 120, f"{requests} requests")
    finally:
        clients.stop()
    return clients, exits


@pytest.mark.slow
def test_handoffs_under_load_refuse_nothing_and_lose_nothing():
    chain = ServerChain(mode="handoff")
    try:
        clients, exits = run_load(chain, handoffs=HANDOFFS, requests=REQUESTS)
        last = HANDOFFS + 1
        final = {name: query(chain.address, f"GET {name}") for name in clients.names}
        chain.stop(last)
    finally:
        chain.kill()
    summary = clients.summary()
    print(f"F1: {HANDOFFS} handoffs, {CLIENTS} clients: {summary}")
    assert summary["ok"] >= REQUESTS
    assert summary["refused"] == 0, summary
    assert summary["reset"] == 0, summary
    assert summary["timeouts"] == 0, summary
    assert summary["other"] == [], summary
    # F2: every acknowledged increment is in the last generation's state, exactly once.
    assert summary["out_of_order"] == 0, summary
    assert final == {name: f"VAL {s.acked} {last}" for name, s in clients.stats.items()}
    served = set().union(*(s.generations for s in clients.stats.values()))
    assert served == set(range(1, last + 1))
    assert [e["cut"] for e in exits] == [0] * HANDOFFS  # short requests all finished


@pytest.mark.slow
def test_negative_control_close_and_rebind_refuses_connections():
    """The same harness must see refusals when the old listener is closed and bound again."""
    chain = ServerChain(mode="rebind")
    try:
        clients, _exits = run_load(chain, handoffs=2, requests=3_000)
        chain.stop(3)
    finally:
        chain.kill()
    summary = clients.summary()
    print(f"F1 negative control (close + rebind): {summary}")
    assert summary["refused"] + summary["reset"] > 0, summary


@pytest.mark.slow
def test_drain_serves_old_connections_until_done_or_deadline():
    """F4: after the handoff, old connections are served until they end or the drain
    deadline cuts them; every new connection lands on the new generation."""
    with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
        old = LineServer(listener, generation=1)
        old.start()
        address = listener.getsockname()
        short = socket.create_connection(address, timeout=20)
        long = socket.create_connection(address, timeout=20)
        successor = None
        try:
            for conn in (short, long):
                conn.sendall(b"PING\n")
                assert readline(conn) == "PONG 1"
            report = send_handoff(
                Spawn([sys.executable, script("server.py")], cwd=HERE),
                listeners={"tcp": listener},
                export_state=old.export_state,
                control=old,
            )
            successor = report.successor_pid
            new_accepts = [query(address, "PING") for _ in range(50)]
            assert new_accepts == ["PONG 2"] * 50

            drained: dict[str, DrainReport] = {}
            drainer = threading.Thread(target=lambda: drained.update(report=old.drain(2.0)))
            drainer.start()
            wait_for(lambda: old.drainer.draining, 30, "draining to begin")
            for conn in (short, long):  # both still served by the old generation
                conn.sendall(b"PING\n")
                assert readline(conn) == "PONG 1"
            short.close()  # this one finishes on its own
            drainer.join(timeout=60)
            assert drained["report"].finished == 1
            assert drained["report"].cut == 1
            try:  # the other one was shut down at the deadline
                long.sendall(b"PING\n")
                assert readline(long) == ""
            except (ConnectionResetError, BrokenPipeError):
                pass
            assert old.drainer.active == 0
            assert [query(address, "PING") for _ in range(20)] == ["PONG 2"] * 20
        finally:
            short.close()
            long.close()
            old.close()
            if successor is not None:
                os.kill(successor, signal.SIGTERM)
                assert reap(successor) == 0
