"""A service on the ASGI adapter that answers its readiness, and nothing restores
before the adapter starts: ``GET /ready`` -> ``service.status.readiness()``.

    python -m uvicorn --fd N readiness_app:application
    python readiness_app.py uvicorn|hypercorn PORT
"""

from __future__ import annotations

import json
import sys

import statemigrate as sm
from statemigrate.integrations import hypercorn, uvicorn
from statemigrate.integrations.asgi import Receive, Scope, Send
from statemigrate.reference import KVCacheV3, build_registry

service = sm.Service("readiness", registry=build_registry())
service.register(KVCacheV3())


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    code, body = service.status.readiness()
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": code, "headers": []})
    await send({"type": "http.response.body", "body": payload})


application = uvicorn.hot_restart(app, service)


if __name__ == "__main__":
    server, port = sys.argv[1], int(sys.argv[2])
    run = uvicorn.run if server == "uvicorn" else hypercorn.run
    run(app, service, host="127.0.0.1", port=port)
