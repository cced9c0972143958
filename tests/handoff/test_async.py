"""The asyncio flavour: an asyncio.start_server server hands over to a successor process
with hand_over_async/take_over_async, keeps serving while it waits, goes on after a failed
successor, and cleans up when its task is cancelled."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from handoff_children.aioserver import AioLineServer, build_service
from handoff_children.harness import HERE, reap, script

from statemigrate import Service
from statemigrate.handoff import (
    ControlCallbacks,
    HandoffReport,
    HandoffTimeouts,
    Spawn,
    SuccessorFailedError,
    hand_over,
    hand_over_async,
)
from statemigrate.handoff._send import _in_progress
from statemigrate.reference import KVCacheV1

AIOSERVER = script("aioserver.py")
SUCCESSOR = script("successor.py")
KEYS = 200


class Client:
    """One keep-alive connection to the line server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def ask(self, line: str) -> str:
        self.writer.write(line.encode() + b"\n")
        await self.writer.drain()
        return (await asyncio.wait_for(self.reader.readline(), 60)).decode().strip()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass
class Traffic:
    """Reads and writes on their own connections while a handoff runs."""

    reads: int = 0
    writes: list[str] = field(default_factory=list)  # keys acknowledged with "OK 1"
    wrong: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self, port: int) -> None:
        client = await Client.open(port)
        try:
            while not self.stop.is_set():
                reply = await client.ask("GET k1")
                if reply != "VAL v1 1":
                    self.wrong.append(reply)
                self.reads += 1
                await asyncio.sleep(0)
        finally:
            await client.close()

    async def write(self, port: int) -> None:
        client = await Client.open(port)
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                reply = await client.ask(f"SET w{n} x{n}")
                if reply == "OK 1":
                    self.writes.append(f"w{n}")
                    continue
                if reply != "RETRY":  # RETRY: the state moved on and nothing was applied
                    self.wrong.append(reply)
                break
        finally:
            await client.close()


@dataclass
class Run:
    """What the old process saw of one handoff attempt."""

    outcome: HandoffReport | BaseException
    reads_during: int
    server: AioLineServer
    traffic: Traffic


async def _async_flavour(
    service: Service, listener: socket.socket, server: AioLineServer, spawn: Spawn
) -> HandoffReport:
    return await hand_over_async(service, spawn, listeners={"tcp": listener}, control=server)


async def _blocking_flavour_on_the_loop(
    service: Service, listener: socket.socket, server: AioLineServer, spawn: Spawn
) -> HandoffReport:
    """The broken variant: the blocking flavour called from a coroutine holds up the loop."""
    assert server.server is not None
    control = ControlCallbacks(stop_accepting=server.server.close)
    return hand_over(service, spawn, listeners={"tcp": listener}, control=control)


HandOver = Callable[[Service, socket.socket, AioLineServer, Spawn], Awaitable[HandoffReport]]


