"""A counter on the ASGI adapter whose pause gives up on the writes running after
``HandoffTimeouts.writes`` (1.5 s here).

    PUT /n        body read to its end   -> 204, the counter incremented
    GET /n        -> 200 {"n", "pid", "writing"}: "writing" counts the PUTs reading
                     their body

    python slow_writer_app.py PORT
"""

from __future__ import annotations

import json
import logging
import os
import sys

import statemigrate as sm
from statemigrate.handoff import HandoffTimeouts
from statemigrate.integrations import uvicorn
from statemigrate.integrations.asgi import Receive, Scope, Send
from statemigrate.reference import KVCacheV3, build_registry

service = sm.Service("slow-writer", registry=build_registry())
cache = KVCacheV3()
service.register(cache)
writing = 0


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global writing
    if scope["type"] != "http":
        return
    if scope["method"] == "PUT":
        writing += 1
        try:
            while (await receive()).get("more_body"):
                pass
        finally:
            writing -= 1
        cache.set("n", str(int(cache.get("n") or 0) + 1))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = {"n": int(cache.get("n") or 0), "pid": os.getpid(), "writing": writing}
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    timeouts = HandoffTimeouts(writes=1.5, snapshot=20)
    uvicorn.run(
        app,
        service,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        timeouts=timeouts,
        config={"log_level": "warning"},
    )
