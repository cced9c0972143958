"""A key-value aiohttp application served by statemigrate.integrations.aiohttp.serve.

Usage: aioapp.py VERSION PORTFILE    (VERSION: 1 or 2, the cache's schema version)

Started by the test as release 1, which binds a free port on 127.0.0.1. Each release
writes "PORT PID" to PORTFILE.VERSION once it serves. On SIGUSR2 it hands over to
``aioapp.py 2 PORTFILE``, release 2 of the cache, whose state is migrated from
release 1 on the way.

    PUT /k/{key}   body = value; 200 "<version>" once applied
    GET /k/{key}   200 "<value> <version>" | 404
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from aiohttp import web

import statemigrate as sm
from statemigrate.integrations.aiohttp import serve
from statemigrate.reference import KVCacheV1, KVCacheV2, build_registry


def build_app(cache: KVCacheV1 | KVCacheV2, version: int) -> web.Application:
    async def put(request: web.Request) -> web.Response:
        cache.set(request.match_info["key"], await request.text())
        return web.Response(text=str(version))

    async def get(request: web.Request) -> web.Response:
        found = cache.get(request.match_info["key"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(text=f"{found} {version}")

    app = web.Application()
    app.router.add_put("/k/{key}", put)
    app.router.add_get("/k/{key}", get)
    return app


async def main(version: int, portfile: Path) -> int:
    cache = KVCacheV1() if version == 1 else KVCacheV2()
    service = sm.Service("aio-app", registry=build_registry())
    service.register(cache)
    app = build_app(cache, version)

    def announce(listener: socket.socket) -> None:
        ready = portfile.with_name(f"{portfile.name}.{version}")
        ready.with_suffix(".tmp").write_text(f"{listener.getsockname()[1]} {os.getpid()}")
        ready.with_suffix(".tmp").replace(ready)

    report = await serve(
        app,
        service,
        port=0,
        argv=[sys.executable, __file__, str(version + 1), str(portfile)],
        shutdown_timeout=5.0,
        on_serving=announce,
    )
    return 0 if report is None or report.ok else 3


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]))))
