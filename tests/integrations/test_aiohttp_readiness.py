"""The aiohttp adapter's readiness route answers the service's restore status."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiohttp

import statemigrate as sm
from statemigrate.integrations.aiohttp import serve
from statemigrate.reference import KVCacheV1, build_registry


async def _ready_answers(service: sm.Service) -> tuple[int, dict[str, object]]:
    from aiohttp import web

    serving: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_serving(listener: socket.socket) -> None:
        serving.set_result(listener.getsockname()[1])

    task = asyncio.create_task(
        serve(web.Application(), service, port=0, readiness_path="/ready", on_serving=on_serving)
    )
    try:
        port = await asyncio.wait_for(serving, 60)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/ready") as response:
                return response.status, await response.json()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_process_that_binds_its_own_listener_starts_cold_and_is_ready() -> None:
    service = sm.Service("ready-test", registry=build_registry())
    service.register(KVCacheV1())
    code, body = asyncio.run(_ready_answers(service))
    assert code == 200
    assert (body["state"], body["reason"], body["ready"]) == (
        "cold_start", "not started by a handoff", True,
    )


def test_a_restored_service_stays_restored() -> None:
    source = sm.Service("ready-test", registry=build_registry())
    source.register(KVCacheV1()).set("a", "1")
    service = sm.Service("ready-test", registry=build_registry())
    service.register(KVCacheV1())
    report = service.restore(source.commit(sm.MemoryStore()))
    code, body = asyncio.run(_ready_answers(service))
    assert code == 200
    assert (body["state"], body["snapshot_id"]) == ("restored", report.snapshot_id)


def test_a_failed_restore_answers_503() -> None:
    """The route reports what the status says: a service whose restore failed is not
    ready (the adapter serves, and the probe keeps traffic away)."""
    service = sm.Service("ready-test", registry=build_registry())
    service.register(KVCacheV1())
    try:
        service.restore(b"not a snapshot")
    except sm.RestoreError:
        pass
    code, body = asyncio.run(_ready_answers(service))
    assert code == 503
    assert body["state"] == "failed" and body["ready"] is False
