"""A key-value line server on asyncio: the old process (in the test) or its successor (here).

Usage: aioserver.py MODE GENERATION    (MODE: ok | fail)

As a successor it takes over with ``receive_handoff`` and ``take_over_async``, then
serves on the inherited listener with ``asyncio.start_server`` until a client sends
QUIT. In ``fail`` mode its cache refuses the state it is given, so the restore fails
and FAILED goes back to the old process.

One line each way::

    SET key value   OK <generation> once applied; RETRY once the state moved on
    GET key         VAL <value> <generation> | NONE <generation>
    QUIT            BYE; the process stops serving and exits

The server is its own :class:`~statemigrate.handoff.AsyncServerControl`: ``pause``
holds writes (reads go on), ``resume`` lets them through, ``stop_accepting`` closes
the asyncio server and answers held writes with RETRY.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from typing import Any

import statemigrate as sm
from statemigrate.handoff import receive_handoff, take_over_async
from statemigrate.reference import KVCacheV1, build_registry


class RefusingCache(KVCacheV1):
    """A release whose restore rejects any non-empty state (its rollback still works)."""

    def import_state(self, state: Any) -> None:
        if state["entries"]:
            raise ValueError("this release refuses the state it was handed")
        self.entries = {}


def build_service(cache: KVCacheV1) -> sm.Service:
    service = sm.Service("aio-lines", registry=build_registry())
    service.register(cache)
    return service


class AioLineServer:
    """The line server over ``cache``, and its server control."""

    def __init__(self, cache: KVCacheV1, *, generation: int) -> None:
        self.cache = cache
        self.generation = generation
        self.writable = asyncio.Event()
        self.writable.set()
        self.moved = False
        self.quit = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[None]] = set()

    async def start(self, listener: socket.socket) -> None:
        self.server = await asyncio.start_server(self._serve, sock=listener)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)

    # -- AsyncServerControl ----------------------------------------------------------

    async def pause(self) -> None:
        self.writable.clear()

    async def resume(self) -> None:
        self.writable.set()

    async def stop_accepting(self) -> None:
        self.moved = True
        if self.server is not None:
            self.server.close()
        self.writable.set()

    # -- serving -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            while line := await reader.readline():
                reply = await self._answer(line.decode().split())
                writer.write(reply.encode() + b"\n")
                await writer.drain()
                if reply == "BYE":
                    self.quit.set()
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, words: list[str]) -> str:
        match words:
            case ["SET", key, value]:
                await self.writable.wait()
                if self.moved:
                    return "RETRY"
                self.cache.set(key, value)
                return f"OK {self.generation}"
            case ["GET", key]:
                found = self.cache.get(key)
                if found is None:
                    return f"NONE {self.generation}"
                return f"VAL {found} {self.generation}"
            case ["QUIT"]:
                return "BYE"
        return "ERROR"


async def successor(mode: str, generation: int) -> int:
    inheritance = receive_handoff(expect={"tcp"})
    if inheritance is None:
        print("not started by a handoff", file=sys.stderr)
        return 2
    cache = KVCacheV1() if mode == "ok" else RefusingCache()
    service = build_service(cache)
    try:
        with inheritance:
            await take_over_async(service, inheritance)
    except sm.StateMigrateError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    server = AioLineServer(cache, generation=generation)
    await server.start(inheritance.listeners["tcp"])
    await server.quit.wait()
    await server.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(successor(sys.argv[1], int(sys.argv[2]))))