async def old_process(
    hand: HandOver, spawn: Spawn, then: Callable[[int, Traffic], Awaitable[None]]
) -> Run:
    """Serve generation 1 on a fresh listener, fill it, hand over under traffic, then
    run ``then(port, traffic)`` while the old server still runs."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    port = listener.getsockname()[1]
    cache = KVCacheV1()
    service = build_service(cache)
    server = AioLineServer(cache, generation=1)
    await server.start(listener)
    traffic = Traffic()
    try:
        client = await Client.open(port)
        for i in range(KEYS):
            assert await client.ask(f"SET k{i} v{i}") == "OK 1"
        await client.close()
        tasks = [asyncio.create_task(traffic.read(port)), asyncio.create_task(traffic.write(port))]
        while traffic.reads < 10:  # the traffic is flowing before the attempt starts
            await asyncio.sleep(0.01)
        before = traffic.reads
        outcome: HandoffReport | BaseException
        try:
            outcome = await hand(service, listener, server, spawn)
        except Exception as exc:
            outcome = exc
        reads_during = traffic.reads - before
        await then(port, traffic)
        traffic.stop.set()
        await asyncio.gather(*tasks)
    finally:
        await server.close()
        listener.close()
    return Run(outcome, reads_during, server, traffic)


async def _successor_state(port: int) -> list[str]:
    client = await Client.open(port)  # a new connection: accepted by the successor
    try:
        return [await client.ask(f"GET k{i}") for i in range(KEYS)]
    finally:
        await client.close()


def test_asyncio_server_hands_over_its_state_to_a_successor():
    """State preserved, the loop served reads while the handoff waited, writes held by the
    pause were not applied (RETRY), and the successor serves the next connections."""
    seen: dict[str, object] = {}

    async def then(port: int, traffic: Traffic) -> None:
        seen["state"] = await _successor_state(port)
        late = await Client.open(port)
        seen["writes"] = [await late.ask(f"GET {key}") for key in traffic.writes]
        seen["late_write"] = await late.ask("SET late z")  # on the successor, generation 2
        seen["quit"] = await late.ask("QUIT")
        await late.close()

    spawn = Spawn([sys.executable, AIOSERVER, "ok", "2"], cwd=HERE)
    run = asyncio.run(old_process(_async_flavour, spawn, then))

    report = run.outcome
    assert isinstance(report, HandoffReport), report
    assert report.ok and report.transport == "spawn" and report.readable == {"kvcache": (1,)}
    assert reap(report.successor_pid) == 0
    assert seen["state"] == [f"VAL v{i} 2" for i in range(KEYS)]
    assert seen["late_write"] == "OK 2" and seen["quit"] == "BYE"
    assert run.reads_during > 0  # the loop kept serving while the handoff waited
    assert run.traffic.wrong == []
    assert run.server.moved
    # Every write the old process acknowledged went over with the state.
    assert run.traffic.writes
    assert seen["writes"] == [f"VAL x{key[1:]} 2" for key in run.traffic.writes]


def test_negative_control_the_blocking_flavour_on_the_loop_serves_nothing_meanwhile():
    """The check "the loop kept serving" fails for the blocking flavour called on the loop."""

    async def then(port: int, traffic: Traffic) -> None:
        client = await Client.open(port)
        await client.ask("QUIT")
        await client.close()

    spawn = Spawn([sys.executable, AIOSERVER, "ok", "2"], cwd=HERE)
    run = asyncio.run(old_process(_blocking_flavour_on_the_loop, spawn, then))
    report = run.outcome
    assert isinstance(report, HandoffReport), report
    assert reap(report.successor_pid) == 0
    assert run.reads_during == 0


def test_a_failed_successor_leaves_the_asyncio_server_serving():
    seen: dict[str, object] = {}

    async def then(port: int, traffic: Traffic) -> None:
        client = await Client.open(port)  # accepted by the old process again
        seen["write"] = await client.ask("SET after y")
        seen["read"] = await client.ask("GET after")
        seen["old"] = await client.ask("GET k7")
        await client.close()

    spawn = Spawn([sys.executable, AIOSERVER, "fail", "2"], cwd=HERE)
    run = asyncio.run(old_process(_async_flavour, spawn, then))

    error = run.outcome
    assert isinstance(error, SuccessorFailedError), error
    assert error.stage == "precopy"  # it refused round 0, before any writer was held
    assert error.report is not None and error.report.pause_seconds == 0
    assert error.reason is not None and "refuses the state" in error.reason
    assert error.exit_status == 1
    assert error.report is not None and error.report.successor_exit == 1
    pid = error.report.successor_pid
    assert pid is not None
    with pytest.raises(ChildProcessError):  # stopped and reaped already
        os.waitpid(pid, os.WNOHANG)
    assert (seen["write"], seen["read"], seen["old"]) == ("OK 1", "VAL y 1", "VAL v7 1")
    assert not run.server.moved and run.server.writable.is_set()  # resumed
    assert run.reads_during > 0
    assert run.traffic.wrong == []
    # Writes held during the attempt were applied once it failed, none lost.
    assert run.traffic.writes and all(k in run.server.cache.entries for k in run.traffic.writes)


def test_cancelling_the_handoff_stops_the_successor_and_releases_the_lock(tmp_path, caplog):
    """A task cancelled while it waits for HELLO stops and reaps its successor first."""

    async def scenario() -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            spawn = Spawn([sys.executable, SUCCESSOR, "silent", str(tmp_path / "out")], cwd=HERE)
            task = asyncio.create_task(
                hand_over_async(
                    build_service(KVCacheV1()),
                    spawn,
                    listeners={"tcp": listener},
                    timeouts=HandoffTimeouts(kill_grace=20.0),
                )
            )
            while "started successor pid" not in caplog.text:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.INFO, logger="statemigrate.handoff"):
        asyncio.run(scenario())
    [pid] = [int(p) for p in re.findall(r"started successor pid (\d+)", caplog.text)]
    with pytest.raises(ChildProcessError):  # stopped (SIGTERM) and reaped before it ended
        os.waitpid(pid, os.WNOHANG)
    assert not _in_progress.locked()
