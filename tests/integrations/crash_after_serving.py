"""A service on the aiohttp, uvicorn or hypercorn adapter whose successor dies just after
it took the state over and serves.

    python crash_after_serving.py aiohttp|uvicorn|hypercorn PORT DIR

Each process writes its pid to DIR/pid once it serves. When DIR/crash exists, a
process that is not the first then blocks its event loop (it accepts nothing) until
DIR/go exists, and exits with status 1. The waits that the old process must not sit
out are long: ``forward_timeout`` and the keep-alive timeout are 60 s.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import statemigrate as sm
from statemigrate.integrations.asgi import Receive, Scope, Send

LONG = 60.0

# The library's INFO lines too: the test reads how the old process's drain ended.
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")


def on_serving(folder: Path) -> None:
    successor = (folder / "pid").exists()  # the first process wrote it
    (folder / "pid.new").write_text(str(os.getpid()))
    (folder / "pid.new").replace(folder / "pid")
    if successor and (folder / "crash").exists():
        end = time.monotonic() + LONG
        while not (folder / "go").exists() and time.monotonic() < end:
            time.sleep(0.02)
        os._exit(1)


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    while (await receive()).get("more_body"):
        pass
    body = f"served by {os.getpid()}".encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    server, port, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    service = sm.Service("crashing")
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "on_serving": lambda _: on_serving(folder),
        "forward_timeout": LONG,
    }
    if server == "aiohttp":
        from aiohttp import web

        from statemigrate.integrations.aiohttp import run_app

        async def any_request(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(text=f"served by {os.getpid()}")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_request)
        run_app(app, service, keepalive_timeout=LONG, **options)
    elif server == "uvicorn":
        from statemigrate.integrations import uvicorn

        settings = {"timeout_keep_alive": int(LONG), "log_level": "warning"}
        uvicorn.run(asgi_app, service, config=settings, **options)
    else:
        from statemigrate.integrations import hypercorn

        hypercorn.run(asgi_app, service, config={"keep_alive_timeout": LONG}, **options)


if __name__ == "__main__":
    main()
