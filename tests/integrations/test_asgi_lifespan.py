"""The ASGI wrapper's lifespan start-up: the state it leaves the service in when no
handoff brings one, on any server (``uvicorn --fd`` locates it at start-up)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, MutableMapping
from typing import Any

import statemigrate as sm
from statemigrate.integrations.asgi import HotRestart, Receive, Scope, Send
from statemigrate.reference import KVCacheV3, build_registry


class Hooks:
    """A server that serves nothing: the start-up asks it for its stop signals only."""

    async def stop_accepting(self) -> None:
        return None

    async def drain(self, active: Callable[[], int]) -> None:
        return None

    def shut_down(self) -> None:
        return None

    def route_stop_signals(self, route: Callable[[Callable[[], None]], None]) -> None:
        return None


def cache_service() -> sm.Service:
    service = sm.Service("cache", registry=build_registry())
    service.register(KVCacheV3())
    return service


def start_up(hot: HotRestart) -> list[str]:
    """Run the wrapper's lifespan start-up and shutdown; the messages it sent."""
    sent: list[str] = []

    async def main() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for stage in ("startup", "shutdown"):
            inbox.put_nowait({"type": f"lifespan.{stage}"})

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message["type"])

        await hot({"type": "lifespan"}, inbox.get, send)

    asyncio.run(main())
    return sent


def located(service: sm.Service, app: Any) -> HotRestart:
    """Wrapped as ``uvicorn.hot_restart`` does: server and listener found at start-up,
    no handoff incoming."""
    return HotRestart(app, service, locate=lambda: (Hooks(), socket.socket(), None))


async def no_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("no lifespan here")


def test_a_start_without_a_handoff_is_a_cold_start() -> None:
    """What ``uvicorn --fd N module:application`` runs on a cold start: without it the
    service stays ``starting``, readiness answers 503 and no checkpoint commits."""
    service = cache_service()
    assert start_up(located(service, no_lifespan)) == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert service.status.state == "cold_start"
    assert service.status.readiness()[0] == 200


def test_a_service_restored_before_the_start_up_keeps_its_state() -> None:
    service = cache_service()
    store = sm.stores.MemoryStore()
    service.commit(store)
    service.start_from(store)
    start_up(located(service, no_lifespan))
    assert service.status.state == "restored"


def test_a_service_the_application_restores_in_its_start_up_keeps_its_state() -> None:
    """The application's own start-up runs first: a restore there is not overridden."""
    service = cache_service()
    store = sm.stores.MemoryStore()
    service.commit(store)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                service.start_from(store)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    start_up(located(service, app))
    assert service.status.state == "restored"
